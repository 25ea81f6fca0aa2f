export { kvmAvailable, requireKvm } from "./availability.js";
export { COALESCED_RING_BYTES, CoalescedRing, type CoalescedSink } from "./coalesced.js";
export { type DirtyPage, DirtyRing } from "./dirty-ring.js";
export { ERRNO } from "./errno.js";
export { errnoName, KvmError, type KvmErrorCode } from "./errors.js";
export { EventFd } from "./eventfd.js";
export {
  DebugExit, ExceptionExit, ExitDecoder, FailEntryExit, HypercallExit, InternalErrorExit, IoapicEoiExit, IoExit, MmioExit, MsrExit, SimpleExit,
  SystemEventExit, UnknownExit, type VcpuExit, type VcpuExitKind,
} from "./exits.js";
export { FdWatch } from "./fd-watch.js";
export { GuestRam } from "./guest-ram.js";
export {
  decodeIoapicRedirection, encodeIoapicRedirection, type GsiRoute, type IoapicRedirection, ioapicRedirectionToMsi,
  type MsiMessage, X86_DELIVERY_MODE, type X86MsiTarget, x86DefaultGsiRoutes, x86Msi, x86PcGsiRoutes,
} from "./irq.js";
export { Kvm, permissionAdvice } from "./kvm.js";
export { readNoWait } from "./read-nowait.js";
export { type ExitHandlers, type RunLoopOptions, type RunLoopResult, runLoop, runLoopAsync } from "./run-loop.js";
export { IFF, IFNAMSIZ, Tap, TapError, type TapErrorCode, type TapOptions, TUN_F } from "./tap.js";
export { encodeCpuid2, Vcpu } from "./vcpu.js";
export {
  VcpuWorker, type VcpuWorkerContext, type VcpuWorkerHandlersFactory, type VcpuWorkerOptions, type VcpuWorkerRunOptions,
} from "./vcpu-worker.js";
export { type IoeventfdOptions, type MemorySlot, type MemorySlotOptions, Vm } from "./vm.js";
