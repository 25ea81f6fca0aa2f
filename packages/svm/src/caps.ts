import { CR4, EFER } from "./bits.js";
import { SvmError } from "./errors.js";

/** CPUID Fn8000_000A_EDX feature bits (APM vol. 3 appendix E, "SVM Revision and Feature Identification"). */
export const SVM_FEATURE = {
  NP: 0,
  LbrVirt: 1,
  SVML: 2,
  NRIPS: 3,
  TscRateMsr: 4,
  VmcbClean: 5,
  FlushByAsid: 6,
  DecodeAssists: 7,
  PmcVirt: 8,
  PauseFilter: 10,
  PauseFilterThreshold: 12,
  AVIC: 13,
  VMSAVEvirt: 15,
  VGIF: 16,
  GMET: 17,
  x2AVIC: 18,
  SSSCheck: 19,
  SpecCtrl: 20,
  ROGPT: 21,
  HOST_MCE_OVERRIDE: 23,
  TlbiCtl: 24,
  VNMI: 25,
  IbsVirt: 26,
  ExtLvtAvicAccessChg: 27,
  NestedVirtVmcbAddrChk: 28,
  BusLockThreshold: 29,
  IdleHltIntercept: 30,
} as const;
export type SvmFeature = keyof typeof SVM_FEATURE;

/** CPUID Fn8000_000A: EAX[7:0] SVM revision, EBX number of ASIDs, EDX feature bits. */
export interface SvmLeaf {
  revision: number;
  nasid: number;
  features: number;
}

/** Other CPUID facts the checks consult. */
export interface CpuFacts {
  /** CPUID Fn8000_0008_EAX[7:0]. */
  maxPhysAddr: number;
  /** Fn8000_0001_EDX[29] LM. */
  longMode: boolean;
  /** Fn8000_0001_EDX[20] NX (EFER.NXE). */
  nx: boolean;
  /** Fn8000_0001_EDX[25] FFXSR (EFER.FFXSR). */
  ffxsr: boolean;
  /** Fn8000_0001_ECX[17] TCE (EFER.TCE). */
  tce: boolean;
  /** EFER.LMSLE exists (absent when Fn8000_0008_EBX[20] EferLmsleUnsupported). */
  lmsle: boolean;
  /** Fn8000_0008_EBX[8] MCOMMIT (EFER.MCOMMIT). */
  mcommit: boolean;
  /** Fn8000_0008_EBX[9] INT_WBINVD (EFER.INTWB). */
  intwb: boolean;
  /** Fn8000_0021_EAX[7] upper address ignore (EFER.UAIE). */
  uai: boolean;
  /** Fn8000_0021_EAX[8] automatic IBRS (EFER.AIBRSE). */
  autoIbrs: boolean;
  /** Fn0000_0007_ECX[2] UMIP (CR4.UMIP). */
  umip: boolean;
  /** Fn0000_0007_ECX[16] LA57 (CR4.LA57). */
  la57: boolean;
  /** Fn0000_0007_EBX[0] FSGSBASE. */
  fsgsbase: boolean;
  /** Fn0000_0001_ECX[17] PCID. */
  pcid: boolean;
  /** Fn0000_0001_ECX[26] XSAVE (CR4.OSXSAVE). */
  xsave: boolean;
  /** Fn0000_0007_EBX[7] SMEP. */
  smep: boolean;
  /** Fn0000_0007_EBX[20] SMAP. */
  smap: boolean;
  /** Fn0000_0007_ECX[3] PKU (CR4.PKE). */
  pku: boolean;
  /** Fn0000_0007_ECX[7] CET_SS (CR4.CET, S_CET, #CP). */
  shstk: boolean;
  /** Fn8000_001F_EAX[3] SEV-ES (#VC). */
  sevEs: boolean;
}

export interface SvmCaps {
  readonly name: string;
  readonly svm: Readonly<SvmLeaf>;
  readonly cpu: Readonly<CpuFacts>;
}

/** Whether the CPU reports an Fn8000_000A_EDX feature. */
export function hasFeature(c: SvmCaps, f: SvmFeature): boolean {
  return ((c.svm.features >>> SVM_FEATURE[f]) & 1) === 1;
}

/** Feature names set in an Fn8000_000A_EDX value. */
export function featureNames(edx: number): SvmFeature[] {
  return (Object.keys(SVM_FEATURE) as SvmFeature[]).filter((k) => ((edx >>> SVM_FEATURE[k]) & 1) === 1);
}

const NO_CPU: CpuFacts = {
  maxPhysAddr: 48,
  longMode: true,
  nx: true,
  ffxsr: false,
  tce: false,
  lmsle: false,
  mcommit: false,
  intwb: false,
  uai: false,
  autoIbrs: false,
  umip: false,
  la57: false,
  fsgsbase: false,
  pcid: false,
  xsave: false,
  smep: false,
  smap: false,
  pku: false,
  shstk: false,
  sevEs: false,
};

function profile(name: string, svm: SvmLeaf, cpu: Partial<CpuFacts>): SvmCaps {
  return Object.freeze({ name, svm: Object.freeze({ ...svm }), cpu: Object.freeze({ ...NO_CPU, ...cpu }) });
}

const bit = (v: number, n: number): boolean => ((v >>> n) & 1) === 1;

/**
 * Capabilities from raw CPUID registers (the leaves a CPUID dump lists). Missing leaves count as
 * zero; `lmsle` is taken as present on CPUs without leaf 8000_0008 EBX[20] (older than Zen 3).
 */
export function capsFromCpuid(name: string, r: {
  l1ecx: number;
  l7ebx?: number;
  l7ecx?: number;
  e1ecx: number;
  e1edx: number;
  e8eax: number;
  e8ebx?: number;
  eaEax: number;
  eaEbx: number;
  eaEdx: number;
  e1fEax?: number;
  e21Eax?: number;
}): SvmCaps {
  const l7ebx = r.l7ebx ?? 0;
  const l7ecx = r.l7ecx ?? 0;
  const e8ebx = r.e8ebx ?? 0;
  const e21 = r.e21Eax ?? 0;
  return profile(
    name,
    { revision: r.eaEax & 0xff, nasid: r.eaEbx >>> 0, features: r.eaEdx >>> 0 },
    {
      maxPhysAddr: r.e8eax & 0xff,
      longMode: bit(r.e1edx, 29),
      nx: bit(r.e1edx, 20),
      ffxsr: bit(r.e1edx, 25),
      tce: bit(r.e1ecx, 17),
      lmsle: !bit(e8ebx, 20),
      mcommit: bit(e8ebx, 8),
      intwb: bit(e8ebx, 9),
      uai: bit(e21, 7),
      autoIbrs: bit(e21, 8),
      umip: bit(l7ecx, 2),
      la57: bit(l7ecx, 16),
      fsgsbase: bit(l7ebx, 0),
      pcid: bit(r.l1ecx, 17),
      xsave: bit(r.l1ecx, 26),
      smep: bit(l7ebx, 7),
      smap: bit(l7ebx, 20),
      pku: bit(l7ecx, 3),
      shstk: bit(l7ecx, 7),
      sevEs: bit(r.e1fEax ?? 0, 3),
    },
  );
}

/**
 * Built-in profiles. The three real CPUs are built from the CPUID leaves VirtualBox's CPU
 * database recorded on the hardware (src/VBox/VMM/VMMR3/cpus/*.h, VBoxCpuReport); the README lists
 * the files. `full-featured` is synthetic: every feature the checks know, MAXPHYADDR 52.
 */
export const PROFILES: Readonly<Record<string, SvmCaps>> = Object.freeze({
  // AMD Ryzen 7 1800X (Zen 1), VirtualBox AMD_Ryzen_7_1800X_Eight_Core.h (2020-07-15).
  "amd-ryzen-7-1800x": capsFromCpuid("amd-ryzen-7-1800x", {
    l1ecx: 0x7ed8320b,
    l7ebx: 0x209c01a9,
    l7ecx: 0x00000000,
    e1ecx: 0x35c233ff,
    e1edx: 0x2fd3fbff,
    e8eax: 0x00003030,
    e8ebx: 0x00001007,
    eaEax: 0x00000001,
    eaEbx: 0x00008000,
    eaEdx: 0x0001bcff,
    e1fEax: 0x00000007,
  }),
  // AMD FX-8150 (Bulldozer), VirtualBox AMD_FX_8150_Eight_Core.h (2013-12-09).
  "amd-fx-8150": capsFromCpuid("amd-fx-8150", {
    l1ecx: 0x1e98220b,
    e1ecx: 0x01c9bfff,
    e1edx: 0x2fd3fbff,
    e8eax: 0x00003030,
    e8ebx: 0x00000000,
    eaEax: 0x00000001,
    eaEbx: 0x00010000,
    eaEdx: 0x000014ff,
  }),
  // AMD Phenom II X6 1100T (K10), VirtualBox AMD_Phenom_II_X6_1100T.h (2013-12-17).
  "amd-phenom-ii-x6-1100t": capsFromCpuid("amd-phenom-ii-x6-1100t", {
    l1ecx: 0x00802009,
    e1ecx: 0x000837ff,
    e1edx: 0xefd3fbff,
    e8eax: 0x00003030,
    e8ebx: 0x00000000,
    eaEax: 0x00000001,
    eaEbx: 0x00000040,
    eaEdx: 0x0000040f,
  }),
  // Synthetic: not a real CPU.
  "full-featured": profile(
    "full-featured",
    { revision: 1, nasid: 0x8000, features: (Object.values(SVM_FEATURE) as number[]).reduce((a: number, b: number) => (a | (1 << b)) >>> 0, 0) },
    {
      maxPhysAddr: 52,
      ffxsr: true,
      tce: true,
      lmsle: true,
      mcommit: true,
      intwb: true,
      uai: true,
      autoIbrs: true,
      umip: true,
      la57: true,
      fsgsbase: true,
      pcid: true,
      xsave: true,
      smep: true,
      smap: true,
      pku: true,
      shstk: true,
      sevEs: true,
    },
  ),
});

/** Whether `name` is a built-in profile (own keys only: "toString" is not a profile). */
export function isProfileName(name: unknown): name is string {
  return typeof name === "string" && Object.hasOwn(PROFILES, name);
}

/** The built-in profile of this name; throws SVM_UNKNOWN_PROFILE. */
export function getProfile(name: string): SvmCaps {
  const p = isProfileName(name) ? PROFILES[name] : undefined;
  if (p === undefined) throw new SvmError("SVM_UNKNOWN_PROFILE", `unknown capability profile ${JSON.stringify(name)}; known: ${Object.keys(PROFILES).join(", ")}`);
  return p;
}

/** JSON form of capabilities: anything omitted comes from `base` (a profile name). */
export interface SvmCapsJson {
  name?: string;
  base?: string;
  svm?: Partial<Record<keyof SvmLeaf, string | number>>;
  cpu?: Partial<Record<keyof CpuFacts, boolean | number>>;
}

function u32(key: string, v: unknown): number {
  const n = typeof v === "string" && /^(0x[0-9a-fA-F]+|[0-9]+)$/.test(v.trim()) ? Number(BigInt(v.trim())) : v;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n > 0xffff_ffff) throw new SvmError("SVM_INVALID_CAPS", `svm.${key} must be a 32-bit value, got ${JSON.stringify(v)}`);
  return n;
}

/**
 * Parse capabilities from JSON (object or text): `{"base": "amd-ryzen-7-1800x", "svm":
 * {"features": "0x1bcff"}, "cpu": {"maxPhysAddr": 40}}`. Throws SVM_INVALID_CAPS / SVM_UNKNOWN_PROFILE.
 */
export function capsFromJSON(json: unknown): SvmCaps {
  let obj: unknown = json;
  if (typeof json === "string") {
    try {
      obj = JSON.parse(json);
    } catch (e) {
      throw new SvmError("SVM_INVALID_CAPS", `capabilities are not valid JSON: ${(e as Error).message}`);
    }
  }
  if (typeof obj !== "object" || obj === null || Array.isArray(obj)) throw new SvmError("SVM_INVALID_CAPS", "capabilities must be a JSON object");
  const o = obj as Record<string, unknown>;
  if (o.base !== undefined && typeof o.base !== "string") throw new SvmError("SVM_INVALID_CAPS", `"base" must be a profile name`);
  const base = typeof o.base === "string" ? getProfile(o.base) : undefined;
  const svm: SvmLeaf = { ...(base?.svm ?? { revision: 1, nasid: 0, features: 0 }) };
  if (o.svm !== undefined) {
    if (typeof o.svm !== "object" || o.svm === null || Array.isArray(o.svm)) throw new SvmError("SVM_INVALID_CAPS", `"svm" must be an object`);
    for (const [k, v] of Object.entries(o.svm)) {
      if (k !== "revision" && k !== "nasid" && k !== "features") throw new SvmError("SVM_INVALID_CAPS", `unknown svm key ${JSON.stringify(k)}`);
      svm[k] = u32(k, v);
    }
  }
  const cpu: CpuFacts = { ...(base?.cpu ?? NO_CPU) };
  if (o.cpu !== undefined) {
    if (typeof o.cpu !== "object" || o.cpu === null || Array.isArray(o.cpu)) throw new SvmError("SVM_INVALID_CAPS", `"cpu" must be an object`);
    for (const [k, v] of Object.entries(o.cpu)) {
      if (!(k in NO_CPU)) throw new SvmError("SVM_INVALID_CAPS", `unknown CPU fact ${JSON.stringify(k)}`);
      const want = typeof NO_CPU[k as keyof CpuFacts];
      if (typeof v !== want) throw new SvmError("SVM_INVALID_CAPS", `CPU fact ${k} must be a ${want}`);
      (cpu as unknown as Record<string, unknown>)[k] = v;
    }
  }
  if (!Number.isInteger(cpu.maxPhysAddr) || cpu.maxPhysAddr < 32 || cpu.maxPhysAddr > 52) {
    throw new SvmError("SVM_INVALID_CAPS", `maxPhysAddr must be an integer in 32..52, got ${cpu.maxPhysAddr}`);
  }
  const name = typeof o.name === "string" ? o.name : base ? `${base.name}+custom` : "custom";
  return profile(name, svm, cpu);
}

/** Capabilities as JSON (round-trips through capsFromJSON). */
export function capsToJSON(c: SvmCaps): SvmCapsJson {
  return { name: c.name, svm: { revision: c.svm.revision, nasid: c.svm.nasid, features: `0x${c.svm.features.toString(16)}` }, cpu: { ...c.cpu } };
}

/** Reason a caps object cannot be used, or undefined (used by the never-throwing checks). */
export function capsProblem(caps: unknown): string | undefined {
  if (typeof caps !== "object" || caps === null) return "capabilities are not an object";
  const c = caps as { svm?: Record<string, unknown>; cpu?: Record<string, unknown> };
  if (typeof c.svm !== "object" || c.svm === null) return "capabilities lack svm (CPUID Fn8000_000A)";
  for (const k of ["revision", "nasid", "features"]) {
    const v = c.svm[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 0xffff_ffff) return `svm.${k} is not a 32-bit number`;
  }
  if (typeof c.cpu !== "object" || c.cpu === null) return "capabilities lack cpu facts";
  const mp = c.cpu.maxPhysAddr;
  if (typeof mp !== "number" || !Number.isInteger(mp) || mp < 32 || mp > 52) return "cpu.maxPhysAddr must be an integer in 32..52";
  for (const k of Object.keys(NO_CPU)) {
    if (k !== "maxPhysAddr" && typeof c.cpu[k] !== "boolean") return `cpu.${k} must be a boolean`;
  }
  return undefined;
}

/** CR4 bits this CPU allows (APM vol. 2 §3.1.3, gated by CPUID). */
export function cr4Allowed(c: SvmCaps): bigint {
  const f = c.cpu;
  // VME .. OSXMMEXCPT (bits 10:0): architectural on every AMD64 CPU
  let m = CR4.VME | CR4.PVI | CR4.TSD | CR4.DE | CR4.PSE | CR4.PAE | CR4.MCE | CR4.PGE | CR4.PCE | CR4.OSFXSR | CR4.OSXMMEXCPT;
  if (f.umip) m |= CR4.UMIP;
  if (f.la57) m |= CR4.LA57;
  if (f.fsgsbase) m |= CR4.FSGSBASE;
  if (f.pcid) m |= CR4.PCIDE;
  if (f.xsave) m |= CR4.OSXSAVE;
  if (f.smep) m |= CR4.SMEP;
  if (f.smap) m |= CR4.SMAP;
  if (f.pku) m |= CR4.PKE;
  if (f.shstk) m |= CR4.CET;
  return m;
}

/** EFER bits this CPU allows (APM vol. 2 §3.1.7, gated by CPUID). */
export function eferAllowed(c: SvmCaps): bigint {
  const f = c.cpu;
  let m = EFER.SCE | EFER.SVME;
  if (f.longMode) m |= EFER.LME | EFER.LMA;
  if (f.nx) m |= EFER.NXE;
  if (f.lmsle) m |= EFER.LMSLE;
  if (f.ffxsr) m |= EFER.FFXSR;
  if (f.tce) m |= EFER.TCE;
  if (f.mcommit) m |= EFER.MCOMMIT;
  if (f.intwb) m |= EFER.INTWB;
  if (f.uai) m |= EFER.UAIE;
  if (f.autoIbrs) m |= EFER.AIBRSE;
  return m;
}
