/* Every benchmark `npm run bench` runs, in order (bench/main.ts). */
import type { Benchmark } from "../harness.ts";
import { datapathBenchmark } from "./datapath.ts";
import { scalingBenchmark } from "./scaling.ts";
import { maglevBenchmark } from "./maglev.ts";
import { controlPlaneBenchmark } from "./control-plane.ts";
import { iptablesBenchmark } from "./iptables.ts";
import { l7ProxyBenchmark } from "./l7-proxy.ts";
import { dnsProxyBenchmark } from "./dns-proxy.ts";
import { identityAllocationBenchmark } from "./identity-allocation.ts";
import { overlayBenchmark } from "./overlay.ts";
import { loadgenBenchmark } from "./loadgen.ts";
import { connRateBenchmark } from "./conn-rate.ts";
import { xdpNodePortBenchmark } from "./xdp-nodeport.ts";
import { cliStartBenchmark } from "./cli-start.ts";

export const benchmarks: Benchmark[] = [datapathBenchmark, scalingBenchmark, iptablesBenchmark, loadgenBenchmark, connRateBenchmark, xdpNodePortBenchmark, controlPlaneBenchmark, maglevBenchmark, l7ProxyBenchmark, dnsProxyBenchmark, identityAllocationBenchmark, overlayBenchmark, cliStartBenchmark];
