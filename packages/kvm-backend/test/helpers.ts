import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { KvmSegment, KvmSregs } from "@tsvmm/abi";
import { Kvm, type Vcpu, type Vm } from "@tsvmm/kvm-backend";

const cacheDir = join(tmpdir(), "tsvmm-kvm-backend-asm");

/** Assemble a flat binary with GNU as (the real tool, so guest sources stay readable). */
export function assemble(source: string, bits: 16 | 32 | 64, origin = 0): Buffer {
  mkdirSync(cacheDir, { recursive: true });
  const text = `.code${bits}\n.intel_syntax noprefix\n${source}\n`;
  const key = createHash("sha256").update(`${bits}:${origin}:${text}`).digest("hex").slice(0, 16);
  const s = join(cacheDir, `${key}.s`);
  const o = join(cacheDir, `${key}.o`);
  const bin = join(cacheDir, `${key}.bin`);
  writeFileSync(s, text);
  execFileSync("as", ["--64", "-o", o, s]);
  execFileSync("ld", ["-m", "elf_x86_64", "-Ttext", `0x${origin.toString(16)}`, "--oformat", "binary", "-e", "0", "-o", bin, o]);
  return readFileSync(bin);
}

export function flatSeg(selector: number, code: boolean, long = false): KvmSegment {
  return {
    base: 0n, limit: 0xffffffff, selector, type: code ? 11 : 3, present: 1, dpl: 0,
    db: long && code ? 0 : 1, s: 1, l: long && code ? 1 : 0, g: 1, avl: 0, unusable: 0,
  };
}

/** Real mode at CS:IP = 0:ip, all segments base 0. */
export function enterRealMode(vcpu: Vcpu, ip: number): void {
  const s = vcpu.getSregs();
  for (const k of ["cs", "ds", "es", "fs", "gs", "ss"] as const) {
    s[k].base = 0n;
    s[k].selector = 0;
  }
  vcpu.setSregs(s);
  const r = vcpu.getRegs();
  r.rip = BigInt(ip);
  r.rflags = 2n;
  r.rsp = 0x7000n;
  vcpu.setRegs(r);
}

/**
 * 64-bit long mode on identity page tables (first 1 GiB, 2 MiB pages) written at `tables`
 * (three pages: PML4, PDPT, PD).
 */
export function enterLongMode(vm: Vm, vcpu: Vcpu, rip: number, tables = 0x1000): void {
  const m = vm.memory;
  m.fill(tables, 0x3000, 0);
  m.writeU64(tables, BigInt(tables + 0x1000) | 3n);
  m.writeU64(tables + 0x1000, BigInt(tables + 0x2000) | 3n);
  for (let i = 0; i < 512; i++) m.writeU64(tables + 0x2000 + i * 8, (BigInt(i) << 21n) | 0x83n);
  const s: KvmSregs = vcpu.getSregs();
  s.cs = flatSeg(0x8, true, true);
  for (const k of ["ds", "es", "fs", "gs", "ss"] as const) s[k] = flatSeg(0x10, false);
  s.cr3 = BigInt(tables);
  s.cr4 = 0x20n; // PAE
  s.cr0 = 0x80000011n; // PG | ET | PE
  s.efer = 0x500n; // LME | LMA
  vcpu.setSregs(s);
  const r = vcpu.getRegs();
  r.rip = BigInt(rip);
  r.rflags = 2n;
  r.rsp = 0x80000n;
  vcpu.setRegs(r);
}

/**
 * Route IOAPIC pin `pin` to `vector` (fixed delivery, physical destination APIC 0, edge, unmasked)
 * and mask the legacy PIC, so an IRQ line reaches the guest only through the IOAPIC.
 */
export function routeIoapicPin(vm: Vm, pin: number, vector: number): void {
  // IOAPIC state: base_address u64, ioregsel u32, id u32, irr u32, pad u32, then 24 u64 entries.
  const chip = vm.getIrqchip(2);
  chip.chip.writeBigUInt64LE(BigInt(vector), 24 + pin * 8);
  vm.setIrqchip(chip);
  for (const id of [0, 1]) {
    const pic = vm.getIrqchip(id);
    pic.chip[2] = 0xff; // imr
    vm.setIrqchip(pic);
  }
}

/** Software-enable the LAPIC (SVR) with LVT0/LVT1 masked. */
export function enableLapic(vcpu: Vcpu): void {
  const l = vcpu.getLapic();
  l.regs.writeUInt32LE(0x1ff, 0xf0); // SVR: enabled, spurious vector 0xff
  l.regs.writeUInt32LE(0x10000, 0x350); // LVT0 masked
  l.regs.writeUInt32LE(0x10000, 0x360); // LVT1 masked
  vcpu.setLapic(l);
}

/** The VM most tests start from: a TSS address and 1 MiB of RAM at 0. */
export function openTestVm(): { kvm: Kvm; vm: Vm } {
  const kvm = Kvm.open();
  const vm = kvm.createVm();
  vm.setTssAddr(0xfffbd000);
  vm.addMemory({ slot: 0, guestPhysAddr: 0, size: 1 << 20 });
  return { kvm, vm };
}

export function closeTestVm(kvm: Kvm, vm: Vm): void {
  vm.close();
  kvm.close();
}
