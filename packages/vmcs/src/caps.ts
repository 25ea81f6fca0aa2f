import { VmcsError } from "./errors.js";
import { show } from "./show.js";

/**
 * What the CPU allows: the VMX capability MSRs (SDM Vol. 3D Appendix A) plus the CPUID facts the
 * VM-entry checks depend on. MSR values are the raw 64-bit register contents.
 */
export interface VmxMsrs {
  IA32_VMX_BASIC: bigint;
  IA32_VMX_PINBASED_CTLS: bigint;
  IA32_VMX_PROCBASED_CTLS: bigint;
  IA32_VMX_EXIT_CTLS: bigint;
  IA32_VMX_ENTRY_CTLS: bigint;
  IA32_VMX_MISC: bigint;
  IA32_VMX_CR0_FIXED0: bigint;
  IA32_VMX_CR0_FIXED1: bigint;
  IA32_VMX_CR4_FIXED0: bigint;
  IA32_VMX_CR4_FIXED1: bigint;
  IA32_VMX_VMCS_ENUM: bigint;
  IA32_VMX_PROCBASED_CTLS2: bigint;
  IA32_VMX_EPT_VPID_CAP: bigint;
  IA32_VMX_TRUE_PINBASED_CTLS: bigint;
  IA32_VMX_TRUE_PROCBASED_CTLS: bigint;
  IA32_VMX_TRUE_EXIT_CTLS: bigint;
  IA32_VMX_TRUE_ENTRY_CTLS: bigint;
  IA32_VMX_VMFUNC: bigint;
  IA32_VMX_PROCBASED_CTLS3: bigint;
  IA32_VMX_EXIT_CTLS2: bigint;
}

export type VmxMsrName = keyof VmxMsrs;

/** MSR indices (SDM Vol. 4, Table 2-2). */
export const VMX_MSR_INDEX: Readonly<Record<VmxMsrName, number>> = {
  IA32_VMX_BASIC: 0x480,
  IA32_VMX_PINBASED_CTLS: 0x481,
  IA32_VMX_PROCBASED_CTLS: 0x482,
  IA32_VMX_EXIT_CTLS: 0x483,
  IA32_VMX_ENTRY_CTLS: 0x484,
  IA32_VMX_MISC: 0x485,
  IA32_VMX_CR0_FIXED0: 0x486,
  IA32_VMX_CR0_FIXED1: 0x487,
  IA32_VMX_CR4_FIXED0: 0x488,
  IA32_VMX_CR4_FIXED1: 0x489,
  IA32_VMX_VMCS_ENUM: 0x48a,
  IA32_VMX_PROCBASED_CTLS2: 0x48b,
  IA32_VMX_EPT_VPID_CAP: 0x48c,
  IA32_VMX_TRUE_PINBASED_CTLS: 0x48d,
  IA32_VMX_TRUE_PROCBASED_CTLS: 0x48e,
  IA32_VMX_TRUE_EXIT_CTLS: 0x48f,
  IA32_VMX_TRUE_ENTRY_CTLS: 0x490,
  IA32_VMX_VMFUNC: 0x491,
  IA32_VMX_PROCBASED_CTLS3: 0x492,
  IA32_VMX_EXIT_CTLS2: 0x493,
};

/** CPUID-reported facts the checks consult. */
export interface CpuFacts {
  /** CPUID.80000008H:EAX[7:0]. */
  maxPhysAddr: number;
  /** Intel 64 architecture (CPUID.80000001H:EDX.LM). */
  intel64: boolean;
  /** 5-level paging (CPUID.(EAX=7,ECX=0):ECX.LA57). */
  la57: boolean;
  pcid: boolean;
  /** CET shadow stacks / IBT (CPUID.7.0:ECX.CET_SS or EDX.CET_IBT). */
  cet: boolean;
  /** Protection keys for supervisor pages. */
  pks: boolean;
  fred: boolean;
  /** RTM (TSX). */
  rtm: boolean;
  /** Linear-address masking. */
  lam: boolean;
  /** SGX enclave-interruption reporting in the interruptibility state (IA32_VMX_MISC... and SGX). */
  enclaveInterruption: boolean;
  /** Architectural performance-monitoring general-purpose counter count (CPUID.0AH:EAX[15:8]). */
  pmuGpCounters: number;
  /** Fixed-function performance counters (CPUID.0AH:EDX[4:0]). */
  pmuFixedCounters: number;
  /** Bus-lock detection (CPUID.(EAX=7,ECX=0):ECX[24]): IA32_DEBUGCTL bit 2 is reserved without it. */
  busLockDetect: boolean;
  /** CET shadow stacks (CPUID.(EAX=7,ECX=0):ECX[7] CET_SS): IA32_S_CET bits 1:0 are reserved without it. */
  cetSs: boolean;
  /** CET indirect-branch tracking (CPUID.(EAX=7,ECX=0):EDX[20] CET_IBT): IA32_S_CET bits 5:2, 11:10, 63:12 are reserved without it. */
  cetIbt: boolean;
  /** Execute-disable (CPUID.80000001H:EDX[20]): IA32_EFER.NXE is reserved without it. */
  nx: boolean;
  /** Intel PT capabilities CPUID.(EAX=14H,ECX=0):EBX; each bit makes IA32_RTIT_CTL bits defined. */
  ptEbx: number;
  /** CPUID.(EAX=14H,ECX=0):ECX (bit 0 ToPA output, bit 3 trace transport / FabricEn). */
  ptEcx: number;
  /** Configurable address ranges for IP filtering, CPUID.(EAX=14H,ECX=1):EAX[2:0] (ADDRn_CFG fields). */
  ptAddrRanges: number;
  /** Architectural LBR capabilities CPUID.(EAX=1CH,ECX=0):EBX (CPL filtering, branch filtering, call-stack mode). */
  lbrEbx: number;
}

export interface VmxCaps {
  readonly name: string;
  readonly msrs: Readonly<VmxMsrs>;
  readonly cpu: Readonly<CpuFacts>;
}

const B = (x: bigint, bit: number): boolean => ((x >> BigInt(bit)) & 1n) === 1n;

/** IA32_VMX_BASIC bit 55: the TRUE_* control MSRs exist and govern the default1 controls. */
export function hasTrueCtls(c: VmxCaps): boolean {
  return B(c.msrs.IA32_VMX_BASIC, 55);
}

export type ControlWord = "pin" | "proc" | "exit" | "entry";

/** Allowed settings of a 32-bit control word: `must1` bits must be 1, bits outside `may1` must be 0. */
export interface AllowedBits {
  must1: number;
  may1: number;
}

/** Allowed settings of a control word, consulting TRUE_* when IA32_VMX_BASIC[55] = 1 (SDM A.3–A.5). */
export function allowedControls(c: VmxCaps, word: ControlWord): AllowedBits {
  const t = hasTrueCtls(c);
  const m = c.msrs;
  const msr =
    word === "pin"
      ? t
        ? m.IA32_VMX_TRUE_PINBASED_CTLS
        : m.IA32_VMX_PINBASED_CTLS
      : word === "proc"
        ? t
          ? m.IA32_VMX_TRUE_PROCBASED_CTLS
          : m.IA32_VMX_PROCBASED_CTLS
        : word === "exit"
          ? t
            ? m.IA32_VMX_TRUE_EXIT_CTLS
            : m.IA32_VMX_EXIT_CTLS
          : t
            ? m.IA32_VMX_TRUE_ENTRY_CTLS
            : m.IA32_VMX_ENTRY_CTLS;
  return { must1: Number(msr & 0xffff_ffffn), may1: Number(msr >> 32n) };
}

/** Secondary controls: IA32_VMX_PROCBASED_CTLS2 (allowed-0 half is 0 on all CPUs but honoured). */
export function allowedProc2(c: VmxCaps): AllowedBits {
  const m = c.msrs.IA32_VMX_PROCBASED_CTLS2;
  return { must1: Number(m & 0xffff_ffffn), may1: Number(m >> 32n) };
}

/** Whether a primary-control bit may be 1 (used for "activate secondary/tertiary controls"). */
export function mayBeOne(c: VmxCaps, word: ControlWord, bit: number): boolean {
  return (allowedControls(c, word).may1 & bit) !== 0;
}

/** Decoded IA32_VMX_BASIC / MISC / EPT_VPID_CAP facts the checks use. */
export const basic = {
  revisionId: (c: VmxCaps): number => Number(c.msrs.IA32_VMX_BASIC & 0x7fff_ffffn),
  regionSize: (c: VmxCaps): number => Number((c.msrs.IA32_VMX_BASIC >> 32n) & 0x1fffn),
  physAddr32: (c: VmxCaps): boolean => B(c.msrs.IA32_VMX_BASIC, 48),
  dualMonitor: (c: VmxCaps): boolean => B(c.msrs.IA32_VMX_BASIC, 49),
  memoryType: (c: VmxCaps): number => Number((c.msrs.IA32_VMX_BASIC >> 50n) & 0xfn),
  trueCtls: hasTrueCtls,
  /** Bit 56: VM entry may deliver hardware exceptions with or without an error code. */
  noErrorCodeRequired: (c: VmxCaps): boolean => B(c.msrs.IA32_VMX_BASIC, 56),
  /** Bit 58: VM entry may inject a nested exception (interruption-information bit 13, FRED). */
  nestedException: (c: VmxCaps): boolean => B(c.msrs.IA32_VMX_BASIC, 58),
};

export const misc = {
  preemptionTimerRate: (c: VmxCaps): number => Number(c.msrs.IA32_VMX_MISC & 0x1fn),
  storesLma: (c: VmxCaps): boolean => B(c.msrs.IA32_VMX_MISC, 5),
  /** Activity state n (1 HLT, 2 shutdown, 3 wait-for-SIPI) supported: bit 5+n. */
  activityStateSupported: (c: VmxCaps, state: number): boolean => state === 0 || (state >= 1 && state <= 3 && B(c.msrs.IA32_VMX_MISC, 5 + state)),
  cr3TargetCount: (c: VmxCaps): number => Number((c.msrs.IA32_VMX_MISC >> 16n) & 0x1ffn),
  maxMsrListEntries: (c: VmxCaps): number => 512 * (Number((c.msrs.IA32_VMX_MISC >> 25n) & 7n) + 1),
  vmwriteAnyField: (c: VmxCaps): boolean => B(c.msrs.IA32_VMX_MISC, 29),
  zeroLengthInjection: (c: VmxCaps): boolean => B(c.msrs.IA32_VMX_MISC, 30),
};

export const eptVpidCap = {
  executeOnly: (c: VmxCaps): boolean => B(c.msrs.IA32_VMX_EPT_VPID_CAP, 0),
  walk4: (c: VmxCaps): boolean => B(c.msrs.IA32_VMX_EPT_VPID_CAP, 6),
  walk5: (c: VmxCaps): boolean => B(c.msrs.IA32_VMX_EPT_VPID_CAP, 7),
  memTypeUc: (c: VmxCaps): boolean => B(c.msrs.IA32_VMX_EPT_VPID_CAP, 8),
  memTypeWb: (c: VmxCaps): boolean => B(c.msrs.IA32_VMX_EPT_VPID_CAP, 14),
  page2M: (c: VmxCaps): boolean => B(c.msrs.IA32_VMX_EPT_VPID_CAP, 16),
  page1G: (c: VmxCaps): boolean => B(c.msrs.IA32_VMX_EPT_VPID_CAP, 17),
  invept: (c: VmxCaps): boolean => B(c.msrs.IA32_VMX_EPT_VPID_CAP, 20),
  accessedDirty: (c: VmxCaps): boolean => B(c.msrs.IA32_VMX_EPT_VPID_CAP, 21),
  advancedExitInfo: (c: VmxCaps): boolean => B(c.msrs.IA32_VMX_EPT_VPID_CAP, 22),
  supervisorShadowStack: (c: VmxCaps): boolean => B(c.msrs.IA32_VMX_EPT_VPID_CAP, 23),
  invvpid: (c: VmxCaps): boolean => B(c.msrs.IA32_VMX_EPT_VPID_CAP, 32),
};

const ZERO_MSRS: VmxMsrs = {
  IA32_VMX_BASIC: 0n,
  IA32_VMX_PINBASED_CTLS: 0n,
  IA32_VMX_PROCBASED_CTLS: 0n,
  IA32_VMX_EXIT_CTLS: 0n,
  IA32_VMX_ENTRY_CTLS: 0n,
  IA32_VMX_MISC: 0n,
  IA32_VMX_CR0_FIXED0: 0n,
  IA32_VMX_CR0_FIXED1: 0n,
  IA32_VMX_CR4_FIXED0: 0n,
  IA32_VMX_CR4_FIXED1: 0n,
  IA32_VMX_VMCS_ENUM: 0n,
  IA32_VMX_PROCBASED_CTLS2: 0n,
  IA32_VMX_EPT_VPID_CAP: 0n,
  IA32_VMX_TRUE_PINBASED_CTLS: 0n,
  IA32_VMX_TRUE_PROCBASED_CTLS: 0n,
  IA32_VMX_TRUE_EXIT_CTLS: 0n,
  IA32_VMX_TRUE_ENTRY_CTLS: 0n,
  IA32_VMX_VMFUNC: 0n,
  IA32_VMX_PROCBASED_CTLS3: 0n,
  IA32_VMX_EXIT_CTLS2: 0n,
};

const BASE_CPU: CpuFacts = {
  maxPhysAddr: 36,
  intel64: true,
  la57: false,
  pcid: false,
  cet: false,
  pks: false,
  fred: false,
  rtm: false,
  lam: false,
  enclaveInterruption: false,
  pmuGpCounters: 4,
  pmuFixedCounters: 3,
  busLockDetect: false,
  cetSs: false,
  cetIbt: false,
  nx: true,
  ptEbx: 0,
  ptEcx: 0,
  ptAddrRanges: 0,
  lbrEbx: 0,
};

function profile(name: string, msrs: Partial<VmxMsrs>, cpu: Partial<CpuFacts>): VmxCaps {
  return Object.freeze({
    name,
    msrs: Object.freeze({ ...ZERO_MSRS, ...msrs }),
    cpu: Object.freeze({ ...BASE_CPU, ...cpu }),
  });
}

/**
 * Built-in profiles. The first three are real CPUs' MSR values as recorded in VirtualBox's CPU
 * database (src/VBox/VMM/VMMR3/cpus/*.h, captured from the hardware with its MSR prober); see
 * the README. `full-featured` is synthetic: every control and feature the checks know about is
 * allowed, so feature-gated rules (tertiary controls, CET, PKS, FRED, 5-level EPT) can be tested.
 */
export const PROFILES: Readonly<Record<string, VmxCaps>> = Object.freeze({
  // Intel Core i7-3960X (Sandy Bridge-E), VirtualBox Intel_Core_i7_3960X.h, MAXPHYADDR 46.
  "intel-core-i7-3960x": profile(
    "intel-core-i7-3960x",
    {
      IA32_VMX_BASIC: 0xda04_0000_0000_10n,
      IA32_VMX_PINBASED_CTLS: 0x7f_0000_0016n,
      IA32_VMX_PROCBASED_CTLS: 0xfff9_fffe_0401_e172n,
      IA32_VMX_EXIT_CTLS: 0x7f_ffff_0003_6dffn,
      IA32_VMX_ENTRY_CTLS: 0xffff_0000_11ffn,
      IA32_VMX_MISC: 0x1004_01e5n,
      IA32_VMX_CR0_FIXED0: 0x8000_0021n,
      IA32_VMX_CR0_FIXED1: 0xffff_ffffn,
      IA32_VMX_CR4_FIXED0: 0x2000n,
      IA32_VMX_CR4_FIXED1: 0x6_27ffn,
      IA32_VMX_VMCS_ENUM: 0x2an,
      IA32_VMX_PROCBASED_CTLS2: 0x4ff_0000_0000n,
      IA32_VMX_EPT_VPID_CAP: 0xf01_0613_4141n,
      IA32_VMX_TRUE_PINBASED_CTLS: 0x7f_0000_0016n,
      IA32_VMX_TRUE_PROCBASED_CTLS: 0xfff9_fffe_0400_6172n,
      IA32_VMX_TRUE_EXIT_CTLS: 0x7f_ffff_0003_6dfbn,
      IA32_VMX_TRUE_ENTRY_CTLS: 0xffff_0000_11fbn,
    },
    { maxPhysAddr: 46, pcid: true },
  ),
  // Intel Core i7-5600U (Broadwell), VirtualBox Intel_Core_i7_5600U.h, MAXPHYADDR 39.
  "intel-core-i7-5600u": profile(
    "intel-core-i7-5600u",
    {
      IA32_VMX_BASIC: 0xda04_0000_0000_12n,
      IA32_VMX_PINBASED_CTLS: 0x7f_0000_0016n,
      IA32_VMX_PROCBASED_CTLS: 0xfff9_fffe_0401_e172n,
      IA32_VMX_EXIT_CTLS: 0x7f_ffff_0003_6dffn,
      IA32_VMX_ENTRY_CTLS: 0xffff_0000_11ffn,
      IA32_VMX_MISC: 0x3004_81e5n,
      IA32_VMX_CR0_FIXED0: 0x8000_0021n,
      IA32_VMX_CR0_FIXED1: 0xffff_ffffn,
      IA32_VMX_CR4_FIXED0: 0x2000n,
      IA32_VMX_CR4_FIXED1: 0x37_67ffn,
      IA32_VMX_VMCS_ENUM: 0x2an,
      IA32_VMX_PROCBASED_CTLS2: 0x5_7cff_0000_0000n,
      IA32_VMX_EPT_VPID_CAP: 0xf01_0633_4141n,
      IA32_VMX_TRUE_PINBASED_CTLS: 0x7f_0000_0016n,
      IA32_VMX_TRUE_PROCBASED_CTLS: 0xfff9_fffe_0400_6172n,
      IA32_VMX_TRUE_EXIT_CTLS: 0x7f_ffff_0003_6dfbn,
      IA32_VMX_TRUE_ENTRY_CTLS: 0xffff_0000_11fbn,
      IA32_VMX_VMFUNC: 0x1n,
    },
    { maxPhysAddr: 39, pcid: true, rtm: true },
  ),
  // Intel Pentium N3530 (Silvermont), VirtualBox Intel_Pentium_N3530_2_16GHz.h, MAXPHYADDR 36.
  "intel-pentium-n3530": profile(
    "intel-pentium-n3530",
    {
      IA32_VMX_BASIC: 0xda04_0000_0000_02n,
      IA32_VMX_PINBASED_CTLS: 0x7f_0000_0016n,
      IA32_VMX_PROCBASED_CTLS: 0xfff9_fffe_0401_e172n,
      IA32_VMX_EXIT_CTLS: 0x7f_ffff_0003_6dffn,
      IA32_VMX_ENTRY_CTLS: 0xffff_0000_11ffn,
      IA32_VMX_MISC: 0x4_81e6n,
      IA32_VMX_CR0_FIXED0: 0x8000_0021n,
      IA32_VMX_CR0_FIXED1: 0xffff_ffffn,
      IA32_VMX_CR4_FIXED0: 0x2000n,
      IA32_VMX_CR4_FIXED1: 0x10_27ffn,
      IA32_VMX_VMCS_ENUM: 0x2en,
      IA32_VMX_PROCBASED_CTLS2: 0x28ef_0000_0000n,
      IA32_VMX_EPT_VPID_CAP: 0xf01_0611_4141n,
      IA32_VMX_TRUE_PINBASED_CTLS: 0x7f_0000_0016n,
      IA32_VMX_TRUE_PROCBASED_CTLS: 0xfff9_fffe_0400_6172n,
      IA32_VMX_TRUE_EXIT_CTLS: 0x7f_ffff_0003_6dfbn,
      IA32_VMX_TRUE_ENTRY_CTLS: 0xffff_0000_11fbn,
      IA32_VMX_VMFUNC: 0x1n,
    },
    { maxPhysAddr: 36 },
  ),
  // Intel Xeon X5482 (Penryn), VirtualBox Intel_Xeon_X5482_3_20GHz.h, MAXPHYADDR 38. Predates the
  // TRUE_* MSRs (IA32_VMX_BASIC[55] = 0) and EPT: the non-TRUE control MSRs govern, default1 bits
  // such as CR3-load/store exiting and save/load debug controls must be 1.
  "intel-xeon-x5482": profile(
    "intel-xeon-x5482",
    {
      IA32_VMX_BASIC: 0x5a_0800_0000_000dn,
      IA32_VMX_PINBASED_CTLS: 0x3f_0000_0016n,
      IA32_VMX_PROCBASED_CTLS: 0xf7f9_fffe_0401_e172n,
      IA32_VMX_EXIT_CTLS: 0x3_ffff_0003_6dffn,
      IA32_VMX_ENTRY_CTLS: 0x3fff_0000_11ffn,
      IA32_VMX_MISC: 0x4_03c0n,
      IA32_VMX_CR0_FIXED0: 0x8000_0021n,
      IA32_VMX_CR0_FIXED1: 0xffff_ffffn,
      IA32_VMX_CR4_FIXED0: 0x2000n,
      IA32_VMX_CR4_FIXED1: 0x27ffn,
      IA32_VMX_VMCS_ENUM: 0x2cn,
      IA32_VMX_PROCBASED_CTLS2: 0x41_0000_0000n,
    },
    { maxPhysAddr: 38, pmuGpCounters: 2 },
  ),
  // Synthetic: everything allowed (not a real CPU).
  "full-featured": profile(
    "full-featured",
    {
      IA32_VMX_BASIC: 0x1da04_0000_0000_04n | (1n << 58n), // + bit 56 (no error-code requirement), bit 58 (nested-exception injection)
      IA32_VMX_PINBASED_CTLS: 0xff_0000_0016n,
      IA32_VMX_PROCBASED_CTLS: 0xffff_fffe_0401_e172n,
      IA32_VMX_EXIT_CTLS: 0xffff_ffff_0003_6dffn,
      IA32_VMX_ENTRY_CTLS: 0xff_ffff_0000_11ffn,
      IA32_VMX_MISC: 0x7004_c1e7n | (1n << 8n),
      IA32_VMX_CR0_FIXED0: 0x8000_0021n,
      IA32_VMX_CR0_FIXED1: 0xffff_ffffn,
      IA32_VMX_CR4_FIXED0: 0x2000n,
      IA32_VMX_CR4_FIXED1: 0x1_3fff_7fffn,
      IA32_VMX_VMCS_ENUM: 0x60n,
      IA32_VMX_PROCBASED_CTLS2: 0xdfff_ffff_0000_0000n,
      IA32_VMX_EPT_VPID_CAP: 0xf01_06f3_41c1n,
      IA32_VMX_TRUE_PINBASED_CTLS: 0xff_0000_0016n,
      IA32_VMX_TRUE_PROCBASED_CTLS: 0xffff_fffe_0400_6172n,
      IA32_VMX_TRUE_EXIT_CTLS: 0xffff_ffff_0003_6dfbn,
      IA32_VMX_TRUE_ENTRY_CTLS: 0xff_ffff_0000_11fbn,
      IA32_VMX_VMFUNC: 0x1n,
      IA32_VMX_PROCBASED_CTLS3: 0x9fn,
      IA32_VMX_EXIT_CTLS2: 0x6n,
    },
    {
      maxPhysAddr: 52,
      la57: true,
      pcid: true,
      cet: true,
      cetSs: true,
      cetIbt: true,
      pks: true,
      fred: true,
      rtm: true,
      lam: true,
      enclaveInterruption: true,
      busLockDetect: true,
      ptEbx: 0x1ff,
      ptEcx: 0xf,
      ptAddrRanges: 4,
      lbrEbx: 0x7,
    },
  ),
});

/** Whether `name` is a built-in profile (own keys only: "toString" or "__proto__" are not profiles). */
export function isProfileName(name: unknown): name is string {
  return typeof name === "string" && Object.hasOwn(PROFILES, name);
}

/** The built-in profile of this name; throws VMCS_UNKNOWN_PROFILE for anything else. */
export function getProfile(name: string): VmxCaps {
  if (!isProfileName(name)) {
    const shown = typeof name === "string" ? show(name) : `of type ${typeof name}`;
    throw new VmcsError("VMCS_UNKNOWN_PROFILE", `unknown capability profile ${shown}; known: ${Object.keys(PROFILES).join(", ")}`);
  }
  return PROFILES[name]!;
}

/** JSON form of capabilities: any MSR or CPU fact may be omitted when `base` names a profile. */
export interface VmxCapsJson {
  name?: string;
  base?: string;
  msrs?: Record<string, string | number>;
  cpu?: Partial<Record<keyof CpuFacts, boolean | number>>;
}

const MSR_BY_INDEX = new Map<number, VmxMsrName>(
  (Object.entries(VMX_MSR_INDEX) as [VmxMsrName, number][]).map(([k, v]) => [v, k]),
);

function parseMsrValue(key: string, v: unknown): bigint {
  if (typeof v === "bigint" && v >= 0n && v < 1n << 64n) return v;
  if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  if (typeof v === "string" && /^(0x[0-9a-fA-F]+|[0-9]+)$/.test(v.trim())) {
    const b = BigInt(v.trim());
    if (b < 1n << 64n) return b;
  }
  throw new VmcsError("VMCS_INVALID_CAPS", `msrs.${key}: expected a 64-bit "0x..." value, got ${show(v)}`, `msrs.${key}`);
}

const TOP_KEYS = ["name", "base", "msrs", "cpu"] as const;

/** Largest sensible value of each numeric CPU fact (MAXPHYADDR has its own 32..52 rule). */
export const NUMERIC_FACT_MAX: Readonly<Record<string, number>> = {
  pmuGpCounters: 32,
  pmuFixedCounters: 32,
  ptEbx: 0xffff_ffff,
  ptEcx: 0xffff_ffff,
  ptAddrRanges: 7,
  lbrEbx: 0xffff_ffff,
};

/** Levenshtein distance, capped: keys are short and this runs only on the error path. */
function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2 || a.length > 64 || b.length > 64) return 3;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

function unknownKey(where: string, key: string, known: readonly string[]): VmcsError {
  const path = where ? `${where}.${key}` : key;
  // A fact written at the wrong level or in the wrong case is the usual mistake: point at it.
  const near = (k: string): boolean => editDistance(k.toLowerCase(), key.toLowerCase()) <= 2;
  const hint = [
    ...Object.keys(BASE_CPU).filter(near).map((k) => `cpu.${k}`),
    ...Object.keys(VMX_MSR_INDEX).filter(near).map((k) => `msrs.${k}`),
    ...TOP_KEYS.filter(near),
  ].filter((h) => h !== path);
  const more = hint.length ? `; did you mean ${hint.join(" or ")}?` : "";
  return new VmcsError("VMCS_INVALID_CAPS", `unknown key ${show(path)} in capabilities (${where || "top level"} accepts ${known.join(", ")})${more}`, path);
}

function objectAt(where: string, v: unknown): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new VmcsError("VMCS_INVALID_CAPS", where ? `"${where}" must be an object` : "capabilities must be a JSON object", where || undefined);
  }
  return v as Record<string, unknown>;
}

/**
 * Parse capabilities from JSON (object or text): `{"base": "intel-core-i7-5600u", "msrs":
 * {"IA32_VMX_BASIC": "0x...", "0x48b": "0x..."}, "cpu": {"maxPhysAddr": 39}}`. Without `base`,
 * unspecified MSRs read as 0 (nothing allowed). Unknown keys at any level are refused (a
 * misspelt or misplaced fact would otherwise be checked against its default silently). Throws
 * VMCS_INVALID_CAPS (with `path` naming the key) or VMCS_UNKNOWN_PROFILE.
 */
export function capsFromJSON(json: unknown): VmxCaps {
  let obj: unknown = json;
  if (typeof json === "string") {
    try {
      obj = JSON.parse(json);
    } catch (e) {
      throw new VmcsError("VMCS_INVALID_CAPS", `capabilities are not valid JSON: ${(e as Error).message}`);
    }
  }
  const o = objectAt("", obj);
  for (const k of Object.keys(o)) if (!(TOP_KEYS as readonly string[]).includes(k)) throw unknownKey("", k, TOP_KEYS);
  if (o.name !== undefined && typeof o.name !== "string") throw new VmcsError("VMCS_INVALID_CAPS", `"name" must be a string`, "name");
  if (o.base !== undefined && typeof o.base !== "string") throw new VmcsError("VMCS_INVALID_CAPS", `"base" must be a profile name`, "base");
  const base = o.base === undefined ? undefined : getProfile(o.base as string);
  const msrs: VmxMsrs = { ...(base?.msrs ?? ZERO_MSRS) };
  if (o.msrs !== undefined) {
    for (const [k, v] of Object.entries(objectAt("msrs", o.msrs))) {
      const name: VmxMsrName | undefined = Object.hasOwn(VMX_MSR_INDEX, k)
        ? (k as VmxMsrName)
        : /^0x[0-9a-f]{1,8}$/i.test(k)
          ? MSR_BY_INDEX.get(Number.parseInt(k, 16))
          : undefined;
      if (name === undefined) throw unknownKey("msrs", k, ["IA32_VMX_* names", "indices 0x480-0x493"]);
      msrs[name] = parseMsrValue(k, v);
    }
  }
  const cpu: CpuFacts = { ...(base?.cpu ?? BASE_CPU) };
  if (o.cpu !== undefined) {
    for (const [k, v] of Object.entries(objectAt("cpu", o.cpu))) {
      if (!Object.hasOwn(BASE_CPU, k)) throw unknownKey("cpu", k, Object.keys(BASE_CPU));
      const key = k as keyof CpuFacts;
      const want = typeof BASE_CPU[key];
      if (typeof v !== want) throw new VmcsError("VMCS_INVALID_CAPS", `cpu.${k} must be a ${want}, got ${show(v)}`, `cpu.${k}`);
      const max = NUMERIC_FACT_MAX[k];
      if (max !== undefined && (!Number.isInteger(v) || (v as number) < 0 || (v as number) > max)) {
        throw new VmcsError("VMCS_INVALID_CAPS", `cpu.${k} must be an integer in 0..${max}, got ${show(v)}`, `cpu.${k}`);
      }
      (cpu as unknown as Record<string, unknown>)[key] = v;
    }
  }
  if (!Number.isInteger(cpu.maxPhysAddr) || cpu.maxPhysAddr < 32 || cpu.maxPhysAddr > 52) {
    throw new VmcsError("VMCS_INVALID_CAPS", `cpu.maxPhysAddr must be an integer in 32..52, got ${cpu.maxPhysAddr}`, "cpu.maxPhysAddr");
  }
  const name = typeof o.name === "string" ? o.name : base ? `${base.name}+custom` : "custom";
  return profile(name, msrs, cpu);
}

/** Capabilities as JSON (round-trips through capsFromJSON). */
export function capsToJSON(c: VmxCaps): VmxCapsJson {
  const msrs: Record<string, string> = {};
  for (const [k, v] of Object.entries(c.msrs)) msrs[k] = `0x${(v as bigint).toString(16)}`;
  return { name: c.name, msrs, cpu: { ...c.cpu } };
}
