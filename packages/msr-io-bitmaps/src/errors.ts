import { TsvmmError } from "@tsvmm/abi";

export type BitmapErrorCode =
  | "MSR_INVALID_INDEX"
  | "MSR_INVALID_ACCESS"
  | "MSR_NOT_COVERED"
  | "IO_INVALID_PORT"
  | "IO_INVALID_SIZE"
  | "BITMAP_INVALID_RANGE"
  | "BITMAP_BAD_LENGTH"
  | "BITMAP_KIND_MISMATCH"
  | "BITMAP_BAD_JSON";

/** Bad input to a bitmap, policy, or their serialized forms. */
export class BitmapError extends TsvmmError<BitmapErrorCode> {}

export type KvmMsrFilterErrorCode =
  | "KVM_MSR_FILTER_TOO_MANY_RANGES"
  | "KVM_MSR_FILTER_X2APIC_UNFILTERABLE"
  | "KVM_MSR_FILTER_UNREPRESENTABLE"
  | "KVM_MSR_FILTER_INVALID";

/** A policy cannot be expressed as a `kvm_msr_filter`, or a filter would be rejected by KVM. */
export class KvmMsrFilterError extends TsvmmError<KvmMsrFilterErrorCode> {
  /** For KVM_MSR_FILTER_TOO_MANY_RANGES: the fewest ranges this policy needs. */
  readonly rangesNeeded: number | undefined;
  constructor(code: KvmMsrFilterErrorCode, message: string, rangesNeeded?: number) {
    super(code, message);
    this.rangesNeeded = rangesNeeded;
  }
}
