/*
 * datapath/: the Node-side kernel driver. koffi bindings to the system libbpf (libbpf.ts), BPF objects
 * with load-time configuration and pinned maps (bpf-object.ts), typed map handles over the generated
 * codecs (bpf-map.ts), BPF_PROG_TEST_RUN (test-run.ts), tc and XDP attachment (tc.ts, netns.ts), typed
 * errors (errors.ts) and the prerequisite check used by the CLI and the kernel test suites (preflight.ts).
 * See docs/datapath.md.
 */
export { BpfObject, DEFAULT_PIN_ROOT, removePinRoot, type BpfObjectOptions, type BpfProgram } from "./bpf-object.ts";
export {
  adHocSpec,
  BPF_ANY,
  BPF_EXIST,
  BPF_F_LOCK,
  BPF_MAP_TYPE,
  BPF_NOEXIST,
  BpfMapHandle,
  mapInfo,
  openPinnedMap,
  RawMap,
  type MapInfo,
} from "./bpf-map.ts";
export { BpfError, BpfErrorCode, bpfError, errnoName, errnoText, type BpfErrorCodeValue, type BpfErrorDetails } from "./errors.ts";
export { withLibbpfLog } from "./libbpf-log.ts";
export { ifindexOf, netnsPath, withNetns } from "./netns.ts";
export { bpffsMounted, ensureBpffs, kernelSuite, preflight, type KernelSuiteStatus, type PreflightReport, type Prerequisite, type PrerequisiteStatus } from "./preflight.ts";
export {
  attachTc,
  attachXdp,
  destroyClsact,
  tcQuery,
  xdpQuery,
  TcAttachment,
  XdpAttachment,
  XDP_FLAGS,
  type InterfaceRef,
  type TcAttachOptions,
  type TcDirection,
  type XdpAttachOptions,
  type XdpMode,
} from "./tc.ts";
export { decodeSkbContext, encodeSkbContext, SKB_CTX_SIZE, testRun, type SkbContext, type TestRunOptions, type TestRunResult } from "./test-run.ts";
export { createTunnelDevice, deleteTunnelDevice, type TunnelDevice, type TunnelDeviceProtocol, type TunnelDeviceSpec } from "./tunnel-device.ts";
