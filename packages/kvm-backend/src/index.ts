export { Kvm } from "./kvm.js";
export { Vm, type MemorySlot, type MemorySlotOptions, type IoeventfdOptions } from "./vm.js";
export { Vcpu, encodeCpuid2 } from "./vcpu.js";
export { EventFd } from "./eventfd.js";
export { GuestRam } from "./guest-ram.js";
export { KvmError, type KvmErrorCode, errnoName } from "./errors.js";
export {
  DebugExit, ExceptionExit, FailEntryExit, HypercallExit, InternalErrorExit, IoExit, MmioExit, MsrExit, SimpleExit,
  SystemEventExit, UnknownExit, type VcpuExit, type VcpuExitKind,
} from "./exits.js";
export { runLoop, type ExitHandlers, type RunLoopResult } from "./run-loop.js";
export { kvmAvailable, requireKvm } from "./availability.js";
