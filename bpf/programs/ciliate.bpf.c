/*
 * ciliate.bpf.o: the attach-point programs in one object, so that one load creates one set of maps
 * (and one clock, include/ciliate_prog.h) shared by from_endpoint, to_endpoint, from_network, from_overlay, to_network and from_host — what the
 * agent attaches and what the kernel Datapath engine runs with BPF_PROG_TEST_RUN. Each program is also a
 * stand-alone object source of its own.
 */
#define CILIATE_ONE_OBJECT 1
#include "from_endpoint.bpf.c"
#include "to_endpoint.bpf.c"
#include "from_network.bpf.c"
#include "from_overlay.bpf.c"
#include "to_network.bpf.c"
#include "from_host.bpf.c"

char LICENSE[] SEC("license") = "Dual BSD/GPL";
