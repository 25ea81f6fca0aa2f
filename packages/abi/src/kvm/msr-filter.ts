import { TsvmmError } from "../errors.js";
import { KVM_MSR_FILTER_DEFAULT_DENY, KVM_MSR_FILTER_READ, KVM_MSR_FILTER_WRITE } from "./constants.js";
import { KVM_MSR_FILTER_MAX_RANGES, type KvmMsrFilter } from "./structs.js";

// The rules KVM_X86_SET_MSR_FILTER applies, in the one place every caller reaches: kvm-backend's
// Vm.setMsrFilter validates with them, msr-io-bitmaps plans filters that pass them.

/** Largest bitmap KVM copies for one range, in bytes (uapi asm/kvm.h). */
export const KVM_MSR_FILTER_MAX_BITMAP_SIZE = 0x600;
/** So one range spans at most this many MSRs. */
export const KVM_MSR_FILTER_MAX_NMSRS = KVM_MSR_FILTER_MAX_BITMAP_SIZE * 8;
const RW = KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE;
/**
 * kvm_msr_allowed() computes a range's end as base + nmsrs in u32, so a range reaching MSR
 * 0xFFFFFFFF wraps to end 0 and never matches: ranges must end at or below this.
 */
const RANGE_LIMIT = 2 ** 32 - 1;

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

/** Bytes KVM reads for a range of `nmsrs`: BITS_TO_LONGS(nmsrs) * sizeof(long). */
export function kvmBitmapBytes(nmsrs: number): number {
  return Math.ceil(nmsrs / 64) * 8;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

/**
 * Throws KVM_MSR_FILTER_INVALID for a filter KVM_X86_SET_MSR_FILTER would reject with EINVAL
 * (x86.c: kvm_vm_ioctl_set_msr_filter, kvm_add_msr_filter), whose bitmap is shorter than the
 * bytes KVM copies from it, or with a range KVM accepts but can never match (end wraps past 2^32).
 */
export function validateKvmMsrFilter(filter: KvmMsrFilter): void {
  const bad = (why: string): never => {
    throw new KvmMsrFilterError("KVM_MSR_FILTER_INVALID", `invalid kvm_msr_filter: ${why}`);
  };
  const u32 = (v: unknown) => typeof v === "number" && Number.isInteger(v) && v >= 0 && v < 2 ** 32;
  if (!u32(filter.flags) || (filter.flags & ~KVM_MSR_FILTER_DEFAULT_DENY) !== 0) bad(`flags ${String(filter.flags)} (only DEFAULT_DENY = 1 is defined)`);
  if (filter.ranges.length > KVM_MSR_FILTER_MAX_RANGES) bad(`${filter.ranges.length} ranges; at most ${KVM_MSR_FILTER_MAX_RANGES}`);
  let empty = true;
  filter.ranges.forEach((r, i) => {
    if (!u32(r.base) || !u32(r.nmsrs) || !u32(r.flags)) bad(`range ${i}: base, nmsrs and flags must be u32`);
    if (r.nmsrs === 0) return; // KVM skips empty ranges
    empty = false;
    if ((r.flags & ~RW) !== 0 || r.flags === 0) bad(`range ${i}: flags ${r.flags} must be READ (1), WRITE (2) or both`);
    const bytes = kvmBitmapBytes(r.nmsrs);
    if (bytes > KVM_MSR_FILTER_MAX_BITMAP_SIZE) bad(`range ${i}: ${r.nmsrs} MSRs need a ${bytes}-byte bitmap; at most ${KVM_MSR_FILTER_MAX_BITMAP_SIZE}`);
    if (!(r.bitmap instanceof Uint8Array) || r.bitmap.length < bytes) bad(`range ${i}: bitmap must hold at least ${bytes} bytes (KVM copies whole longs)`);
    // Accepted by KVM, but base + nmsrs wraps in u32 and the range silently never matches.
    if (r.base + r.nmsrs > RANGE_LIMIT) bad(`range ${i}: base ${hex(r.base)} + nmsrs ${r.nmsrs} reaches 0xffffffff; KVM's u32 end wraps and the range never matches`);
  });
  if (empty && (filter.flags & KVM_MSR_FILTER_DEFAULT_DENY) !== 0) bad("default deny with no non-empty range");
}
