import type { GuestMemory, KvmRegs, KvmSegment, KvmSregs } from "@tsvmm/abi";

/** Registers and segment/control state a vCPU must hold at a kernel's first instruction. */
export interface BootCpuState {
  readonly regs: KvmRegs;
  readonly sregs: KvmSregs;
}

// The boot contract: what a VMM puts in low memory and in the vCPU before a kernel's first
// instruction. This module is its one statement; loaders, the vmm and the test kernels
// (test-kernels/README.md, "Boot contract") all follow it.

/** The boot GDT (BOOT_GDT_SIZE bytes), for protected- and long-mode entries. */
export const BOOT_GDT_ADDR = 0x500;
/** The identity-map page tables for long-mode entries start here (CR3), page after page. */
export const BOOT_PAGE_TABLES_ADDR = 0x1000;
/** Lowest address a kernel image may occupy: below it is the VMM's boot data and the real-mode IVT/BDA. */
export const BOOT_IMAGE_MIN = 0x8000;
/** Real-mode entries start with this stack pointer (below the classic 0x7c00 load address). */
export const BOOT_REAL_MODE_SP = 0x7000;

// Selectors of the boot GDT written below; Linux's boot protocol calls them __BOOT_CS/__BOOT_DS.
export const BOOT_CS = 0x10;
export const BOOT_DS = 0x18;
export const BOOT_TSS = 0x20;
export const BOOT_GDT_SIZE = 5 * 8;

export const CR0_PE = 1n << 0n;
export const CR0_ET = 1n << 4n;
export const CR0_PG = 1n << 31n;
export const CR4_PAE = 1n << 5n;
export const EFER_LME = 1n << 8n;
export const EFER_LMA = 1n << 10n;
/** RFLAGS bit 1 is reserved and reads as 1; IF, TF and VM are clear. */
export const RFLAGS_BOOT = 0x2n;
/** xAPIC at its architectural base, enabled, this vCPU the bootstrap processor. */
export const APIC_BASE_BSP = 0xfee00000n | (1n << 11n) | (1n << 8n);

function zeroRegs(): KvmRegs {
  const z = 0n;
  return { rax: z, rbx: z, rcx: z, rdx: z, rsi: z, rdi: z, rsp: z, rbp: z, r8: z, r9: z, r10: z, r11: z, r12: z, r13: z, r14: z, r15: z, rip: z, rflags: RFLAGS_BOOT };
}

function flatSegment(selector: number, type: number, long: boolean): KvmSegment {
  // With g = 1 the limit KVM takes is the byte-granular one: 4 GiB - 1.
  return { base: 0n, limit: 0xffffffff, selector, type, present: 1, dpl: 0, db: long ? 0 : 1, s: 1, l: long ? 1 : 0, g: 1, avl: 0, unusable: 0 };
}

function systemSegments(): { tr: KvmSegment; ldt: KvmSegment } {
  // Busy 32/64-bit TSS and an LDT descriptor, as the CPU holds them after reset: VM entry insists on a usable TR.
  return {
    tr: { base: 0n, limit: 0xffff, selector: BOOT_TSS, type: 11, present: 1, dpl: 0, db: 0, s: 0, l: 0, g: 0, avl: 0, unusable: 0 },
    ldt: { base: 0n, limit: 0xffff, selector: 0, type: 2, present: 1, dpl: 0, db: 0, s: 0, l: 0, g: 0, avl: 0, unusable: 0 },
  };
}

function sregs(long: boolean, gdtBase: number, cr3: bigint): KvmSregs {
  const code = flatSegment(BOOT_CS, 0xb, long); // execute/read, accessed
  const data = flatSegment(BOOT_DS, 0x3, false); // read/write, accessed
  return {
    cs: code,
    ds: data,
    es: { ...data },
    fs: { ...data },
    gs: { ...data },
    ss: { ...data },
    ...systemSegments(),
    gdt: { base: BigInt(gdtBase), limit: BOOT_GDT_SIZE - 1 },
    idt: { base: 0n, limit: 0 },
    cr0: long ? CR0_PE | CR0_ET | CR0_PG : CR0_PE | CR0_ET,
    cr2: 0n,
    cr3,
    cr4: long ? CR4_PAE : 0n,
    cr8: 0n,
    efer: long ? EFER_LME | EFER_LMA : 0n,
    apicBase: APIC_BASE_BSP,
    interruptBitmap: [0n, 0n, 0n, 0n],
  };
}

/** 32-bit flat protected mode, paging off: the state PVH and Multiboot require. */
export function protectedMode32State(rip: number, gdtBase: number, set: Partial<KvmRegs> = {}): BootCpuState {
  return { regs: { ...zeroRegs(), ...set, rip: BigInt(rip) }, sregs: sregs(false, gdtBase, 0n) };
}

/** 64-bit long mode on the given page tables: the state of Linux's 64-bit boot protocol. */
export function longMode64State(rip: bigint, gdtBase: number, cr3: bigint, set: Partial<KvmRegs> = {}): BootCpuState {
  return { regs: { ...zeroRegs(), ...set, rip }, sregs: sregs(true, gdtBase, cr3) };
}

/** The GDT the sregs above describe, so a kernel that reloads its segment registers finds the same segments. */
export function bootGdt(long: boolean): Buffer {
  const g = Buffer.alloc(BOOT_GDT_SIZE);
  g.writeBigUInt64LE(long ? 0x00af9b000000ffffn : 0x00cf9b000000ffffn, BOOT_CS);
  g.writeBigUInt64LE(0x00cf93000000ffffn, BOOT_DS);
  g.writeBigUInt64LE(0x00008b000000ffffn, BOOT_TSS);
  return g;
}

export function writeBootGdt(memory: GuestMemory, base: number, long: boolean): void {
  memory.write(base, bootGdt(long));
}

/** Real mode at 0:ip with every segment based at 0 and a 64 KiB limit, interrupts off. */
export function realModeState(ip: number): BootCpuState {
  const seg = (type: number): KvmSegment => ({ base: 0n, limit: 0xffff, selector: 0, type, present: 1, dpl: 0, db: 0, s: 1, l: 0, g: 0, avl: 0, unusable: 0 });
  const dt = { base: 0n, limit: 0xffff };
  return {
    regs: { ...zeroRegs(), rsp: BigInt(BOOT_REAL_MODE_SP), rip: BigInt(ip) },
    sregs: {
      cs: seg(11), ds: seg(3), es: seg(3), fs: seg(3), gs: seg(3), ss: seg(3),
      tr: { ...seg(11), s: 0 }, ldt: { ...seg(2), s: 0 },
      gdt: dt, idt: dt, cr0: CR0_ET, cr2: 0n, cr3: 0n, cr4: 0n, cr8: 0n, efer: 0n, apicBase: APIC_BASE_BSP,
      interruptBitmap: [0n, 0n, 0n, 0n],
    },
  };
}
