// `ciliate trace`: its flags and help, read on every start (`ciliate --help` loads every definition);
// the implementation, cli/commands/trace.ts, is imported only when the command runs.
import type { Command } from "commander";

export function registerTrace(program: Command, run: (fn: () => Promise<number>) => Promise<void>): void {
  program
    .command("trace")
    .description("one flow step by step: addresses, identities, service/backend, conntrack, the deciding policy entries and rules")
    .option("--from <ref>", "source: ns/pod, an IP, a CIDR, or entity:NAME")
    .option("--to <ref>", "destination: ns/pod, svc:ns/name, an IP, a CIDR, or entity:NAME")
    .option("--port <port>", "destination port (a service port for svc:)")
    .option("--protocol <proto>", "TCP (default), UDP, SCTP, ICMP, ICMPv6")
    .option("--http-method <method>", "send this HTTP request (evaluated by L7 rules)")
    .option("--http-path <path>", "HTTP path")
    .option("--http-host <host>", "HTTP Host header")
    .option("--kafka-api-key <key>", "send this Kafka request: an API key name (produce, fetch, metadata, …) or number")
    .option("--kafka-role <role>", "a Kafka request of this role: produce (a Produce request) or consume (a Fetch request)")
    .option("--kafka-api-version <n>", "Kafka API version of the request (default 0)")
    .option("--kafka-client-id <id>", "Kafka client id of the request")
    .option("--kafka-topic <topic>", "a topic of the Kafka request (repeatable)", (v: string, prev: string[] = []) => [...prev, v])
    .option("--tls-sni <name>", "open a TLS connection whose ClientHello names this server ('' = no SNI)")
    .option("--icmp-type <n>", "ICMP type (default echo request)")
    .option("--ip-family <family>", "IPv4 or IPv6 (or 4, 6): the family used between dual-stack pods and services (default IPv4, or the family of an address given)")
    .option("--icmp-code <n>", "ICMP code")
    .option("--dns-query <name>", "send this DNS query (judged by rules.dns at the DNS proxy; default port 53/UDP)")
    .option("--dns-answer <ip>", "an address in the resolver's answer, learned for toFQDNs (repeatable)", (v: string, p: string[] = []) => [...p, v])
    .option("--dns-ttl <seconds>", "TTL of the answer (default 300)")
    .option("--size <bytes>", "UDP: payload bytes of the request; above 1472 it leaves the 1500-byte MTU sender in IPv4 fragments, each traced")
    .option("--first-fragment-lost", "with --size: the first fragment is lost on the way; the later ones arrive alone")
    .option("--icmp-error <type/code>", "after the flow's first packet, an ICMPv4 error about it goes back (3/4 fragmentation needed, 3/3 port unreachable, 11/0 time exceeded): shows how the nodes translate the embedded header")
    .option("--icmp-error-from <ip>", "with --icmp-error: the error's sender, a router on the way (default: where the packet arrived)")
    .addHelpText(
      "after",
      `
Examples:
  ciliate trace -f scenarios/starwars --from default/tiefighter --to svc:default/deathstar --port 80 \\
      --http-method POST --http-path /v1/request-landing
  ciliate trace -f scenarios/starwars --from default/xwing --to svc:default/deathstar --port 80 -o json
  ciliate trace -f scenarios/kafka --from kafka/empire-hq --to svc:kafka/kafka --port 9092 \\
      --kafka-role produce --kafka-topic deathstar-plans
  ciliate trace -f scenarios/kafka --from kafka/empire-outpost-9999 --to svc:kafka/kafka --port 9092 \\
      --kafka-api-key fetch --kafka-topic deathstar-plans
  ciliate trace -f scenarios/kafka --from kafka/empire-outpost-8888 --to 198.51.100.20 --port 443 --tls-sni api.empire.example
  ciliate trace -f scenarios/k8s-netpol --from x/a --to y/b --protocol ICMP --icmp-type 8
  ciliate trace -f scenarios/multi-node --from entity:world --to svc:shop/web --port 80
  ciliate trace -f scenarios/fqdn --from default/mediabot --to svc:kube-system/kube-dns --dns-query api.github.com
  ciliate trace -f scenarios/multi-node --from shop/frontend-0 --to shop/db-0 --protocol UDP --port 5432 --size 4000
  ciliate trace -f scenarios/multi-node --from shop/frontend-0 --to svc:shop/web --port 80 --icmp-error 3/3

The DNS queries of the Traffic documents are played first, so flows to the addresses they learned meet
the toFQDNs entries.
Output: text (default) or -o json with verdict, egress.verdict, ingress.verdict (allowed|denied),
l7.verdict when an L7 rule applied, identities, service/backend, and per direction the deciding
policy-map entry and its rules, and flows: the flow's events as Hubble GetFlowsResponse objects.
Exit codes: 0 traced (whatever the verdict), 2 bad input.`,
    )
    .action(async (_o, cmd: Command) => run(async () => (await import("../commands/trace.ts")).runTrace(cmd.optsWithGlobals(), (s) => process.stdout.write(s))));
}
