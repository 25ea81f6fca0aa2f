import { array, bytes, defineStruct, pad, type StructLayout, u8, u16, u32, u64 } from "../layout.js";

/**
 * struct kvm_run: the page KVM shares with userspace per vCPU. The header is decoded by field;
 * the exit union is described by one struct per exit kind, with offsets relative to the union
 * (`KVM_RUN_EXIT_OFFSET`), so a vCPU can read just the fields of the exit it got.
 */
export interface KvmRunHeader {
  requestInterruptWindow: number;
  immediateExit: number;
  exitReason: number;
  readyForInterruptInjection: number;
  ifFlag: number;
  flags: number;
  cr8: bigint;
  apicBase: bigint;
}
export const KvmRunLayout: StructLayout<KvmRunHeader & { exit: Buffer; kvmValidRegs: bigint; kvmDirtyRegs: bigint }> = defineStruct(
  "struct kvm_run",
  [
    u8("requestInterruptWindow"), u8("immediateExit"), pad(6),
    u32("exitReason"), u8("readyForInterruptInjection"), u8("ifFlag"), u16("flags"),
    u64("cr8"), u64("apicBase"),
    bytes(256, "exit"),
    u64("kvmValidRegs"), u64("kvmDirtyRegs"),
    pad(2048),
  ],
  { exit: "hw" },
);
export const KVM_RUN_EXIT_OFFSET = KvmRunLayout.offsetOf("exit");

/** A member of the kvm_run exit union; `member` is its C name inside struct kvm_run. */
export interface KvmRunExitLayout<T> extends StructLayout<T> {
  readonly member: string;
}
function exitStruct<T>(member: string, fields: Parameters<typeof defineStruct>[1], cNames?: Record<string, string>): KvmRunExitLayout<T> {
  return Object.assign(defineStruct<T>(`kvm_run.${member}`, fields, cNames), { member });
}

export interface KvmRunHw { hardwareExitReason: bigint }
export const KvmRunHwLayout = exitStruct<KvmRunHw>("hw", [u64("hardwareExitReason")]);
export interface KvmRunFailEntry { hardwareEntryFailureReason: bigint; cpu: number }
export const KvmRunFailEntryLayout = exitStruct<KvmRunFailEntry>("fail_entry", [u64("hardwareEntryFailureReason"), u32("cpu")]);
export interface KvmRunEx { exception: number; errorCode: number }
export const KvmRunExLayout = exitStruct<KvmRunEx>("ex", [u32("exception"), u32("errorCode")]);
export interface KvmRunIo { direction: number; size: number; port: number; count: number; dataOffset: bigint }
export const KvmRunIoLayout = exitStruct<KvmRunIo>("io", [u8("direction"), u8("size"), u16("port"), u32("count"), u64("dataOffset")]);
export interface KvmRunDebug { exception: number; pc: bigint; dr6: bigint; dr7: bigint }
export const KvmRunDebugLayout = exitStruct<KvmRunDebug>(
  "debug",
  [u32("exception"), pad(4), u64("pc"), u64("dr6"), u64("dr7")],
  { exception: "arch.exception", pc: "arch.pc", dr6: "arch.dr6", dr7: "arch.dr7" },
);
export interface KvmRunMmio { physAddr: bigint; data: Buffer; len: number; isWrite: number }
export const KvmRunMmioLayout = exitStruct<KvmRunMmio>("mmio", [u64("physAddr"), bytes(8, "data"), u32("len"), u8("isWrite")]);
export interface KvmRunHypercall { nr: bigint; args: bigint[]; ret: bigint; longmode: number }
export const KvmRunHypercallLayout = exitStruct<KvmRunHypercall>("hypercall", [u64("nr"), array(u64(""), 6, "args"), u64("ret"), u32("longmode"), pad(4)]);
export interface KvmRunInternal { suberror: number; ndata: number; data: bigint[] }
export const KvmRunInternalLayout = exitStruct<KvmRunInternal>("internal", [u32("suberror"), u32("ndata"), array(u64(""), 16, "data")]);
export interface KvmRunEmulationFailure { suberror: number; ndata: number; flags: bigint; insnSize: number; insnBytes: Buffer }
export const KvmRunEmulationFailureLayout = exitStruct<KvmRunEmulationFailure>("emulation_failure", [
  u32("suberror"), u32("ndata"), u64("flags"), u8("insnSize"), bytes(15, "insnBytes"),
]);
export interface KvmRunSystemEvent { type: number; ndata: number; data: bigint[] }
export const KvmRunSystemEventLayout = exitStruct<KvmRunSystemEvent>("system_event", [u32("type"), u32("ndata"), array(u64(""), 16, "data")]);
export interface KvmRunMsr { error: number; reason: number; index: number; data: bigint }
export const KvmRunMsrLayout = exitStruct<KvmRunMsr>("msr", [u8("error"), pad(7), u32("reason"), u32("index"), u64("data")]);
export interface KvmRunTprAccess { rip: bigint; isWrite: number }
export const KvmRunTprAccessLayout = exitStruct<KvmRunTprAccess>("tpr_access", [u64("rip"), u32("isWrite"), pad(4)]);
export interface KvmRunEoi { vector: number }
export const KvmRunEoiLayout = exitStruct<KvmRunEoi>("eoi", [u8("vector")]);
export interface KvmRunNotify { flags: number }
export const KvmRunNotifyLayout = exitStruct<KvmRunNotify>("notify", [u32("flags")]);

export const ALL_RUN_EXITS: readonly KvmRunExitLayout<unknown>[] = [
  KvmRunHwLayout, KvmRunFailEntryLayout, KvmRunExLayout, KvmRunIoLayout, KvmRunDebugLayout, KvmRunMmioLayout,
  KvmRunHypercallLayout, KvmRunInternalLayout, KvmRunEmulationFailureLayout, KvmRunSystemEventLayout,
  KvmRunMsrLayout, KvmRunTprAccessLayout, KvmRunEoiLayout, KvmRunNotifyLayout,
] as unknown as readonly KvmRunExitLayout<unknown>[];
