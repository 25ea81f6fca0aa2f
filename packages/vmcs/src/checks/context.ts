import type { GuestMemory } from "@tsvmm/abi";
import type { VmxCaps } from "../caps.js";
import { fieldSlot, type VmcsState } from "../state.js";
import { checkInfo } from "./catalog.js";
import type { Prepared } from "./prepared.js";

/** One failed check: its catalog id, SDM subsection and a message naming the field and value. */
export interface Violation {
  id: string;
  sdm: string;
  message: string;
}

/**
 * The environment of the VMLAUNCH/VMRESUME that is not in the VMCS. Defaults describe a 64-bit
 * VMM outside SMM with no memory to read.
 */
export interface VmEntryEnv {
  /** Whether the processor executing VM entry is in IA-32e mode (IA32_EFER.LMA); default true. */
  cpuInIa32e?: boolean;
  /** Whether VM entry happens in SMM (dual-monitor treatment); default false. */
  inSmm?: boolean;
  /** The current-VMCS pointer (for GUEST.LINK.NOT_CURRENT_VMCS); unchecked when absent. */
  currentVmcsPointer?: bigint;
  /**
   * Physical memory as the CPU would see it, for the checks that read memory (virtual-APIC page
   * VTPR, linked VMCS header, PDPTEs at guest CR3 when EPT is off). Without it those checks are
   * skipped; an address outside the memory is also skipped (the CPU's behaviour there is
   * undefined in the SDM).
   */
  memory?: GuestMemory;
}

export const hex = (v: bigint | number): string => `0x${v.toString(16)}`;

/** A slot's full value in hex, for messages (the checks themselves read the 32-bit words). */
export const hexSlot = (ctx: { st: VmcsState }, slot: number): string => hex(ctx.st.getSlot(slot));

/** Slots resolved once at load so a check run does array reads only. */
const S = (name: string): number => fieldSlot(name);
export const SLOT = {
  VPID: S("VIRTUAL_PROCESSOR_ID"),
  PI_NV: S("POSTED_INTR_NV"),
  PML_INDEX: S("GUEST_PML_INDEX"),
  UINV: S("GUEST_UINV"),
  IO_A: S("IO_BITMAP_A"),
  IO_B: S("IO_BITMAP_B"),
  MSR_BITMAP: S("MSR_BITMAP"),
  EXIT_STORE_ADDR: S("VM_EXIT_MSR_STORE_ADDR"),
  EXIT_LOAD_ADDR: S("VM_EXIT_MSR_LOAD_ADDR"),
  ENTRY_LOAD_ADDR: S("VM_ENTRY_MSR_LOAD_ADDR"),
  EXECUTIVE_VMCS: S("EXECUTIVE_VMCS_POINTER"),
  PML_ADDR: S("PML_ADDRESS"),
  VAPIC: S("VIRTUAL_APIC_PAGE_ADDR"),
  APIC_ACCESS: S("APIC_ACCESS_ADDR"),
  PI_DESC: S("POSTED_INTR_DESC_ADDR"),
  VMFUNC: S("VM_FUNCTION_CONTROL"),
  EPTP: S("EPT_POINTER"),
  EPTP_LIST: S("EPTP_LIST_ADDRESS"),
  VMREAD_BITMAP: S("VMREAD_BITMAP"),
  VMWRITE_BITMAP: S("VMWRITE_BITMAP"),
  VE_INFO: S("VE_INFORMATION_ADDRESS"),
  SPPTP: S("SPP_TABLE_POINTER"),
  TSC_MULT: S("TSC_MULTIPLIER"),
  PROC3: S("TERTIARY_VM_EXEC_CONTROL"),
  HLATP: S("HLAT_POINTER"),
  PID_TABLE: S("PID_POINTER_TABLE"),
  EXIT2: S("SECONDARY_VM_EXIT_CONTROLS"),
  LINK: S("VMCS_LINK_POINTER"),
  G_DEBUGCTL: S("GUEST_IA32_DEBUGCTL"),
  G_PAT: S("GUEST_IA32_PAT"),
  G_EFER: S("GUEST_IA32_EFER"),
  G_PERF: S("GUEST_IA32_PERF_GLOBAL_CTRL"),
  G_PDPTE0: S("GUEST_PDPTR0"),
  G_BNDCFGS: S("GUEST_BNDCFGS"),
  G_RTIT: S("GUEST_IA32_RTIT_CTL"),
  G_LBR: S("GUEST_IA32_LBR_CTL"),
  G_PKRS: S("GUEST_IA32_PKRS"),
  G_FRED_CONFIG: S("GUEST_IA32_FRED_CONFIG"),
  H_PAT: S("HOST_IA32_PAT"),
  H_EFER: S("HOST_IA32_EFER"),
  H_PERF: S("HOST_IA32_PERF_GLOBAL_CTRL"),
  H_PKRS: S("HOST_IA32_PKRS"),
  H_FRED_CONFIG: S("HOST_IA32_FRED_CONFIG"),
  PIN: S("PIN_BASED_VM_EXEC_CONTROL"),
  PROC: S("CPU_BASED_VM_EXEC_CONTROL"),
  CR3_COUNT: S("CR3_TARGET_COUNT"),
  EXIT: S("VM_EXIT_CONTROLS"),
  EXIT_STORE_COUNT: S("VM_EXIT_MSR_STORE_COUNT"),
  EXIT_LOAD_COUNT: S("VM_EXIT_MSR_LOAD_COUNT"),
  ENTRY: S("VM_ENTRY_CONTROLS"),
  ENTRY_LOAD_COUNT: S("VM_ENTRY_MSR_LOAD_COUNT"),
  INTR_INFO: S("VM_ENTRY_INTR_INFO_FIELD"),
  INTR_EC: S("VM_ENTRY_EXCEPTION_ERROR_CODE"),
  INSTR_LEN: S("VM_ENTRY_INSTRUCTION_LEN"),
  TPR_THRESHOLD: S("TPR_THRESHOLD"),
  PROC2: S("SECONDARY_VM_EXEC_CONTROL"),
  G_INTERRUPTIBILITY: S("GUEST_INTERRUPTIBILITY_INFO"),
  G_ACTIVITY: S("GUEST_ACTIVITY_STATE"),
  G_GDTR_LIMIT: S("GUEST_GDTR_LIMIT"),
  G_IDTR_LIMIT: S("GUEST_IDTR_LIMIT"),
  G_CR0: S("GUEST_CR0"),
  G_CR3: S("GUEST_CR3"),
  G_CR4: S("GUEST_CR4"),
  G_GDTR_BASE: S("GUEST_GDTR_BASE"),
  G_IDTR_BASE: S("GUEST_IDTR_BASE"),
  G_DR7: S("GUEST_DR7"),
  G_RIP: S("GUEST_RIP"),
  G_RFLAGS: S("GUEST_RFLAGS"),
  G_PDE: S("GUEST_PENDING_DBG_EXCEPTIONS"),
  G_SYSENTER_ESP: S("GUEST_SYSENTER_ESP"),
  G_SYSENTER_EIP: S("GUEST_SYSENTER_EIP"),
  G_S_CET: S("GUEST_S_CET"),
  G_SSP: S("GUEST_SSP"),
  G_ISST: S("GUEST_INTR_SSP_TABLE"),
  H_CR0: S("HOST_CR0"),
  H_CR3: S("HOST_CR3"),
  H_CR4: S("HOST_CR4"),
  H_FS_BASE: S("HOST_FS_BASE"),
  H_GS_BASE: S("HOST_GS_BASE"),
  H_TR_BASE: S("HOST_TR_BASE"),
  H_GDTR_BASE: S("HOST_GDTR_BASE"),
  H_IDTR_BASE: S("HOST_IDTR_BASE"),
  H_SYSENTER_ESP: S("HOST_IA32_SYSENTER_ESP"),
  H_SYSENTER_EIP: S("HOST_IA32_SYSENTER_EIP"),
  H_RIP: S("HOST_RIP"),
  H_S_CET: S("HOST_S_CET"),
  H_SSP: S("HOST_SSP"),
  H_ISST: S("HOST_INTR_SSP_TABLE"),
} as const;

export const GUEST_SEGMENTS = ["ES", "CS", "SS", "DS", "FS", "GS", "LDTR", "TR"] as const;
export type GuestSegmentName = (typeof GUEST_SEGMENTS)[number];

export interface SegSlots {
  name: GuestSegmentName;
  sel: number;
  base: number;
  limit: number;
  ar: number;
}
export const SEG_SLOTS: readonly SegSlots[] = GUEST_SEGMENTS.map((n) => ({
  name: n,
  sel: S(`GUEST_${n}_SELECTOR`),
  base: S(`GUEST_${n}_BASE`),
  limit: S(`GUEST_${n}_LIMIT`),
  ar: S(`GUEST_${n}_AR_BYTES`),
}));

export const HOST_SELECTORS = ["ES", "CS", "SS", "DS", "FS", "GS", "TR"] as const;
export const HOST_SEL_SLOTS: readonly number[] = HOST_SELECTORS.map((n) => S(`HOST_${n}_SELECTOR`));

/** A guest segment register as read from the VMCS (the base also as 32-bit words). */
export interface Seg {
  name: GuestSegmentName;
  sel: number;
  /** Slot of the base (for messages); the checks use its words. */
  baseSlot: number;
  baseLo: number;
  baseHi: number;
  limit: number;
  ar: number;
  usable: boolean;
  type: number;
  s: number;
  dpl: number;
  p: number;
  l: number;
  db: number;
  g: number;
}

/** Everything a check run needs, read once. */
export interface Ctx {
  st: VmcsState;
  /** The state's values as 32-bit words (see VmcsState.slotWords): low at 2·slot, high at 2·slot + 1. */
  w: Uint32Array;
  caps: VmxCaps;
  /** What the checks derive from `caps` alone (see prepared.ts). */
  k: Prepared;
  env: VmEntryEnv;
  maxPhys: number;
  /** Linear-address width used for canonical checks of non-RIP fields (57 if LA57 is supported). */
  laWidth: number;
  pin: number;
  proc: number;
  /** Secondary controls as the CPU sees them: 0 when "activate secondary controls" is 0. */
  proc2: number;
  /** Tertiary controls (0 when not activated) as 32-bit words. */
  proc3Lo: number;
  proc3Hi: number;
  exit: number;
  /** Secondary exit controls (0 when not activated) as 32-bit words. */
  exit2Lo: number;
  exit2Hi: number;
  entry: number;
  out: Violation[];
}

export function report(ctx: Ctx, id: string, message: string): void {
  ctx.out.push({ id, sdm: checkInfo(id)?.sdm ?? "?", message });
}

/** Bits 63:N identical, N = width − 1; abi's, with the same precomputed paths for widths 48 and 57. */
export { isCanonical } from "@tsvmm/abi";

/** Low and high 32-bit words of a slot. */
export const lo = (ctx: Ctx, slot: number): number => ctx.w[2 * slot]!;
export const hi = (ctx: Ctx, slot: number): number => ctx.w[2 * slot + 1]!;

/**
 * isCanonical on the high word of a 64-bit value, for widths 33..64: bits 63:width−1 are bits
 * 31:width−33 of the high word, identical iff the arithmetic shift leaves 0 or −1.
 */
export function canonHi(hiWord: number, width: number): boolean {
  const t = hiWord >> (width - 33);
  return t === 0 || t === -1;
}

/** A slot's value is canonical for `width` (33..64). */
export function canonSlot(ctx: Ctx, slot: number, width: number): boolean {
  return canonHi(ctx.w[2 * slot + 1]!, width);
}

/** Address (given by its high word) fits MAXPHYADDR. */
export function inPhysHi(ctx: Ctx, hiWord: number): boolean {
  return hiWord >>> ctx.k.physShift === 0;
}

/** A slot's value is 4-KByte aligned and within MAXPHYADDR. */
export function pageOkSlot(ctx: Ctx, slot: number): boolean {
  return (ctx.w[2 * slot]! & 0xfff) === 0 && ctx.w[2 * slot + 1]! >>> ctx.k.physShift === 0;
}

export function blankSeg(name: GuestSegmentName): Seg {
  return { name, sel: 0, baseSlot: 0, baseLo: 0, baseHi: 0, limit: 0, ar: 0, usable: false, type: 0, s: 0, dpl: 0, p: 0, l: 0, db: 0, g: 0 };
}

/** Read a guest segment register into `into` (a fresh record when absent). */
export function readSeg(ctx: Ctx, s: SegSlots, into: Seg = blankSeg(s.name)): Seg {
  const w = ctx.w;
  const ar = w[2 * s.ar]!;
  into.name = s.name;
  into.sel = w[2 * s.sel]!;
  into.baseSlot = s.base;
  into.baseLo = w[2 * s.base]!;
  into.baseHi = w[2 * s.base + 1]!;
  into.limit = w[2 * s.limit]!;
  into.ar = ar;
  into.usable = (ar & 0x10000) === 0;
  into.type = ar & 0xf;
  into.s = (ar >>> 4) & 1;
  into.dpl = (ar >>> 5) & 3;
  into.p = (ar >>> 7) & 1;
  into.l = (ar >>> 13) & 1;
  into.db = (ar >>> 14) & 1;
  into.g = (ar >>> 15) & 1;
  return into;
}

const MEMTYPE_OK = (1 << 0) | (1 << 1) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7);
const byteOk = (b: number): boolean => b < 8 && ((MEMTYPE_OK >>> b) & 1) === 1;
const wordOk = (x: number): boolean => byteOk(x & 0xff) && byteOk((x >>> 8) & 0xff) && byteOk((x >>> 16) & 0xff) && byteOk(x >>> 24);

/** PAT / memory-type validity of a slot: every byte 0 UC, 1 WC, 4 WT, 5 WP, 6 WB or 7 UC-. */
export function patValidSlot(ctx: Ctx, slot: number): boolean {
  return wordOk(ctx.w[2 * slot]!) && wordOk(ctx.w[2 * slot + 1]!);
}

/** Read a little-endian u32/u64 from env.memory; undefined when absent or out of range. */
export function readMem(ctx: Ctx, addr: bigint, size: 1 | 4 | 8): bigint | undefined {
  const m = ctx.env.memory;
  if (m === undefined) return undefined;
  try {
    if (size === 1) return BigInt(m.readU8(addr));
    if (size === 4) return BigInt(m.readU32(addr));
    return m.readU64(addr);
  } catch {
    return undefined;
  }
}
