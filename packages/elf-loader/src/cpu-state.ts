import { CR0, CR4, EFER, encodeSegmentDescriptor, type GuestMemory, type KvmRegs, type KvmSegment, type KvmSregs, kvmSegmentFromSegment, RFLAGS, SEGMENT_TYPE, type Segment } from "@tsvmm/abi";

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

// The register bits the boot states set, under the names this package has always exported.
export const CR0_PE = CR0.PE;
export const CR0_ET = CR0.ET;
export const CR0_PG = CR0.PG;
export const CR4_PAE = CR4.PAE;
export const EFER_LME = EFER.LME;
export const EFER_LMA = EFER.LMA;
/** RFLAGS bit 1 is reserved and reads as 1; IF, TF and VM are clear. */
export const RFLAGS_BOOT = RFLAGS.FIXED1;
/** xAPIC at its architectural base, enabled, this vCPU the bootstrap processor. */
export const APIC_BASE_BSP = 0xfee00000n | (1n << 11n) | (1n << 8n);

function zeroRegs(): KvmRegs {
  const z = 0n;
  return { rax: z, rbx: z, rcx: z, rdx: z, rsi: z, rdi: z, rsp: z, rbp: z, r8: z, r9: z, r10: z, r11: z, r12: z, r13: z, r14: z, r15: z, rip: z, rflags: RFLAGS_BOOT };
}

function flatSegment(selector: number, type: number, long: boolean): Segment {
  // With g = 1 the limit KVM takes is the byte-granular one: 4 GiB - 1.
  return { base: 0n, limit: 0xffffffff, selector, type, p: 1, dpl: 0, db: long ? 0 : 1, s: 1, l: long ? 1 : 0, g: 1, avl: 0, unusable: 0 };
}

// Busy 32/64-bit TSS and an LDT descriptor, as the CPU holds them after reset: VM entry insists on a usable TR.
const BOOT_TR: Segment = { base: 0n, limit: 0xffff, selector: BOOT_TSS, type: SEGMENT_TYPE.TSS32_BUSY, p: 1, dpl: 0, db: 0, s: 0, l: 0, g: 0, avl: 0, unusable: 0 };
const BOOT_LDT: Segment = { ...BOOT_TR, selector: 0, type: SEGMENT_TYPE.LDT };

// One statement of the boot segments: the sregs and the GDT below are both made from these.
const bootCode = (long: boolean): Segment => flatSegment(BOOT_CS, SEGMENT_TYPE.CODE_EXEC_READ_ACCESSED, long);
const bootData = (): Segment => flatSegment(BOOT_DS, SEGMENT_TYPE.DATA_RW_ACCESSED, false);

function systemSegments(): { tr: KvmSegment; ldt: KvmSegment } {
  return { tr: kvmSegmentFromSegment(BOOT_TR), ldt: kvmSegmentFromSegment(BOOT_LDT) };
}

function sregs(long: boolean, gdtBase: number, cr3: bigint): KvmSregs {
  const code = kvmSegmentFromSegment(bootCode(long));
  const data = kvmSegmentFromSegment(bootData());
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
  for (const seg of [bootCode(long), bootData(), BOOT_TR]) g.writeBigUInt64LE(encodeSegmentDescriptor(seg), seg.selector);
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
