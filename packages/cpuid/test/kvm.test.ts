import { KvmCpuidEntry2Layout } from "@tsvmm/abi";
import {
  applyTemplate,
  CpuidTable,
  fromKvmEntries,
  KVM_MAX_CPUID_ENTRIES,
  type KvmCpuidEntry2,
  kvmCpuidForVcpus,
  loadTemplate,
  makeTopology,
  normalize,
  toKvmEntries,
  vcpuPlace,
} from "@tsvmm/cpuid";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { kvmSupportedCpuid } from "./helpers/host.js";

const supported = kvmSupportedCpuid();
const byKey = (a: KvmCpuidEntry2, b: KvmCpuidEntry2) => a.function - b.function || a.index - b.index;

describe("KVM entries", () => {
  it("KVM_GET_SUPPORTED_CPUID output round-trips through a table", () => {
    expect(supported.length).toBeGreaterThan(10);
    const t = fromKvmEntries(supported);
    expect(toKvmEntries(t)).toEqual([...supported].sort(byKey));
    // KVM marks the indexed leaves it reports with KVM_CPUID_FLAG_SIGNIFCANT_INDEX
    for (const e of supported) if (e.function === 7 || e.function === 0xd) expect(e.flags & 1).toBe(1);
  });

  it("entries have the shape abi's kvm_cpuid_entry2 layout encodes", () => {
    const [e] = toKvmEntries(fromKvmEntries(supported));
    expect(Object.keys(e!).sort()).toEqual(["eax", "ebx", "ecx", "edx", "flags", "function", "index"]);
    expect(KvmCpuidEntry2Layout.size).toBe(40);
  });

  it("refuses entries KVM could not have produced", () => {
    const ok = { function: 1, index: 0, flags: 0, eax: 0, ebx: 0, ecx: 0, edx: 0 };
    for (const bad of [
      [ok, ok],
      [{ ...ok, index: 1 }],
      [{ ...ok, eax: -1 }],
      [{ ...ok, function: 7, flags: 1 }, { ...ok, function: 7, index: 1, flags: 0 }],
    ]) {
      expect(() => fromKvmEntries(bad)).toThrow(expect.objectContaining({ code: "CPUID_INVALID_KVM_ENTRY" }));
    }
    const big = new CpuidTable();
    for (let i = 0; i <= KVM_MAX_CPUID_ENTRIES; i++) big.set(0xd, i, { eax: 0, ebx: 0, ecx: 0, edx: 0 });
    expect(() => toKvmEntries(big)).toThrow(expect.objectContaining({ code: "CPUID_INVALID_KVM_ENTRY" }));
  });
});

describe("per-vCPU kvm_cpuid2", () => {
  const host = fromKvmEntries(supported);
  const templated = applyTemplate(host, loadTemplate("t2-like"));

  it("two vCPUs differ only in their APIC id fields", () => {
    const topo = makeTopology(2);
    const [a, b] = kvmCpuidForVcpus(normalize(templated, { topology: topo }), topo);
    const leaf1 = (l: KvmCpuidEntry2[]) => l.find((e) => e.function === 1)!;
    expect(leaf1(a!).ebx >>> 24).toBe(0);
    expect(leaf1(b!).ebx >>> 24).toBe(1);
    const diffs = a!.flatMap((e, i) => {
      const f = b![i]!;
      expect([f.function, f.index]).toEqual([e.function, e.index]);
      return (["eax", "ebx", "ecx", "edx"] as const).filter((r) => e[r] !== f[r]).map((r) => `${e.function.toString(16)}.${e.index}.${r}`);
    });
    const perVcpu = new Set(["1.0.ebx", "b.0.edx", "b.1.edx", "b.2.edx", "1f.0.edx", "1f.1.edx", "1f.2.edx", "8000001e.0.eax", "8000001e.0.ebx"]);
    for (const d of diffs) expect(perVcpu.has(d), d).toBe(true);
    expect(diffs).toContain("1.0.ebx");
  });

  it("over random layouts: one APIC id per vCPU, same in leaf 1 and 0xB, entry lists the same shape", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 2 }),
        (t, c, s) => {
          const topo = makeTopology(t * c * s, { threadsPerCore: t, coresPerSocket: c, sockets: s });
          const all = kvmCpuidForVcpus(normalize(templated, { topology: topo }), topo);
          const ids = all.map((entries, i) => {
            const l1 = entries.find((e) => e.function === 1)!;
            const b0 = entries.find((e) => e.function === 0xb && e.index === 0)!;
            expect(l1.ebx >>> 24).toBe(b0.edx & 0xff);
            expect(b0.edx).toBe(vcpuPlace(topo, i).apicId);
            expect(entries.map((e) => [e.function, e.index])).toEqual(all[0]!.map((e) => [e.function, e.index]));
            return b0.edx;
          });
          expect(new Set(ids).size).toBe(topo.vcpus);
        },
      ),
      { numRuns: 30 },
    );
  });
});
