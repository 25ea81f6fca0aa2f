import { EFER } from "../bits/registers.js";
import type { CpuFacts } from "../caps.js";

/**
 * Reserved bits of the MSRs VM entry loads, as the CPU described by CPUID would have them. A fixed
 * mask would accept a bit the real CPU rejects (IA32_DEBUGCTL bit 2 without bus-lock detection) or
 * reject one it accepts; these functions read the CPUID facts in the capability model instead.
 */

const U64 = 0xffff_ffff_ffff_ffffn;
const bit = (n: number): bigint => 1n << BigInt(n);
const on = (v: number | undefined, n: number): boolean => (((v ?? 0) >>> n) & 1) === 1;

/** IA32_DEBUGCTL bits (SDM Vol. 3B §17.4.1, Vol. 4 Table 2-2). */
export const DEBUGCTL_BITS = {
  /** Always defined on VMX-capable CPUs: LBR, BTF, TR, BTS, BTINT, BTS_OFF_OS/USR, FREEZE_*, UNCORE_PMI. */
  BASE: 0x3n | (0xffn << 6n) | bit(14),
  /** Bit 2, CPUID.(EAX=7,ECX=0):ECX[24]. */
  BUS_LOCK_DETECT: bit(2),
  /** Bit 15, CPUID.(EAX=7,ECX=0):EBX[11] (RTM). */
  RTM_DEBUG: bit(15),
} as const;

export function debugctlReserved(cpu: Readonly<Partial<CpuFacts>>): bigint {
  let defined = DEBUGCTL_BITS.BASE;
  if (cpu.busLockDetect === true) defined |= DEBUGCTL_BITS.BUS_LOCK_DETECT;
  if (cpu.rtm === true) defined |= DEBUGCTL_BITS.RTM_DEBUG;
  return U64 & ~defined;
}

/** IA32_EFER bits an Intel CPU defines: SCE, LME, LMA always (Intel 64), NXE with CPUID.80000001H:EDX[20]. */
export function eferDefined(cpu: Readonly<Partial<CpuFacts>>): bigint {
  return EFER.SCE | EFER.LME | EFER.LMA | (cpu.nx === false ? 0n : EFER.NXE);
}

/** IA32_S_CET / IA32_U_CET layout (SDM Vol. 1 §18.3.1, Vol. 4 MSR 6A0H/6A2H). */
export const S_CET_BITS = {
  SH_STK_EN: bit(0),
  WR_SHSTK_EN: bit(1),
  ENDBR_EN: bit(2),
  LEG_IW_EN: bit(3),
  NO_TRACK_EN: bit(4),
  SUPPRESS_DIS: bit(5),
  /** Bits 9:6: reserved whatever CPUID says. */
  RESERVED: 0x3c0n,
  SUPPRESS: bit(10),
  TRACKER: bit(11),
  /** Bits 63:12: EB_LEG_BITMAP_BASE. */
  LEG_BITMAP_BASE: U64 & ~0xfffn,
} as const;

/** Bits of IA32_S_CET that CET_SS enumerates. */
const S_CET_SS = S_CET_BITS.SH_STK_EN | S_CET_BITS.WR_SHSTK_EN;
/** Bits of IA32_S_CET that CET_IBT enumerates. */
const S_CET_IBT = 0x3cn | S_CET_BITS.SUPPRESS | S_CET_BITS.TRACKER | S_CET_BITS.LEG_BITMAP_BASE;

export function sCetReserved(cpu: Readonly<Partial<CpuFacts>>): bigint {
  let r = S_CET_BITS.RESERVED;
  if (cpu.cetSs !== true) r |= S_CET_SS;
  if (cpu.cetIbt !== true) r |= S_CET_IBT;
  return r;
}

/**
 * IA32_RTIT_CTL bits defined for the PT capabilities in CPUID leaf 14H (SDM Vol. 3C §33.2.8.2,
 * Table 33-6; the same enumeration KVM uses for its guests' RTIT_CTL mask).
 */
export function rtitCtlReserved(cpu: Readonly<Partial<CpuFacts>>): bigint {
  const ebx = cpu.ptEbx;
  const ecx = cpu.ptEcx;
  // TraceEn, OS, User, TSCEn, DisRETC, BranchEn need no enumeration beyond PT itself.
  let defined = bit(0) | bit(2) | bit(3) | bit(10) | bit(11) | bit(13);
  if (on(ebx, 0)) defined |= bit(7); // CR3Filter
  if (on(ebx, 1)) defined |= bit(1) | (0xfn << 19n) | (0xfn << 24n); // CYCEn, CYCThresh, PSBFreq
  if (on(ebx, 3)) defined |= bit(9) | (0xfn << 14n); // MTCEn, MTCFreq
  if (on(ebx, 4)) defined |= bit(5) | bit(12); // FUPonPTW, PTWEn
  if (on(ebx, 5)) defined |= bit(4); // PwrEvtEn
  if (on(ebx, 7)) defined |= bit(31); // EventEn
  if (on(ebx, 8)) defined |= bit(55); // DisTNT
  if (on(ecx, 0)) defined |= bit(8); // ToPA
  if (on(ecx, 3)) defined |= bit(6); // FabricEn
  if (on(ebx, 2)) {
    const n = Math.min(4, Math.max(0, Math.trunc(cpu.ptAddrRanges ?? 0)));
    for (let i = 0; i < n; i++) defined |= 0xfn << BigInt(32 + 4 * i); // ADDRn_CFG
  }
  return U64 & ~defined;
}

/** IA32_LBR_CTL bits defined for the arch-LBR capabilities in CPUID.(EAX=1CH,ECX=0):EBX (SDM Vol. 3B §18.1.2). */
export function lbrCtlReserved(cpu: Readonly<Partial<CpuFacts>>): bigint {
  const ebx = cpu.lbrEbx;
  let defined = bit(0); // LBREn
  if (on(ebx, 0)) defined |= bit(1) | bit(2); // OS, USR (CPL filtering)
  if (on(ebx, 2)) defined |= bit(3); // CALL_STACK
  if (on(ebx, 1)) defined |= 0x7fn << 16n; // branch-type filters 22:16
  return U64 & ~defined;
}
