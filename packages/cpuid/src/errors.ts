import { TsvmmError } from "@tsvmm/abi";

export type CpuidErrorCode =
  | "CPUID_INVALID_VALUE"
  | "CPUID_SUBLEAF_NOT_SIGNIFICANT"
  | "CPUID_UNKNOWN_FEATURE"
  | "CPUID_INVALID_STRING"
  | "CPUID_INVALID_SIGNATURE"
  | "CPUID_INVALID_TOPOLOGY"
  | "CPUID_INVALID_XSAVE"
  | "CPUID_INVALID_TEMPLATE"
  | "CPUID_UNSUPPORTED_BIT"
  | "CPUID_INVALID_KVM_ENTRY";

/** Any input this package refuses. `code` says which rule was broken. */
export class CpuidError extends TsvmmError<CpuidErrorCode> {}

/** One bit a template forces to 1 although the host (KVM supported CPUID) reports it as 0. */
export interface UnsupportedBit {
  leaf: number;
  subleaf: number;
  register: "eax" | "ebx" | "ecx" | "edx";
  bit: number;
  /** The feature name of the bit when it has one. */
  feature: string | undefined;
}

/** A template asks for feature bits the host cannot give; lists every offending bit. */
export class UnsupportedFeatureError extends CpuidError {
  readonly bits: readonly UnsupportedBit[];
  constructor(bits: readonly UnsupportedBit[]) {
    const names = bits.map((b) => b.feature ?? `0x${b.leaf.toString(16)}.${b.subleaf}.${b.register}[${b.bit}]`);
    super(
      "CPUID_UNSUPPORTED_BIT",
      `template forces ${bits.length} bit(s) the host does not support: ${names.join(", ")} (pass {force: true} to override)`,
    );
    this.bits = bits;
  }
}
