import {
  applyTemplate,
  type CpuidTemplate,
  fromKvmEntries,
  getBrand,
  hasFeature,
  kvmCpuidForVcpus,
  loadTemplate,
  makeTopology,
  normalize,
  vcpuTable,
} from "@tsvmm/cpuid";
import { describe, expect, it } from "vitest";
import { guestCpuid, kvmSupportedCpuid } from "./helpers/host.js";

// Measured on this project's PVM hosts (see the package README): KVM_SET_CPUID2 is honoured for
// every leaf except CPUID.1 ECX/EDX (bit 31 of ECX, "hypervisor", is honoured), leaf 7 and leaf
// 0xD, which the guest sees with the host's values. Those registers are not compared.
const notHonoured = (leaf: number, reg: string) =>
  leaf === 7 || leaf === 0xd || (leaf === 1 && (reg === "ecx" || reg === "edx"));

const QUERIES: [number, number][] = [
  [0, 0],
  [1, 0],
  [4, 0],
  [0xb, 0],
  [0xb, 1],
  [0xb, 2],
  [0xb, 9],
  [0xc, 0],
  [0x40000000, 0],
  [0x40000001, 0],
  [0x40000005, 0],
  [0x80000000, 0],
  [0x80000001, 0],
  [0x80000002, 0],
  [0x80000003, 0],
  [0x80000004, 0],
  [0x80000008, 0],
  [0x8000001e, 0],
  [0x80000031, 1],
];

describe("guests on /dev/kvm see the table (C harness, 2 vCPUs)", () => {
  const host = fromKvmEntries(kvmSupportedCpuid());
  // a masked feature the host has: lahf_lm (0x80000001 ECX[0]); t2-like also drops misalignsse
  const masked: CpuidTemplate = { ...loadTemplate("t2-like"), name: "t2-like-no-lahf", features: { lahf_lm: 0 } };
  const topo = makeTopology(2, { coresPerSocket: 2 });

  for (const vendorString of ["AuthenticAMD", "GenuineIntel"]) {
    it(`${vendorString}: vendor, brand, masked feature, APIC ids, hypervisor leaf, out-of-range rule`, () => {
      expect(hasFeature(host, "lahf_lm")).toBe(true);
      const table = normalize(applyTemplate(host, masked), {
        topology: topo,
        vendorString,
        brand: "tsvmm virtual CPU",
        hypervisor: { signature: "TSVMMTSVMM\0\0" },
      });
      // make 0xB the highest basic leaf so Intel's redirect lands on a leaf this host honours
      table.setRegister(0, 0, "eax", 0xb);
      const seen = guestCpuid(QUERIES, kvmCpuidForVcpus(table, topo));
      expect(seen).toHaveLength(QUERIES.length * 2);
      for (const s of seen) {
        const expected = vcpuTable(table, topo, s.vcpu).lookup(s.leaf, s.subleaf);
        for (const reg of ["eax", "ebx", "ecx", "edx"] as const) {
          if (notHonoured(s.leaf, reg)) continue;
          expect(s[reg], `vCPU ${s.vcpu} CPUID(${s.leaf.toString(16)}, ${s.subleaf}).${reg}`).toBe(expected[reg]);
        }
      }
      const on = (v: number, leaf: number, sub = 0) => seen.find((s) => s.vcpu === v && s.leaf === leaf && s.subleaf === sub)!;
      for (const v of [0, 1]) {
        const l0 = on(v, 0);
        const vendor = String.fromCharCode(
          ...[l0.ebx, l0.edx, l0.ecx].flatMap((r) => [r & 0xff, (r >>> 8) & 0xff, (r >>> 16) & 0xff, r >>> 24]),
        );
        expect(vendor).toBe(vendorString);
        const brandTable = fromKvmEntries(
          [0x80000002, 0x80000003, 0x80000004].map((leaf) => ({ ...on(v, leaf), function: leaf, index: 0, flags: 0 })),
        );
        expect(getBrand(brandTable)).toBe("tsvmm virtual CPU");
        expect(on(v, 1).ebx >>> 24).toBe(v);
        expect(on(v, 0xb).edx).toBe(v);
        expect(on(v, 1).ecx >>> 31).toBe(1);
        expect(on(v, 0x80000001).ecx & 1).toBe(0);
        expect((on(v, 0x80000001).ecx >>> 7) & 1).toBe(0);
        expect(on(v, 0x40000000)).toMatchObject({ eax: 0x40000001, ebx: 0x4d565354, ecx: 0x5653544d, edx: 0x4d4d });
      }
      const oor = on(0, 0x80000031, 1);
      if (vendorString === "AuthenticAMD") expect(oor).toMatchObject({ eax: 0, ebx: 0, ecx: 0, edx: 0 });
      else expect(oor).toMatchObject({ eax: on(0, 0xb, 1).eax, ebx: on(0, 0xb, 1).ebx, ecx: 1 | (2 << 8), edx: 0 });
    });
  }
});
