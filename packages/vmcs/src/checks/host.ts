import { CR0, CR4, EFER, ENTRY, EXIT, EXIT2 } from "../bits/index.js";
import { type Ctx, canonHi, canonSlot, HOST_SEL_SLOTS, HOST_SELECTORS, hex, hi, inPhysHi, isCanonical, lo, patValidSlot, report, SLOT } from "./context.js";
import type { Words } from "./prepared.js";

const U64 = 0xffff_ffff_ffff_ffffn;

/** Reserved bits of IA32_PERF_GLOBAL_CTRL given the counter counts (SDM Vol. 3B §20.2). */
export function perfGlobalCtrlReserved(gp: number, fixed: number): bigint {
  const defined = ((1n << BigInt(gp)) - 1n) | (((1n << BigInt(fixed)) - 1n) << 32n);
  return U64 & ~defined;
}

/** IA32_S_CET bits 9:6 are reserved whatever CPUID says (SDM Vol. 1 §18.3 / Vol. 4); see sCetReserved for the rest. */
export const S_CET_RESERVED = 0x3c0n;

/** IA32_FRED_CONFIG reserved bits: 2, 5:4 and 11 (bits 63:12 are the entry page, checked for canonicality). */
export const FRED_CONFIG_RESERVED = (1n << 2n) | (3n << 4n) | (1n << 11n);

/** IA32_S_CET SUPPRESS (bit 10) and TRACKER = WAIT_FOR_ENDBRANCH (bit 11) may not both be 1. */
export const S_CET_SUPPRESS_TRACKER = (1n << 10n) | (1n << 11n);

/** Number forms (on the low or high 32-bit word) of the bits the checks test. */
export const W = {
  FRED_CONFIG_RESERVED: Number(FRED_CONFIG_RESERVED),
  S_CET_SUPPRESS_TRACKER: Number(S_CET_SUPPRESS_TRACKER),
  CR0_PE: Number(CR0.PE),
  CR0_WP: Number(CR0.WP),
  CR0_PG: Number(CR0.PG),
  CR4_CET: Number(CR4.CET),
  CR4_PAE: Number(CR4.PAE),
  CR4_PCIDE: Number(CR4.PCIDE),
  CR4_LA57: Number(CR4.LA57),
  /** Bit 32: bit 0 of the high word. */
  CR4_FRED_HI: Number(CR4.FRED >> 32n),
  EFER_LME: Number(EFER.LME),
  EFER_LMA: Number(EFER.LMA),
  EXIT2_LOAD_FRED_LO: Number(EXIT2.LOAD_IA32_FRED & 0xffff_ffffn),
  EXIT2_LOAD_FRED_HI: Number(EXIT2.LOAD_IA32_FRED >> 32n),
} as const;

/** Some bit of `mask` set in the slot's value. */
export function anyOf(ctx: Ctx, slot: number, mask: Words): boolean {
  return (ctx.w[2 * slot]! & mask.lo) !== 0 || (ctx.w[2 * slot + 1]! & mask.hi) !== 0;
}

/** CR value has every fixed-0 bit set and no bit outside fixed-1. */
export function crFixedOk(ctx: Ctx, slot: number, fixed0: Words, fixed1: Words): boolean {
  const l = ctx.w[2 * slot]!;
  const h = ctx.w[2 * slot + 1]!;
  return ((l & fixed0.lo) ^ fixed0.lo) === 0 && ((h & fixed0.hi) ^ fixed0.hi) === 0 && (l & ~fixed1.lo) === 0 && (h & ~fixed1.hi) === 0;
}

/** CR3 fits MAXPHYADDR (bits 62:61 ignored with LAM). */
export function cr3Ok(ctx: Ctx, slot: number): boolean {
  const h = ctx.caps.cpu.lam ? ctx.w[2 * slot + 1]! & 0x9fff_ffff : ctx.w[2 * slot + 1]!;
  return inPhysHi(ctx, h);
}

function fredState(ctx: Ctx, id: string, prefix: "GUEST" | "HOST", configSlot: number): void {
  const la = ctx.laWidth;
  // RSP1..3 follow CONFIG in the encoding order, then STKLVLS, then SSP1..3 (see fields.ts).
  let ok = (lo(ctx, configSlot) & W.FRED_CONFIG_RESERVED) === 0 && canonSlot(ctx, configSlot, la);
  for (let i = 1; i <= 3 && ok; i++) {
    ok = (lo(ctx, configSlot + i) & 0x3f) === 0 && canonSlot(ctx, configSlot + i, la) && (lo(ctx, configSlot + 4 + i) & 7) === 0 && canonSlot(ctx, configSlot + 4 + i, la);
  }
  if (ok) return;
  const st = ctx.st;
  const cfg = st.getSlot(configSlot);
  const bad: string[] = [];
  if (cfg & FRED_CONFIG_RESERVED || !isCanonical(cfg & ~0xfffn, ctx.laWidth)) bad.push(`${prefix}_IA32_FRED_CONFIG=${hex(cfg)}`);
  for (let i = 1; i <= 3; i++) {
    const rsp = st.getSlot(configSlot + i);
    if ((rsp & 0x3fn) !== 0n || !isCanonical(rsp, ctx.laWidth)) bad.push(`${prefix}_IA32_FRED_RSP${i}=${hex(rsp)}`);
    const ssp = st.getSlot(configSlot + 4 + i);
    if ((ssp & 7n) !== 0n || !isCanonical(ssp, ctx.laWidth)) bad.push(`${prefix}_IA32_FRED_SSP${i}=${hex(ssp)}`);
  }
  if (bad.length) report(ctx, id, `${bad.join(", ")}: FRED RSPs must be canonical and 64-byte aligned, SSPs canonical and 8-byte aligned, CONFIG canonical with bits 2, 5:4 and 11 clear`);
}

export { fredState };

/** SDM §26.2.2–§26.2.4: host control registers, MSRs, segments, address-space size. */
export function checkHost(ctx: Ctx): void {
  const { st, caps, k, exit, entry } = ctx;
  const la = ctx.laWidth;
  const cr0Lo = lo(ctx, SLOT.H_CR0);
  const cr4Lo = lo(ctx, SLOT.H_CR4);
  const cr4Hi = hi(ctx, SLOT.H_CR4);
  const m = caps.msrs;
  const asz = (exit & EXIT.HOST_ADDR_SPACE_SIZE) !== 0;
  const ia32eGuest = (entry & ENTRY.IA32E_MODE_GUEST) !== 0;

  // §26.2.2
  if (!crFixedOk(ctx, SLOT.H_CR0, k.cr0Fixed0, k.cr0Fixed1)) {
    report(ctx, "HOST.CR0.FIXED", `HOST_CR0=${hex(st.getSlot(SLOT.H_CR0))}: must set ${hex(m.IA32_VMX_CR0_FIXED0)} and stay within ${hex(m.IA32_VMX_CR0_FIXED1)}`);
  }
  if (!crFixedOk(ctx, SLOT.H_CR4, k.cr4Fixed0, k.cr4Fixed1)) {
    report(ctx, "HOST.CR4.FIXED", `HOST_CR4=${hex(st.getSlot(SLOT.H_CR4))}: must set ${hex(m.IA32_VMX_CR4_FIXED0)} and stay within ${hex(m.IA32_VMX_CR4_FIXED1)}`);
  }
  if (!cr3Ok(ctx, SLOT.H_CR3)) report(ctx, "HOST.CR3.PHYS_WIDTH", `HOST_CR3=${hex(st.getSlot(SLOT.H_CR3))}: bits at or above MAXPHYADDR (${ctx.maxPhys}) set`);
  if (cr4Lo & W.CR4_CET && !(cr0Lo & W.CR0_WP)) report(ctx, "HOST.CR4.CET_REQUIRES_WP", `HOST_CR4=${hex(st.getSlot(SLOT.H_CR4))}: CR4.CET with HOST_CR0=${hex(st.getSlot(SLOT.H_CR0))} lacking WP`);
  if (!canonSlot(ctx, SLOT.H_SYSENTER_ESP, la)) report(ctx, "HOST.SYSENTER_ESP.CANONICAL", `HOST_IA32_SYSENTER_ESP=${hex(st.getSlot(SLOT.H_SYSENTER_ESP))}: not canonical`);
  if (!canonSlot(ctx, SLOT.H_SYSENTER_EIP, la)) report(ctx, "HOST.SYSENTER_EIP.CANONICAL", `HOST_IA32_SYSENTER_EIP=${hex(st.getSlot(SLOT.H_SYSENTER_EIP))}: not canonical`);
  if (exit & EXIT.LOAD_CET_STATE) {
    if (anyOf(ctx, SLOT.H_S_CET, k.sCet) || !canonSlot(ctx, SLOT.H_S_CET, la)) {
      const sCet = st.getSlot(SLOT.H_S_CET);
      const r = sCet & k.sCet.big;
      report(ctx, "HOST.CET.S_CET", `HOST_S_CET=${hex(sCet)}: must be canonical with reserved bits ${hex(r || S_CET_RESERVED)} clear (bits 9:6, and those CPUID CET_SS/CET_IBT do not enumerate)`);
    }
    if ((lo(ctx, SLOT.H_S_CET) & W.S_CET_SUPPRESS_TRACKER) === W.S_CET_SUPPRESS_TRACKER) {
      report(ctx, "HOST.CET.S_CET_SUPPRESS_TRACKER", `HOST_S_CET=${hex(st.getSlot(SLOT.H_S_CET))}: SUPPRESS (bit 10) and TRACKER (bit 11) both set`);
    }
    if (!canonSlot(ctx, SLOT.H_ISST, la)) report(ctx, "HOST.CET.ISST", `HOST_INTR_SSP_TABLE=${hex(st.getSlot(SLOT.H_ISST))}: not canonical`);
    if ((lo(ctx, SLOT.H_SSP) & 3) !== 0 || (asz ? !canonSlot(ctx, SLOT.H_SSP, la) : false)) {
      report(ctx, "HOST.CET.SSP", `HOST_SSP=${hex(st.getSlot(SLOT.H_SSP))}: must be 4-byte aligned${asz ? " and canonical" : ""}`);
    }
  }
  if (exit & EXIT.LOAD_IA32_PERF_GLOBAL_CTRL && anyOf(ctx, SLOT.H_PERF, k.perfReserved)) {
    const v = st.getSlot(SLOT.H_PERF);
    const r = k.perfReserved.big;
    report(ctx, "HOST.PERF_GLOBAL_CTRL.RESERVED", `HOST_IA32_PERF_GLOBAL_CTRL=${hex(v)}: reserved bits ${hex(v & r)} set`);
  }
  if (exit & EXIT.LOAD_IA32_PAT && !patValidSlot(ctx, SLOT.H_PAT)) {
    report(ctx, "HOST.PAT.VALID", `HOST_IA32_PAT=${hex(st.getSlot(SLOT.H_PAT))}: every byte must be 0, 1, 4, 5, 6 or 7`);
  }
  if (exit & EXIT.LOAD_IA32_EFER) {
    const eLo = lo(ctx, SLOT.H_EFER);
    if (eLo & ~k.eferDefined.lo || hi(ctx, SLOT.H_EFER) & ~k.eferDefined.hi) {
      const efer = st.getSlot(SLOT.H_EFER);
      report(ctx, "HOST.EFER.RESERVED", `HOST_IA32_EFER=${hex(efer)}: reserved bits ${hex(efer & ~k.eferDefined.big & U64)} set`);
    }
    const lma = (eLo & W.EFER_LMA) !== 0;
    const lme = (eLo & W.EFER_LME) !== 0;
    if (lma !== asz || lme !== asz) report(ctx, "HOST.EFER.LMA_LME", `HOST_IA32_EFER=${hex(st.getSlot(SLOT.H_EFER))}: LMA and LME must both be ${asz ? 1 : 0} (host address-space size)`);
  }
  if (exit & EXIT.LOAD_PKRS && hi(ctx, SLOT.H_PKRS) !== 0) {
    report(ctx, "HOST.PKRS.RESERVED", `HOST_IA32_PKRS=${hex(st.getSlot(SLOT.H_PKRS))}: bits 63:32 must be 0`);
  }
  // FRED state is loaded (and checked) only for a 64-bit host; a 32-bit host may not have CR4.FRED.
  if (asz && exit & EXIT.ACTIVATE_SECONDARY_CONTROLS && (ctx.exit2Lo & W.EXIT2_LOAD_FRED_LO || ctx.exit2Hi & W.EXIT2_LOAD_FRED_HI)) {
    fredState(ctx, "HOST.FRED.STATE", "HOST", SLOT.H_FRED_CONFIG);
  }

  // §26.2.3
  let selBits = 0;
  for (let i = 0; i < HOST_SEL_SLOTS.length; i++) selBits |= lo(ctx, HOST_SEL_SLOTS[i]!);
  if (selBits & 7) {
    const badSel: string[] = [];
    for (let i = 0; i < HOST_SEL_SLOTS.length; i++) {
      const sel = lo(ctx, HOST_SEL_SLOTS[i]!);
      if (sel & 7) badSel.push(`HOST_${HOST_SELECTORS[i]}_SELECTOR=${hex(sel)}`);
    }
    report(ctx, "HOST.SEL.RPL_TI_ZERO", `${badSel.join(", ")}: RPL and TI must be 0`);
  }
  const cs = lo(ctx, HOST_SEL_SLOTS[1]!);
  const ss = lo(ctx, HOST_SEL_SLOTS[2]!);
  const tr = lo(ctx, HOST_SEL_SLOTS[6]!);
  if (cs === 0) report(ctx, "HOST.SEL.CS_NONZERO", "HOST_CS_SELECTOR=0x0: must not be 0");
  if (tr === 0) report(ctx, "HOST.SEL.TR_NONZERO", "HOST_TR_SELECTOR=0x0: must not be 0");
  if (ss === 0 && !asz) report(ctx, "HOST.SEL.SS_NONZERO_IF_32BIT", "HOST_SS_SELECTOR=0x0: must not be 0 when host address-space size is 0");
  if (caps.cpu.intel64) {
    const w = ctx.w;
    if (!canonHi(w[2 * SLOT.H_FS_BASE + 1]!, la) || !canonHi(w[2 * SLOT.H_GS_BASE + 1]!, la) || !canonHi(w[2 * SLOT.H_GDTR_BASE + 1]!, la) || !canonHi(w[2 * SLOT.H_IDTR_BASE + 1]!, la) || !canonHi(w[2 * SLOT.H_TR_BASE + 1]!, la)) {
      const bases: [string, number][] = [
        ["HOST_FS_BASE", SLOT.H_FS_BASE],
        ["HOST_GS_BASE", SLOT.H_GS_BASE],
        ["HOST_GDTR_BASE", SLOT.H_GDTR_BASE],
        ["HOST_IDTR_BASE", SLOT.H_IDTR_BASE],
        ["HOST_TR_BASE", SLOT.H_TR_BASE],
      ];
      const bad = bases.filter(([, s]) => !isCanonical(st.getSlot(s), la)).map(([n, s]) => `${n}=${hex(st.getSlot(s))}`);
      report(ctx, "HOST.BASE.CANONICAL", `${bad.join(", ")}: not canonical`);
    }
  }

  // §26.2.4
  if (!caps.cpu.intel64) {
    if (ia32eGuest || asz) report(ctx, "HOST.ASZ.NO_INTEL64", `VM_ENTRY_CONTROLS=${hex(entry)}, VM_EXIT_CONTROLS=${hex(exit)}: CPU lacks Intel 64; IA-32e mode guest and host address-space size must be 0`);
    return;
  }
  const cpuIa32e = ctx.env.cpuInIa32e ?? true;
  if (!cpuIa32e && (ia32eGuest || asz)) {
    report(ctx, "HOST.ASZ.OUTSIDE_IA32E", `VM_ENTRY_CONTROLS=${hex(entry)}, VM_EXIT_CONTROLS=${hex(exit)}: outside IA-32e mode both IA-32e mode guest and host address-space size must be 0`);
  }
  if (cpuIa32e && !asz) report(ctx, "HOST.ASZ.INSIDE_IA32E", `VM_EXIT_CONTROLS=${hex(exit)}: in IA-32e mode host address-space size must be 1`);
  if (!asz) {
    const cr4 = st.getSlot(SLOT.H_CR4);
    const rip = st.getSlot(SLOT.H_RIP);
    if (ia32eGuest) report(ctx, "HOST.ASZ.H32_NO_IA32E_GUEST", `VM_ENTRY_CONTROLS=${hex(entry)}: IA-32e mode guest with a 32-bit host`);
    if (cr4Lo & W.CR4_PCIDE) report(ctx, "HOST.ASZ.H32_NO_PCIDE", `HOST_CR4=${hex(cr4)}: PCIDE must be 0 for a 32-bit host`);
    if (cr4Hi & W.CR4_FRED_HI) report(ctx, "HOST.ASZ.H32_NO_FRED", `HOST_CR4=${hex(cr4)}: FRED (bit 32) must be 0 for a 32-bit host`);
    const high: string[] = [];
    if (rip >> 32n) high.push(`HOST_RIP=${hex(rip)}`);
    if (exit & EXIT.LOAD_CET_STATE) {
      for (const [n, s] of [
        ["HOST_S_CET", SLOT.H_S_CET],
        ["HOST_SSP", SLOT.H_SSP],
        ["HOST_INTR_SSP_TABLE", SLOT.H_ISST],
      ] as const) {
        if (st.getSlot(s) >> 32n) high.push(`${n}=${hex(st.getSlot(s))}`);
      }
    }
    if (high.length) report(ctx, "HOST.ASZ.H32_RIP_HIGH", `${high.join(", ")}: bits 63:32 must be 0 for a 32-bit host`);
  } else {
    if (!(cr4Lo & W.CR4_PAE)) report(ctx, "HOST.ASZ.H64_PAE", `HOST_CR4=${hex(st.getSlot(SLOT.H_CR4))}: PAE must be 1 for a 64-bit host`);
    const w = cr4Lo & W.CR4_LA57 ? 57 : 48;
    if (!canonSlot(ctx, SLOT.H_RIP, w)) report(ctx, "HOST.ASZ.H64_RIP_CANONICAL", `HOST_RIP=${hex(st.getSlot(SLOT.H_RIP))}: not canonical (${w}-bit linear addresses)`);
  }
}
