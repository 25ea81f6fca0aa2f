import type { GuestMemory, KvmRegs, KvmSegment, KvmSregs } from "@tsvmm/abi";
import { BootMode, type GuestImage } from "./elf.js";

// The boot contract (test-kernels/README.md, "Boot contract"): what the VMM puts in memory and
// in the vCPU before the first KVM_RUN, per boot mode.

/** VMM-owned boot data for prot32/long64 guests; guests load at 0x8000 or above. */
export const BOOT_GDT = 0x500;
export const BOOT_PML4 = 0x1000;
export const BOOT_PDPT = 0x2000;
export const BOOT_PD = 0x3000;
export const BOOT_CS = 0x10;
export const BOOT_DS = 0x18;
/** The VMM's identity map: 1 GiB of 2 MiB pages, present, writable, user-accessible. */
export const BOOT_MAP_BYTES = 1 << 30;
export const PDE_FLAGS = 0x87n; // P | RW | US | PS
export const TABLE_FLAGS = 0x7n; // P | RW | US

const GDT_CODE32 = 0x00cf9b000000ffffn;
const GDT_CODE64 = 0x00af9b000000ffffn;
const GDT_DATA = 0x00cf93000000ffffn;

const CR0_PE = 1n;
const CR0_ET = 0x10n;
const CR0_PG = 0x80000000n;
const CR4_PAE = 0x20n;
const EFER_LME = 0x100n;
const EFER_LMA = 0x400n;

function seg(selector: number, type: number, big: { db: number; l: number; g: number; limit: number }): KvmSegment {
  return {
    base: 0n,
    limit: big.limit,
    selector,
    type,
    present: 1,
    dpl: 0,
    db: big.db,
    s: 1,
    l: big.l,
    g: big.g,
    avl: 0,
    unusable: 0,
  };
}

/** Writes the boot GDT (and, for long64, the identity map) into guest memory. */
export function writeBootData(mode: BootMode, memory: GuestMemory): void {
  if (mode === BootMode.real16) return;
  memory.writeU64(BOOT_GDT, 0n);
  memory.writeU64(BOOT_GDT + 8, 0n);
  memory.writeU64(BOOT_GDT + BOOT_CS, mode === BootMode.long64 ? GDT_CODE64 : GDT_CODE32);
  memory.writeU64(BOOT_GDT + BOOT_DS, GDT_DATA);
  if (mode !== BootMode.long64) return;
  memory.fill(BOOT_PML4, 0x3000, 0);
  memory.writeU64(BOOT_PML4, BigInt(BOOT_PDPT) | TABLE_FLAGS);
  memory.writeU64(BOOT_PDPT, BigInt(BOOT_PD) | TABLE_FLAGS);
  for (let i = 0; i < 512; i++) memory.writeU64(BOOT_PD + i * 8, (BigInt(i) << 21n) | PDE_FLAGS);
}

/** Applies the boot CPU state for `image.mode` on top of the vCPU's reset state. */
export function bootSregs(mode: BootMode, reset: KvmSregs): KvmSregs {
  const s: KvmSregs = { ...reset };
  if (mode === BootMode.real16) {
    const code = seg(0, 0xb, { db: 0, l: 0, g: 0, limit: 0xffff });
    const data = seg(0, 0x3, { db: 0, l: 0, g: 0, limit: 0xffff });
    return { ...s, cs: code, ds: data, es: data, fs: data, gs: data, ss: data, cr0: (reset.cr0 & ~(CR0_PE | CR0_PG)) | CR0_ET };
  }
  const long = mode === BootMode.long64;
  const code = seg(BOOT_CS, 0xb, { db: long ? 0 : 1, l: long ? 1 : 0, g: 1, limit: 0xffffffff });
  const data = seg(BOOT_DS, 0x3, { db: 1, l: 0, g: 1, limit: 0xffffffff });
  return {
    ...s,
    cs: code,
    ds: data,
    es: data,
    fs: data,
    gs: data,
    ss: data,
    gdt: { base: BigInt(BOOT_GDT), limit: 0x1f },
    cr0: long ? CR0_PE | CR0_ET | CR0_PG : CR0_PE | CR0_ET,
    cr3: long ? BigInt(BOOT_PML4) : 0n,
    cr4: long ? CR4_PAE : 0n,
    efer: long ? EFER_LME | EFER_LMA : 0n,
  };
}

/** General registers at entry: RIP = e_entry (IP for real16, CS = 0), EFLAGS = 0x2, the rest 0. */
export function bootRegs(image: GuestImage): KvmRegs {
  const z = 0n;
  return {
    rax: z, rbx: z, rcx: z, rdx: z, rsi: z, rdi: z, rsp: z, rbp: z,
    r8: z, r9: z, r10: z, r11: z, r12: z, r13: z, r14: z, r15: z,
    rip: BigInt(image.entry),
    rflags: 2n,
  };
}
