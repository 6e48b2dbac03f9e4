# ICMP echo from inside a test network namespace (`ip netns exec <ns> python3 ping.py HOST [COUNT]`): the
# box has no ping, and Node has no raw sockets. Sends COUNT echo requests (1 s timeout each) and prints
# one JSON line {"sent": n, "received": m}. An IPv6 HOST gets ICMPv6 echo (type 128, reply 129; the kernel
# fills the ICMPv6 checksum of a raw ICMPv6 socket and hands it back without the IPv6 header).
import json, os, select, socket, struct, sys, time

def checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF

host = sys.argv[1]
count = int(sys.argv[2]) if len(sys.argv) > 2 else 1
v6 = ":" in host
sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6) if v6 else socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
REQ, REP = (128, 129) if v6 else (8, 0)
ident = os.getpid() & 0xFFFF
received = 0
for seq in range(count):
    payload = b"ciliate-ping"
    hdr = struct.pack("!BBHHH", REQ, 0, 0, ident, seq)
    pkt = (hdr if v6 else struct.pack("!BBHHH", REQ, 0, checksum(hdr + payload), ident, seq)) + payload
    sock.sendto(pkt, (host, 0))
    deadline = time.time() + 1.0
    while time.time() < deadline:
        r, _, _ = select.select([sock], [], [], max(0, deadline - time.time()))
        if not r:
            break
        data, addr = sock.recvfrom(2048)
        ihl = 0 if v6 else (data[0] & 0x0F) * 4
        t, _, _, rid, rseq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
        if t == REP and rid == ident and rseq == seq and socket.inet_pton(sock.family, addr[0]) == socket.inet_pton(sock.family, host):
            received += 1
            break
print(json.dumps({"sent": count, "received": received}))
