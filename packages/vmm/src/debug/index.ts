export { attachGdb, checkGdbAddress, type GdbAttachment, type GdbOptions } from "./attach.js";
export { GdbTargetError, type GdbTargetErrorCode } from "./errors.js";
export type { DebugExitView, VcpuDebugHook } from "./hook.js";
export { type GuestDebugSupport, probeGuestDebug } from "./probe.js";
export { architectureOf, MSR_KERNEL_GS_BASE, toGdbRegisters } from "./registers.js";
export { KvmDebugTarget, type KvmDebugTargetOptions } from "./target.js";
export { LinearTranslator, type PagingMode, type PagingState, pagingMode, planLinear, readLinear } from "./translate.js";
