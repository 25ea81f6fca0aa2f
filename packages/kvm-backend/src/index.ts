export { kvmAvailable, requireKvm } from "./availability.js";
export { errnoName, KvmError, type KvmErrorCode } from "./errors.js";
export { EventFd } from "./eventfd.js";
export {
  DebugExit, ExceptionExit, FailEntryExit, HypercallExit, InternalErrorExit, IoExit, MmioExit, MsrExit, SimpleExit,
  SystemEventExit, UnknownExit, type VcpuExit, type VcpuExitKind,
} from "./exits.js";
export { GuestRam } from "./guest-ram.js";
export { Kvm } from "./kvm.js";
export { type ExitHandlers, type RunLoopOptions, type RunLoopResult, runLoop, runLoopAsync } from "./run-loop.js";
export { encodeCpuid2, Vcpu } from "./vcpu.js";
export { type IoeventfdOptions, type MemorySlot, type MemorySlotOptions, Vm } from "./vm.js";
