import type { KvmMsrFilter } from "@tsvmm/abi";

/**
 * KVM's decision for a guest RDMSR/WRMSR, written from kvm_msr_allowed() in arch/x86/kvm/x86.c:
 * x2APIC MSRs 0x800-0x8FF are never filtered (when `x2apicExempt`); otherwise the first range
 * (empty ones are dropped by kvm_add_msr_filter) that contains the MSR — end computed in u32 — and
 * whose flags include the direction decides by its bit (test_bit over longs = LSB-first bytes on
 * x86); with no such range, the default action applies.
 */
export function kvmAllows(filter: KvmMsrFilter, msr: number, dir: "read" | "write", x2apicExempt = false): boolean {
  if (x2apicExempt && msr >= 0x800 && msr <= 0x8ff) return true;
  const type = dir === "read" ? 1 : 2;
  for (const r of filter.ranges) {
    if (r.nmsrs === 0) continue;
    const start = r.base >>> 0;
    const end = (r.base + r.nmsrs) >>> 0;
    if (msr >= start && msr < end && (r.flags & type) !== 0) {
      const i = msr - start;
      return ((r.bitmap[i >>> 3]! >>> (i & 7)) & 1) === 1;
    }
  }
  return (filter.flags & 1) === 0;
}
