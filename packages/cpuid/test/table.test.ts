import { CpuidError, CpuidTable, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, regsToString } from "@tsvmm/cpuid";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

const r = (eax: number, ebx = 0, ecx = 0, edx = 0) => ({ eax, ebx, ecx, edx });
const vendorRegs = (v: string) => {
  const w = (s: string) => s.charCodeAt(0) | (s.charCodeAt(1) << 8) | (s.charCodeAt(2) << 16) | ((s.charCodeAt(3) << 24) >>> 0);
  return { ebx: w(v.slice(0, 4)) >>> 0, edx: w(v.slice(4, 8)) >>> 0, ecx: w(v.slice(8, 12)) >>> 0 };
};

/** The SDM's own example for out-of-range leaves: max basic 0BH, max extended 80000008H. */
function sdmExample(vendor: string): CpuidTable {
  const t = new CpuidTable();
  t.set(0, 0, { eax: 0xb, ...vendorRegs(vendor) });
  t.set(0xa, 0, r(0x07300403, 0, 0, 0x603));
  t.set(0xb, 0, r(1, 2, 0x100, 7));
  t.set(0xb, 1, r(4, 8, 0x201, 7));
  t.set(0x80000000, 0, r(0x80000008));
  t.set(0x80000008, 0, r(0x3030));
  return t;
}

describe("CpuidTable storage", () => {
  it("a leaf without the significant flag answers every subleaf with its one entry", () => {
    const t = new CpuidTable().set(1, 0, r(0x806f8, 1, 2, 3));
    expect(t.isSignificant(1)).toBe(false);
    expect(t.get(1, 5)).toEqual(r(0x806f8, 1, 2, 3));
    expect(() => t.set(1, 3, r(0))).toThrow(expect.objectContaining({ code: "CPUID_SUBLEAF_NOT_SIGNIFICANT" }));
  });

  it("indexed leaves default to significant, like KVM's supported CPUID", () => {
    const t = new CpuidTable().set(7, 0, r(2)).set(7, 1, r(0x10));
    expect(t.flagsOf(7)).toBe(KVM_CPUID_FLAG_SIGNIFCANT_INDEX);
    expect(t.get(7, 1)).toEqual(r(0x10));
    expect(t.get(7, 2)).toBeUndefined();
    expect(() => t.set(7, 0, r(0), { flags: 0 })).toThrow(CpuidError);
  });

  it("refuses values that are not u32 with CPUID_INVALID_VALUE", () => {
    for (const bad of [-1, 2 ** 32, 1.5, Number.NaN]) {
      expect(() => new CpuidTable().set(1, 0, r(bad))).toThrow(expect.objectContaining({ code: "CPUID_INVALID_VALUE" }));
    }
    expect(() => new CpuidTable().lookup(-1)).toThrow(expect.objectContaining({ code: "CPUID_INVALID_VALUE" }));
  });

  it("entries() is ordered and round-trips through the constructor", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ leaf: fc.constantFrom(0, 1, 4, 7, 0xd, 0x80000001), subleaf: fc.nat(3), eax: fc.nat(0xffffffff) })),
        (list) => {
          const t = new CpuidTable();
          for (const e of list) t.set(e.leaf, t.isSignificant(e.leaf) ? e.subleaf : 0, r(e.eax));
          const es = t.entries();
          for (let i = 1; i < es.length; i++) {
            const a = es[i - 1]!;
            const b = es[i]!;
            expect(a.leaf < b.leaf || (a.leaf === b.leaf && a.subleaf < b.subleaf)).toBe(true);
          }
          expect(new CpuidTable(es).entries()).toEqual(es);
        },
      ),
      { numRuns: 100 },
    );
  });
});

describe("lookup: out-of-range rules", () => {
  it("Intel returns the highest basic leaf for leaves above the max basic/extended (SDM example)", () => {
    const t = sdmExample("GenuineIntel");
    expect(t.vendor).toBe("intel");
    // "CPUID.EAX = 8000000AH (* INVALID: Returns same information as CPUID.EAX = 0BH. *)"
    expect(t.lookup(0x8000000a, 0)).toEqual(t.get(0xb, 0));
    expect(t.lookup(0x8000000a, 1)).toEqual(t.get(0xb, 1));
    expect(t.lookup(0xc, 0)).toEqual(t.get(0xb, 0));
    // no 0x40000000 leaf: that range is out of range as a whole
    expect(t.lookup(0x40000000)).toEqual(t.get(0xb, 0));
  });

  it("leaves inside the range but absent return zeros on both vendors", () => {
    for (const v of ["GenuineIntel", "AuthenticAMD"]) {
      const t = sdmExample(v);
      expect(t.lookup(0x5)).toEqual(r(0));
      expect(t.lookup(0x80000005)).toEqual(r(0));
    }
  });

  it("AMD returns zeros out of range; the vendor can also be chosen explicitly", () => {
    const t = sdmExample("AuthenticAMD");
    expect(t.vendor).toBe("amd");
    expect(t.lookup(0x8000000a)).toEqual(r(0));
    expect(t.lookup(0xc)).toEqual(r(0));
    expect(t.lookup(0xc, 0, "intel")).toEqual(t.get(0xb, 0));
    expect(sdmExample("HygonGenuine").vendor).toBe("amd");
  });

  it("hypervisor range is bounded by its own 0x400000x00 leaf", () => {
    const t = sdmExample("GenuineIntel").set(0x40000000, 0, r(0x40000001, 1, 2, 3));
    expect(t.lookup(0x40000001)).toEqual(r(0));
    expect(t.lookup(0x40000002)).toEqual(t.get(0xb, 0));
  });

  it("leaf 0xB past its last level reports the subleaf in ECX[7:0] and the x2APIC id in EDX", () => {
    const t = sdmExample("GenuineIntel");
    expect(t.lookup(0xb, 2)).toEqual(r(0, 0, 2, 7));
    expect(t.lookup(0xb, 0x1ff)).toEqual(r(0, 0, 0xff, 7));
    // also when reached through the Intel redirect
    expect(t.lookup(0x80000009, 5)).toEqual(r(0, 0, 5, 7));
  });

  it("regsToString stops at NUL", () => {
    const v = vendorRegs("AuthenticAMD");
    expect(regsToString([v.ebx, v.edx, v.ecx])).toBe("AuthenticAMD");
    expect(regsToString([0x41, 0x42])).toBe("A");
  });
});
