export { diffIo, diffMsr, formatDiff, type InterceptState, type IoDiffEntry, type MsrDiffEntry } from "./diff.js";
export { BitmapError, type BitmapErrorCode, KvmMsrFilterError, type KvmMsrFilterErrorCode } from "./errors.js";
export { formatRange, type IndexRange } from "./hex.js";
export { IntervalSet, type Span } from "./intervals.js";
export { IoBitmapBase, type IoBitmapJson, type IoBitmapKind, type IoInterceptPolicy, type PortSelector } from "./io/bitmap.js";
export { SvmIopm } from "./io/svm.js";
export { VmxIoBitmap } from "./io/vmx.js";
export {
  KVM_MSR_FILTER_MAX_BITMAP_SIZE,
  KVM_MSR_FILTER_MAX_NMSRS,
  type KvmDefaultAction,
  kvmBitmapBytes,
  kvmMsrFilterRangesNeeded,
  type ToKvmMsrFilterOptions,
  toKvmMsrFilter,
  validateKvmMsrFilter,
  X2APIC_MSRS,
} from "./kvm/filter.js";
export { MsrBitmapBase, type MsrBitmapJson, type MsrBitmapKind, type MsrInterceptBitmap, type MsrSegment } from "./msr/bitmap.js";
export { MsrPolicy, type MsrPolicyJson, type MsrPolicySource } from "./msr/policy.js";
export type { MsrAccess, MsrDirection, MsrListEntry, MsrRule, MsrSelector } from "./msr/rules.js";
export { SvmMsrpm } from "./msr/svm.js";
export { VmxMsrBitmap } from "./msr/vmx.js";
export { type Ctor, PageBitmap } from "./page-bitmap.js";
