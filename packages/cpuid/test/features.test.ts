import { readFileSync } from "node:fs";
import {
  CpuidTable,
  decodeFeatures,
  encodeFeatures,
  FEATURES,
  feature,
  featureAt,
  featureMask,
  hasFeature,
  setFeature,
} from "@tsvmm/cpuid";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

const names = FEATURES.map((f) => f.name);

describe("feature registry", () => {
  it("names and bit positions are unique and lower-case", () => {
    expect(new Set(names).size).toBe(names.length);
    const pos = FEATURES.map((f) => `${f.leaf}.${f.subleaf}.${f.register}.${f.bit}`);
    expect(new Set(pos).size).toBe(pos.length);
    for (const f of FEATURES) {
      expect(f.name).toMatch(/^[a-z0-9_]+$/);
      expect(f.bit).toBeGreaterThanOrEqual(0);
      expect(f.bit).toBeLessThan(32);
    }
  });

  it("covers every leaf the issue lists", () => {
    const leaves = new Set(FEATURES.map((f) => `${f.leaf.toString(16)}.${f.subleaf}`));
    for (const l of ["1.0", "6.0", "7.0", "7.1", "7.2", "d.0", "d.1", "14.0", "19.0", "40000001.0"]) {
      expect(leaves).toContain(l);
    }
    for (const l of ["80000001", "80000007", "80000008", "8000000a", "8000001f"]) expect(leaves).toContain(`${l}.0`);
  });

  it("places well-known bits where the SDM puts them", () => {
    expect(feature("avx2")).toMatchObject({ leaf: 7, subleaf: 0, register: "ebx", bit: 5 });
    expect(feature("x2apic")).toMatchObject({ leaf: 1, register: "ecx", bit: 21 });
    expect(feature("hypervisor")).toMatchObject({ leaf: 1, register: "ecx", bit: 31 });
    expect(feature("lm")).toMatchObject({ leaf: 0x80000001, register: "edx", bit: 29 });
    expect(feature("sse3")).toEqual(feature("pni"));
    expect(featureAt(1, 0, "edx", 25)).toBe("sse");
    expect(featureAt(1, 0, "edx", 10)).toBeUndefined();
    expect(featureMask(1, 0, "eax")).toBe(0);
    expect(() => feature("avx9000")).toThrow(expect.objectContaining({ code: "CPUID_UNKNOWN_FEATURE" }));
  });

  it("KVM paravirt bits match this machine's <asm/kvm_para.h>", () => {
    const header = readFileSync("/usr/include/x86_64-linux-gnu/asm/kvm_para.h", "utf8");
    const defs = [...header.matchAll(/#define\s+KVM_(FEATURE|HINTS)_(\w+)\s+(\d+)/g)];
    expect(defs.length).toBeGreaterThan(10);
    for (const [, kind, name, bit] of defs) {
      const ours = feature(`kvm_${kind === "HINTS" ? "hints_" : ""}${name!.toLowerCase()}`);
      expect({ leaf: ours.leaf, register: ours.register, bit: ours.bit }).toEqual({
        leaf: 0x40000001,
        register: kind === "HINTS" ? "edx" : "eax",
        bit: Number(bit),
      });
    }
  });

  it("the KVM leaves can be read at a shifted base", () => {
    const t = new CpuidTable();
    setFeature(t, "kvm_pv_eoi", true, { kvmBase: 0x40000100 });
    expect(t.get(0x40000101)?.eax).toBe(1 << 6);
    expect(hasFeature(t, "kvm_pv_eoi", { kvmBase: 0x40000100 })).toBe(true);
    expect(hasFeature(t, "kvm_pv_eoi")).toBe(false);
  });
});

describe("encode/decode", () => {
  it("decode(encode(names)) is the same set, in registry order", () => {
    fc.assert(
      fc.property(fc.subarray(names), (subset) => {
        const decoded = decodeFeatures(encodeFeatures(subset));
        expect(decoded).toEqual(names.filter((n) => subset.includes(n)));
      }),
      { numRuns: 200 },
    );
  });

  it("encode(decode(t)) into t changes nothing; into a fresh table keeps only feature bits", () => {
    const regsArb = fc.record({ eax: fc.nat(0xffffffff), ebx: fc.nat(0xffffffff), ecx: fc.nat(0xffffffff), edx: fc.nat(0xffffffff) });
    const leafArb = fc.constantFrom(
      [1, 0],
      [6, 0],
      [7, 0],
      [7, 1],
      [7, 2],
      [0xd, 0],
      [0xd, 1],
      [0x14, 0],
      [0x19, 0],
      [0x40000001, 0],
      [0x80000001, 0],
      [0x80000007, 0],
      [0x80000008, 0],
      [0x8000000a, 0],
      [0x8000001f, 0],
    );
    fc.assert(
      fc.property(fc.array(fc.tuple(leafArb, regsArb), { maxLength: 12 }), (list) => {
        const t = new CpuidTable();
        for (const [[leaf, sub], regs] of list) t.set(leaf!, sub!, regs);
        const before = t.entries();
        const names = decodeFeatures(t);
        expect(encodeFeatures(names, t).entries()).toEqual(before);
        const fresh = encodeFeatures(names);
        for (const e of fresh.entries()) {
          const orig = t.get(e.leaf, e.subleaf)!;
          for (const reg of ["eax", "ebx", "ecx", "edx"] as const) {
            expect(e[reg]).toBe((orig[reg] & featureMask(e.leaf, e.subleaf, reg)) >>> 0);
          }
        }
      }),
      { numRuns: 150 },
    );
  });

  it("setFeature flips exactly one bit", () => {
    fc.assert(
      fc.property(fc.constantFrom(...names), fc.nat(0xffffffff), (name, fill) => {
        const f = feature(name);
        const t = new CpuidTable().set(f.leaf, f.subleaf, { eax: fill, ebx: fill, ecx: fill, edx: fill });
        const before = t.get(f.leaf, f.subleaf)!;
        setFeature(t, name, !hasFeature(t, name));
        const after = t.get(f.leaf, f.subleaf)!;
        expect((before[f.register] ^ after[f.register]) >>> 0).toBe((1 << f.bit) >>> 0);
      }),
      { numRuns: 200 },
    );
  });
});
