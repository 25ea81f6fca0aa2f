import type { KvmCpuidEntry2 } from "@tsvmm/abi";
import {
  applyTemplate, type CpuidRegs, type CpuidTable, compileTemplate, diffTables, feature, featureAt, fromKvmEntries, getBrand,
  getHypervisorSignature, getVendor, kvmCpuidForVcpus, makeTopology, normalize, REGISTERS, TEMPLATES, vcpuPlace,
} from "@tsvmm/cpuid";
import { Kvm, kvmAvailable } from "@tsvmm/kvm-backend";
import { beforeAll, describe, expect, it } from "vitest";
import { buildGuests, runGuest } from "../../test-kernels/harness/guest.js";
import { randomBelow, readCpuidRow, writeCpuidParams } from "./guest-params.js";

// @tsvmm/cpuid on the real /dev/kvm: a shipped template applied to KVM_GET_SUPPORTED_CPUID,
// normalized for two vCPUs, set per vCPU with KVM_SET_CPUID2; a guest executes CPUID on both
// vCPUs and the test compares what each saw with the table it was given.

beforeAll(() => {
  buildGuests();
  expect(kvmAvailable(), "/dev/kvm must be readable and writable for the integration tests").toBe(true);
});

const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const randomText = (n: number) => Array.from({ length: n }, () => ALNUM[randomBelow(ALNUM.length)]).join("");

/** A 12-byte string from three registers, in the given order (vendor: EBX EDX ECX; hypervisor: EBX ECX EDX). */
function regString(...regs: number[]): string {
  const b = Buffer.alloc(regs.length * 4);
  for (const [i, r] of regs.entries()) b.writeUInt32LE(r >>> 0, i * 4);
  return b.toString("latin1");
}

const leafName = (leaf: number, subleaf: number) => `0x${leaf.toString(16)}.${subleaf}`;

/**
 * What this host did to the table it was given: every register KVM_GET_CPUID2 returns
 * differently from what KVM_SET_CPUID2 set, by name. Hosts differ here (the AMD machines replaced
 * leaf 1 ECX/EDX, 7.0 and 0xD.0/1; the Intel ones also 7.1 EAX), so the test measures it on every
 * run and asserts only what must hold on any host.
 */
function heldDifferences(set: CpuidTable, held: CpuidTable): string[] {
  return diffTables(set, held).map((d) => {
    const names = [...d.added.map((n) => `+${n}`), ...d.removed.map((n) => `-${n}`)];
    return `${leafName(d.leaf, d.subleaf)}.${d.register} ${names.length > 0 ? names.join(",") : `${d.a?.toString(16)}->${d.b?.toString(16)}`}`;
  });
}

describe("@tsvmm/cpuid tables on /dev/kvm", () => {
  it.each(["t2-like", "minimal"] as const)("%s template + normalize for 2 vCPUs: each vCPU sees its table (vendor, brand, masked bits, topology, hypervisor leaf)", async (templateName) => {
    const kvm = Kvm.open();
    const supported = kvm.supportedCpuid();
    kvm.close();
    const host = fromKvmEntries(supported);
    const template = TEMPLATES[templateName];
    const topology = makeTopology(2);
    const brand = `tsvmm integration ${randomText(8)} vCPU`;
    const signature = randomText(12);
    const normalized = normalize(applyTemplate(host, template), { topology, brand, hypervisor: { signature } });
    const perVcpu = kvmCpuidForVcpus(normalized, topology);

    // Bits the template forces to 0 that this host has (and normalization does not set again).
    const masked: { leaf: number; subleaf: number; reg: (typeof REGISTERS)[number]; bit: number; name: string }[] = [];
    for (const c of compileTemplate(template)) {
      for (const reg of REGISTERS) {
        const bits = (c.masks[reg].zeros & (host.get(c.leaf, c.subleaf)?.[reg] ?? 0) & ~(normalized.get(c.leaf, c.subleaf)?.[reg] ?? 0)) >>> 0;
        for (let bit = 0; bit < 32; bit++) {
          if ((bits >>> bit) & 1) masked.push({ leaf: c.leaf, subleaf: c.subleaf, reg, bit, name: featureAt(c.leaf, c.subleaf, reg, bit) ?? `bit${bit}` });
        }
      }
    }

    const leaves = perVcpu[0]!.map((e) => ({ leaf: e.function, subleaf: e.index }));
    // Past the maximum basic and extended leaves: KVM's out-of-range answer, compared with lookup().
    const outOfRange = [(normalized.maxBasicLeaf ?? 0) + 1 + randomBelow(4), (normalized.maxExtendedLeaf ?? 0x80000000) + 1 + randomBelow(4)];
    for (const leaf of outOfRange) leaves.push({ leaf, subleaf: 0 });
    let rows: CpuidRegs[][] = [];
    const r = await runGuest({
      name: "cpuid-template",
      vcpus: 2,
      irqchip: true,
      cpuid: (_kvmDefault: KvmCpuidEntry2[], index: number) => perVcpu[index]!,
      prepare: ({ memory }) => {
        writeCpuidParams(memory, leaves);
        return {};
      },
      inspect: ({ vm }) => {
        rows = [0, 1].map((row) => readCpuidRow(vm.memory, row, leaves.length));
      },
    });
    expect(r.end, `console: ${r.console}`).toEqual({ kind: "exit" });
    expect([r.exitCodes.get(0), r.exitCodes.get(1)]).toEqual([0, 0]);
    const notes: string[] = [];
    const leaked = new Set<string>(); // masked by the template, 1 in the guest: the host put them back
    const honoured: string[] = [];
    for (let vcpu = 0; vcpu < 2; vcpu++) {
      const set = fromKvmEntries(r.cpuid[vcpu]!.set);
      const held = fromKvmEntries(r.cpuid[vcpu]!.held);
      expect(r.cpuid[vcpu]!.set).toEqual(perVcpu[vcpu]);
      notes.push(...heldDifferences(set, held));
      // The masks this host honours (KVM kept the template's 0): measured, not listed. How many is
      // the host's business (the Intel PVM host keeps 1 of t2-like's 15 and puts the rest back; the
      // AMD one kept more): with none the masking below would prove nothing, so one is required.
      const provable = masked.filter((m) => (((held.get(m.leaf, m.subleaf)?.[m.reg] ?? 0) >>> m.bit) & 1) === 0);
      expect(provable.length, `${templateName}: the host must honour at least one of the ${masked.length} bits the template masks`).toBeGreaterThanOrEqual(1);
      honoured.push(...provable.map((m) => m.name));
      const seen = rows[Number(r.value("row", vcpu))]!;
      const at = (leaf: number, subleaf = 0) => seen[leaves.findIndex((l) => l.leaf === leaf && l.subleaf === subleaf)]!;
      // Every leaf the guest executed is what KVM holds for this vCPU (out-of-range: the vendor's rule).
      for (const [i, l] of leaves.entries()) expect(seen[i], `vCPU ${vcpu} leaf ${leafName(l.leaf, l.subleaf)}`).toEqual(held.lookup(l.leaf, l.subleaf));
      // Identity.
      const l0 = at(0);
      expect(regString(l0.ebx, l0.edx, l0.ecx)).toBe(getVendor(host));
      const b = [0x80000002, 0x80000003, 0x80000004].flatMap((l) => [at(l).eax, at(l).ebx, at(l).ecx, at(l).edx]);
      expect(regString(...b).replace(/\0+$/, "")).toBe(brand);
      // Masked features read 0 in the guest although the host supports them.
      for (const m of provable) expect((at(m.leaf, m.subleaf)[m.reg] >>> m.bit) & 1, `vCPU ${vcpu} ${m.name}`).toBe(0);
      // A bit the guest sees set although the template masked it must be one KVM's held table sets.
      for (const m of masked) if ((at(m.leaf, m.subleaf)[m.reg] >>> m.bit) & 1) expect((held.lookup(m.leaf, m.subleaf)[m.reg] >>> m.bit) & 1).toBe(1);
      for (const m of masked) if ((at(m.leaf, m.subleaf)[m.reg] >>> m.bit) & 1) leaked.add(m.name);
      // Topology: this vCPU's APIC id everywhere it appears, and the LAPIC KVM built agrees.
      const apicId = vcpuPlace(topology, vcpu).apicId;
      expect(apicId).toBe(vcpu); // 1 thread per core, 2 cores: ids 0 and 1
      expect(at(1).ebx >>> 24).toBe(apicId);
      expect((at(1).ebx >>> 16) & 0xff).toBe(2); // addressable ids per package
      expect((at(1).edx >>> 28) & 1).toBe(1); // HTT: more than one logical processor per package
      expect(r.value("lapic.id", vcpu)).toBe(BigInt(apicId));
      // Leaf 0xB: SMT level (shift 0, 1 thread), core level (shift 1, 2 processors), then invalid.
      expect([0, 1, 2].map((s) => at(0xb, s))).toEqual([
        { eax: 0, ebx: 1, ecx: 0x100, edx: apicId },
        { eax: 1, ebx: 2, ecx: 0x201, edx: apicId },
        { eax: 0, ebx: 0, ecx: 2, edx: apicId },
      ]);
      // Hypervisor leaf: signature in EBX ECX EDX and CPUID.1:ECX.hypervisor.
      const hv = at(0x40000000);
      expect(regString(hv.ebx, hv.ecx, hv.edx)).toBe(signature);
      expect(hv.eax).toBeGreaterThanOrEqual(0x40000001);
      expect((at(1).ecx >>> feature("hypervisor").bit) & 1).toBe(1);
      expect(getHypervisorSignature(normalized)).toBe(signature);
      expect(getBrand(normalized).replace(/\0+$/, "")).toBe(brand);
    }
    console.log(
      `${templateName} on ${getVendor(host)}: ${leaves.length} leaves x 2 vCPUs = KVM's table; masked and 0 in guest: ${[...new Set(honoured)].join(",")}; masked but host-overridden to 1: ${[...leaked].join(",") || "none"}; registers this host overrode: ${[...new Set(notes)].join("; ") || "none"}`,
    );
  });
});
