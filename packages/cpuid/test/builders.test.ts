import { readFileSync } from "node:fs";
import {
  CpuidTable,
  decodeFeatures,
  decodeSignature,
  disableFeatures,
  encodeSignature,
  getBrand,
  getHypervisorSignature,
  getVendor,
  hasFeature,
  intersectFeatures,
  KVM_SIGNATURE,
  maskRegister,
  setBrand,
  setHypervisor,
  setSignature,
  setVendor,
} from "@tsvmm/cpuid";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { hostCpuid } from "./helpers/host.js";

const printable = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)) });

describe("vendor and brand strings", () => {
  it("vendor round-trips and lands in EBX, EDX, ECX order", () => {
    const t = setVendor(new CpuidTable().set(0, 0, { eax: 0xd, ebx: 0, ecx: 0, edx: 0 }), "GenuineIntel");
    // "Genu" = 0x756e6547 in EBX, "ineI" in EDX, "ntel" in ECX (SDM Vol. 2A, CPUID leaf 0)
    expect(t.get(0)).toEqual({ eax: 0xd, ebx: 0x756e6547, edx: 0x49656e69, ecx: 0x6c65746e });
    expect(getVendor(t)).toBe("GenuineIntel");
    expect(t.vendor).toBe("intel");
    expect(() => setVendor(t, "short")).toThrow(expect.objectContaining({ code: "CPUID_INVALID_STRING" }));
  });

  it("brand strings up to 47 characters round-trip, and 0x80000000 reaches 0x80000004", () => {
    fc.assert(
      fc.property(printable.filter((s) => s.length <= 47), (brand) => {
        const t = setBrand(new CpuidTable(), brand);
        expect(getBrand(t)).toBe(brand);
        expect(t.maxExtendedLeaf).toBe(0x80000004);
      }),
      { numRuns: 200 },
    );
    expect(() => setBrand(new CpuidTable(), "x".repeat(48))).toThrow(expect.objectContaining({ code: "CPUID_INVALID_STRING" }));
    expect(() => setBrand(new CpuidTable(), "caf\u00e9")).toThrow(expect.objectContaining({ code: "CPUID_INVALID_STRING" }));
  });
});

describe("family/model/stepping", () => {
  it("matches published signatures", () => {
    // Intel Skylake-SP 0x50654 = family 6 model 0x55 stepping 4; AMD Zen 3 0xA00F11 = family 0x19 model 1 stepping 1
    expect(decodeSignature(0x50654, "intel")).toEqual({ family: 6, model: 0x55, stepping: 4, type: 0 });
    expect(encodeSignature({ family: 6, model: 0x55, stepping: 4 }, "intel")).toBe(0x50654);
    expect(decodeSignature(0xa00f11, "amd")).toEqual({ family: 0x19, model: 1, stepping: 1, type: 0 });
    expect(encodeSignature({ family: 0x19, model: 1, stepping: 1 }, "amd")).toBe(0xa00f11);
  });

  it("encode/decode round-trip wherever the encoding exists, refuse otherwise", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0x10e }),
        fc.integer({ min: 0, max: 0xff }),
        fc.nat(15),
        fc.constantFrom("intel" as const, "amd" as const),
        (family, model, stepping, vendor) => {
          const needsExt = model > 15;
          const extOk = family >= 15 || (vendor === "intel" && family === 6);
          if (needsExt && !extOk) {
            expect(() => encodeSignature({ family, model, stepping }, vendor)).toThrow(
              expect.objectContaining({ code: "CPUID_INVALID_SIGNATURE" }),
            );
          } else {
            const eax = encodeSignature({ family, model, stepping }, vendor);
            expect(decodeSignature(eax, vendor)).toEqual({ family, model, stepping, type: 0 });
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("setSignature keeps nothing but EAX changed", () => {
    const t = new CpuidTable().set(1, 0, { eax: 0, ebx: 5, ecx: 6, edx: 7 });
    setSignature(t, { family: 6, model: 0x8f, stepping: 8 }, "intel");
    expect(t.get(1)).toEqual({ eax: 0x806f8, ebx: 5, ecx: 6, edx: 7 });
  });
});

describe("hypervisor leaves and masking", () => {
  it("writes the signature leaf and the hypervisor bit", () => {
    const t = setHypervisor(new CpuidTable(), { signature: "TSVMMTSVMM\0\0", features: 1 << 3 });
    expect(getHypervisorSignature(t)).toBe("TSVMMTSVMM\0\0");
    expect(t.get(0x40000000)?.eax).toBe(0x40000001);
    expect(hasFeature(t, "hypervisor")).toBe(true);
    expect(hasFeature(t, "kvm_clocksource2")).toBe(true);
    const k = setHypervisor(new CpuidTable());
    // KVM's own signature "KVMKVMKVM\0\0\0" (kvm_para.h) as EBX/ECX/EDX
    expect(k.get(0x40000000)).toMatchObject({ ebx: 0x4b4d564b, ecx: 0x564b4d56, edx: 0x4d });
    expect(getHypervisorSignature(k)).toBe(KVM_SIGNATURE);
    expect(() => setHypervisor(k, { signature: "too long signature" })).toThrow(
      expect.objectContaining({ code: "CPUID_INVALID_STRING" }),
    );
  });

  it("disableFeatures and maskRegister clear only what they name", () => {
    const t = new CpuidTable().set(7, 0, { eax: 0, ebx: 0xffffffff, ecx: 0, edx: 0 });
    disableFeatures(t, ["avx2", "smep"]);
    expect(t.get(7, 0)?.ebx).toBe((0xffffffff & ~(1 << 5) & ~(1 << 7)) >>> 0);
    maskRegister(t, 7, 0, "ebx", { and: 0xff, or: 0x100 });
    expect(t.get(7, 0)?.ebx).toBe(0x15f);
    expect(maskRegister(t, 0x14, 0, "ebx", { and: 0 }).hasLeaf(0x14)).toBe(false);
  });

  it("intersectFeatures keeps only bits the other table supports and leaves non-feature registers", () => {
    const fill = { eax: 0xffffffff, ebx: 0xffffffff, ecx: 0xffffffff, edx: 0xffffffff };
    const t = new CpuidTable().set(1, 0, fill).set(7, 0, fill);
    const supported = new CpuidTable().set(1, 0, { eax: 0, ebx: 0, ecx: 1 << 21, edx: 1 });
    intersectFeatures(t, supported);
    expect(decodeFeatures(t)).toEqual(["x2apic", "fpu"]);
    expect(t.get(1)?.eax).toBe(0xffffffff);
    expect(t.get(1)?.ebx).toBe(0xffffffff);
  });
});

describe("this host's CPUID, executed by a C program", () => {
  const host = new CpuidTable(hostCpuid());
  const cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
  const field = (name: string) => new RegExp(`^${name}\\s*:\\s*(.*)$`, "m").exec(cpuinfo)?.[1];

  it("decodes the vendor and brand strings /proc/cpuinfo shows", () => {
    expect(getVendor(host)).toBe(field("vendor_id"));
    expect(getBrand(host).trim()).toBe(field("model name")?.trim());
  });

  it("decodes family/model/stepping as /proc/cpuinfo does", () => {
    const sig = decodeSignature(host.get(1)!.eax, host.vendor);
    expect(String(sig.family)).toBe(field("cpu family"));
    expect(String(sig.model)).toBe(field("model"));
    expect(String(sig.stepping)).toBe(field("stepping"));
  });

  it("every cpuinfo flag we name from leaves 1, 7, 0x80000001 is set in the raw CPUID", () => {
    const flags = new Set(field("flags")!.split(/\s+/));
    const raw = new Set(decodeFeatures(host));
    const ours = ["fpu", "sse2", "pni", "ssse3", "sse4_2", "x2apic", "avx", "avx2", "bmi2", "lm", "nx", "hypervisor"];
    for (const name of ours) if (flags.has(name)) expect(raw).toContain(name);
    // and the other way for a few leaf 1/7 bits Linux never hides
    for (const name of ["fpu", "tsc", "sse", "sse2", "cx8", "cmov"]) expect(flags.has(name)).toBe(raw.has(name));
  });
});
