import type { GuestMemory } from "@tsvmm/abi";
import type { VmxCaps } from "../../src/caps.js";
import { checkInfo } from "../../src/checks/catalog.js";
import { fieldSlot, type VmcsState } from "../../src/state.js";

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

/** A guest segment register as read from the VMCS. */
export interface Seg {
  name: GuestSegmentName;
  sel: number;
  base: bigint;
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
  caps: VmxCaps;
  env: VmEntryEnv;
  maxPhys: bigint;
  /** Linear-address width used for canonical checks of non-RIP fields (57 if LA57 is supported). */
  laWidth: number;
  pin: number;
  proc: number;
  /** Secondary controls as the CPU sees them: 0 when "activate secondary controls" is 0. */
  proc2: number;
  proc3: bigint;
  exit: number;
  exit2: bigint;
  entry: number;
  /** Reserved-bit masks of the MSRs VM entry loads, from the CPUID facts (see msr-masks.ts). */
  rsvd: { debugctl: bigint; sCet: bigint; rtitCtl: bigint; lbrCtl: bigint; eferDefined: bigint };
  out: Violation[];
}

export function report(ctx: Ctx, id: string, message: string): void {
  ctx.out.push({ id, sdm: checkInfo(id)?.sdm ?? "?", message });
}

/** Bits 63:N identical, N = width − 1; abi's, with the same precomputed paths for widths 48 and 57. */
export { isCanonical } from "@tsvmm/abi";

/** Address fits MAXPHYADDR. */
export function inPhys(ctx: Ctx, addr: bigint): boolean {
  return addr >> ctx.maxPhys === 0n;
}

/** 4-KByte aligned and within MAXPHYADDR. */
export function pageOk(ctx: Ctx, addr: bigint): boolean {
  return (addr & 0xfffn) === 0n && addr >> ctx.maxPhys === 0n;
}

export function readSeg(st: VmcsState, s: SegSlots): Seg {
  const ar = Number(st.getSlot(s.ar));
  return {
    name: s.name,
    sel: Number(st.getSlot(s.sel)),
    base: st.getSlot(s.base),
    limit: Number(st.getSlot(s.limit)),
    ar,
    usable: (ar & 0x10000) === 0,
    type: ar & 0xf,
    s: (ar >>> 4) & 1,
    dpl: (ar >>> 5) & 3,
    p: (ar >>> 7) & 1,
    l: (ar >>> 13) & 1,
    db: (ar >>> 14) & 1,
    g: (ar >>> 15) & 1,
  };
}

/** PAT / memory-type validity: 0 UC, 1 WC, 4 WT, 5 WP, 6 WB, 7 UC-. */
export function patValid(pat: bigint): boolean {
  for (let i = 0n; i < 64n; i += 8n) {
    const t = Number((pat >> i) & 0xffn);
    if (!(t === 0 || t === 1 || t === 4 || t === 5 || t === 6 || t === 7)) return false;
  }
  return true;
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
