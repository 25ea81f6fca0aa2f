import { KVM_MSR_FILTER_DEFAULT_ALLOW, KVM_MSR_FILTER_DEFAULT_DENY, KVM_MSR_FILTER_READ, KVM_MSR_FILTER_WRITE } from "@tsvmm/abi";
import {
  KvmMsrFilterError,
  kvmMsrFilterRangesNeeded,
  MsrPolicy,
  SvmMsrpm,
  toKvmMsrFilter,
  VmxMsrBitmap,
  validateKvmMsrFilter,
} from "@tsvmm/msr-io-bitmaps";
import { describe, expect, it } from "vitest";
import { kvmAllows } from "./kvm-reference.js";

const EFER = 0xc000_0080;
const RW = KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE;

describe("toKvmMsrFilter", () => {
  it("turns a deny-by-default VMX bitmap into one default-deny range with KVM's allow polarity", () => {
    const bm = VmxMsrBitmap.fromAllowList([0x10, 0x1b]);
    const f = toKvmMsrFilter(bm);
    expect(f.flags).toBe(KVM_MSR_FILTER_DEFAULT_DENY);
    expect(f.ranges).toHaveLength(1);
    const r = f.ranges[0]!;
    expect(r).toMatchObject({ flags: RW, base: 0x10, nmsrs: 0x1b - 0x10 + 1 });
    // Bit = 1 means ALLOW in KVM: the opposite of the VMX bitmap, where these bits are 0.
    expect([...r.bitmap]).toEqual([0x01, 0x08, 0, 0, 0, 0, 0, 0]);
    expect(r.bitmap.length).toBe(8); // KVM copies BITS_TO_LONGS(nmsrs) longs
    validateKvmMsrFilter(f);
  });

  it("picks default allow for a deny-list policy", () => {
    const p = MsrPolicy.fromDenyList([{ msrs: EFER, access: "write" }, 0x4000_0000]);
    const f = toKvmMsrFilter(p);
    expect(f.flags).toBe(KVM_MSR_FILTER_DEFAULT_ALLOW);
    expect(f.ranges.map(({ flags, base, nmsrs }) => ({ flags, base, nmsrs }))).toEqual([
      { flags: RW, base: 0x4000_0000, nmsrs: 1 },
      { flags: KVM_MSR_FILTER_WRITE, base: EFER, nmsrs: 1 },
    ]);
    expect(f.ranges.every((r) => r.bitmap.every((b) => b === 0))).toBe(true);
  });

  it("uses separate READ and WRITE ranges only where the directions disagree", () => {
    const p = MsrPolicy.fromAllowList([{ msrs: 0x10, access: "read" }, { msrs: 0x20, access: "write" }]);
    const f = toKvmMsrFilter(p);
    expect(f.ranges.map((r) => [r.flags, r.base, r.nmsrs])).toEqual([
      [KVM_MSR_FILTER_READ, 0x10, 1],
      [KVM_MSR_FILTER_WRITE, 0x20, 1],
    ]);
  });

  it("splits ranges longer than 0x3000 MSRs (0x600-byte bitmaps)", () => {
    const p = MsrPolicy.fromAllowList([{ first: 0x1000_0000, last: 0x1000_3000 }]);
    const f = toKvmMsrFilter(p);
    expect(f.ranges.map((r) => [r.base, r.nmsrs, r.bitmap.length])).toEqual([
      [0x1000_0000, 0x3000, 0x600],
      [0x1000_3000, 1, 8],
    ]);
  });

  it("a whole-coverage VMX bitmap with nothing intercepted needs one range per coverage range", () => {
    const f = toKvmMsrFilter(new VmxMsrBitmap());
    expect(f.flags).toBe(KVM_MSR_FILTER_DEFAULT_DENY);
    expect(f.ranges.map((r) => [r.flags, r.base, r.nmsrs])).toEqual([
      [RW, 0, 0x2000],
      [RW, 0xc000_0000, 0x2000],
    ]);
    expect(f.ranges.every((r) => r.bitmap.every((b) => b === 0xff))).toBe(true);
    expect(toKvmMsrFilter(new SvmMsrpm()).ranges).toHaveLength(3);
  });

  it("deny-everything gets a placeholder range, because KVM refuses default-deny with none", () => {
    const f = toKvmMsrFilter(VmxMsrBitmap.interceptAll());
    expect(f.flags).toBe(KVM_MSR_FILTER_DEFAULT_DENY);
    expect(f.ranges).toEqual([{ flags: RW, base: 0, nmsrs: 1, bitmap: Buffer.alloc(8) }]);
    validateKvmMsrFilter(f);
    const allowAll = toKvmMsrFilter(MsrPolicy.allowAll());
    expect(allowAll).toEqual({ flags: KVM_MSR_FILTER_DEFAULT_ALLOW, ranges: [] });
    validateKvmMsrFilter(allowAll);
  });

  it("throws a typed error naming the ranges needed when a policy does not fit in 16", () => {
    // 20 allowed MSRs, each 0x10000 apart: no two share a 0x3000-MSR window.
    const p = MsrPolicy.fromAllowList(Array.from({ length: 20 }, (_, i) => 0x2000_0000 + i * 0x10000));
    expect(kvmMsrFilterRangesNeeded(p).deny).toBe(20);
    let err: unknown;
    try {
      toKvmMsrFilter(p);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KvmMsrFilterError);
    const k = err as KvmMsrFilterError;
    expect(k.code).toBe("KVM_MSR_FILTER_TOO_MANY_RANGES");
    expect(k.rangesNeeded).toBe(20);
    expect(k.message).toMatch(/needs 20 kvm_msr_filter ranges with default deny/);
    expect(k.message).toMatch(/at most 16/);
    // 16 of them fit exactly.
    const fits = MsrPolicy.fromAllowList(Array.from({ length: 16 }, (_, i) => 0x2000_0000 + i * 0x10000));
    expect(toKvmMsrFilter(fits).ranges).toHaveLength(16);
    // Forcing default allow on a VMX bitmap cannot work: it denies MSR 0xFFFFFFFF, which only the default reaches.
    expect(() => toKvmMsrFilter(new VmxMsrBitmap(), { defaultAction: "allow" })).toThrow(
      expect.objectContaining({ code: "KVM_MSR_FILTER_UNREPRESENTABLE" }),
    );
  });

  it("handles the x2APIC MSRs KVM never filters", () => {
    // x2APIC MSRs passed through plus one far-away MSR: encoding the x2APIC bits costs a range.
    const p = MsrPolicy.fromAllowList([{ first: 0x800, last: 0x8ff }, 0x1000_0000]);
    expect(kvmMsrFilterRangesNeeded(p).deny).toBe(2);
    expect(kvmMsrFilterRangesNeeded(p, { x2apic: "dont-care" }).deny).toBe(1);
    expect(toKvmMsrFilter(p, { x2apic: "dont-care" }).ranges.map((r) => r.base)).toEqual([0x1000_0000]);
    expect(() => toKvmMsrFilter(VmxMsrBitmap.interceptAll(), { x2apic: "error" })).toThrow(
      expect.objectContaining({ code: "KVM_MSR_FILTER_X2APIC_UNFILTERABLE" }),
    );
    const spread = VmxMsrBitmap.fromAllowList([0x10, { first: 0x800, last: 0x8ff }, 0x1f00]);
    const f = toKvmMsrFilter(spread, { x2apic: "dont-care" });
    for (const msr of [0x10, 0x11, 0x1f00, 0x1eff, 0x20]) expect(kvmAllows(f, msr, "read", true)).toBe(spread.toPolicy().allows(msr, "read"));
  });

  it("never emits a range reaching MSR 0xFFFFFFFF, which KVM's u32 end computation cannot match", () => {
    // Denying up to 0xFFFFFFFE is one range ending exactly at the limit.
    const nearTop = MsrPolicy.fromDenyList([{ first: 0xffff_ff00, last: 0xffff_fffe }]);
    const f = toKvmMsrFilter(nearTop);
    expect(f.flags).toBe(KVM_MSR_FILTER_DEFAULT_ALLOW);
    expect(f.ranges.map((r) => [r.base, r.nmsrs])).toEqual([[0xffff_ff00, 0xff]]);
    expect(kvmAllows(f, 0xffff_fffe, "read")).toBe(false);
    expect(kvmAllows(f, 0xffff_ffff, "read")).toBe(true);
    // Denying 0xFFFFFFFF itself needs default deny, and then the allowed rest needs ~350k ranges.
    const topDenied = MsrPolicy.fromDenyList([{ first: 0xffff_ff00, last: 0xffff_ffff }]);
    expect(() => toKvmMsrFilter(topDenied)).toThrow(/with default deny; with default allow it cannot be expressed/);
    expect(() => toKvmMsrFilter(topDenied, { defaultAction: "allow" })).toThrow(
      expect.objectContaining({ code: "KVM_MSR_FILTER_UNREPRESENTABLE" }),
    );
    const split = MsrPolicy.fromAllowList([{ msrs: 0xffff_ffff, access: "read" }]);
    expect(() => toKvmMsrFilter(split)).toThrow(expect.objectContaining({ code: "KVM_MSR_FILTER_UNREPRESENTABLE" }));
    // Allowing 0xFFFFFFFF forces default allow, so an allow-list that includes it cannot fit.
    const allowedTop = MsrPolicy.fromAllowList([{ first: 0xffff_fff0, last: 0xffff_ffff }]);
    expect(kvmMsrFilterRangesNeeded(allowedTop)).toEqual({ allow: 349526, deny: Number.POSITIVE_INFINITY });
    expect(() => toKvmMsrFilter(allowedTop)).toThrow(/needs 349526 kvm_msr_filter ranges with default allow; with default deny it cannot be expressed/);
  });

  it("validateKvmMsrFilter mirrors kvm_vm_ioctl_set_msr_filter's EINVAL rules", () => {
    const ok = { flags: 0, ranges: [{ flags: 1, base: 0, nmsrs: 0x3000, bitmap: Buffer.alloc(0x600) }] };
    expect(() => validateKvmMsrFilter(ok)).not.toThrow();
    const bad = [
      { flags: 2, ranges: [] },
      { flags: 1, ranges: [] },
      { flags: 1, ranges: [{ flags: 1, base: 0, nmsrs: 0, bitmap: Buffer.alloc(8) }] },
      { flags: 0, ranges: [{ flags: 0, base: 0, nmsrs: 1, bitmap: Buffer.alloc(8) }] },
      { flags: 0, ranges: [{ flags: 4, base: 0, nmsrs: 1, bitmap: Buffer.alloc(8) }] },
      { flags: 0, ranges: [{ flags: 1, base: 0, nmsrs: 0x3001, bitmap: Buffer.alloc(0x608) }] },
      { flags: 0, ranges: [{ flags: 1, base: 0, nmsrs: 65, bitmap: Buffer.alloc(9) }] },
      { flags: 0, ranges: [{ flags: 1, base: 0xffff_fff0, nmsrs: 16, bitmap: Buffer.alloc(8) }] },
      { flags: 0, ranges: Array.from({ length: 17 }, () => ({ flags: 1, base: 0, nmsrs: 1, bitmap: Buffer.alloc(8) })) },
    ];
    for (const f of bad) expect(() => validateKvmMsrFilter(f)).toThrow(expect.objectContaining({ code: "KVM_MSR_FILTER_INVALID" }));
  });
});
