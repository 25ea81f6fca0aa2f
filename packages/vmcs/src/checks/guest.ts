import { ACTIVITY, CR0, DEBUGCTL, ENTRY, INTERRUPTIBILITY, INTR_INFO, PIN, PROC2, RFLAGS, RFLAGS_RESERVED } from "../bits/index.js";
import { blankSeg, type Ctx, canonHi, canonSlot, hex, hexSlot, hi, lo, patValidSlot, readMem, readSeg, report, SEG_SLOTS, type Seg, SLOT } from "./context.js";
import { anyOf, cr3Ok, crFixedOk, fredState, S_CET_RESERVED, W } from "./host.js";
import { type Words, words } from "./prepared.js";

const U64 = 0xffff_ffff_ffff_ffffn;
/** Pending debug exceptions: bits 11:4, 13, 15 and 63:17 are reserved. */
export const PDE_RESERVED = 0xff0n | (1n << 13n) | (1n << 15n) | (U64 & ~0x1ffffn);
const PDE_RSVD: Words = words(PDE_RESERVED);
const RFLAGS_RSVD: Words = words(RFLAGS_RESERVED);
/** Number forms of the guest-only bits the checks test (all in the low word). */
const G = {
  RF_FIXED1: Number(RFLAGS.FIXED1),
  RF_VM: Number(RFLAGS.VM),
  RF_IF: Number(RFLAGS.IF),
  RF_TF: Number(RFLAGS.TF),
  RF_IOPL: Number(RFLAGS.IOPL_MASK),
  DEBUGCTL_BTF: Number(DEBUGCTL.BTF),
} as const;

const segName = (s: Seg, what: string): string => `GUEST_${s.name}_${what}`;

/** G consistent with the limit: limit[11:0] all ones unless G = 0; limit[31:20] zero unless G = 1. */
function granularityOk(s: Seg): boolean {
  if ((s.limit & 0xfff) !== 0xfff && s.g) return false;
  if (s.limit & 0xfff0_0000 && !s.g) return false;
  return true;
}

const v86BaseOk = (s: Seg): boolean => s.baseHi === 0 && s.baseLo === s.sel * 16;
const badDataType = (s: Seg): boolean => s.usable && ((s.type & 1) === 0 || ((s.type & 8) !== 0 && (s.type & 2) === 0));
const badDataDpl = (s: Seg): boolean => s.usable && s.type <= 11 && s.dpl < (s.sel & 3);

/**
 * Segment records reused from run to run: eight fresh objects per run were a good share of the
 * garbage. A run nested inside another (an env.memory accessor calling checkVmEntry) gets fresh ones.
 */
const SEG_POOL: readonly Seg[] = SEG_SLOTS.map((s) => blankSeg(s.name));
let segPoolBusy = false;

/** SDM §26.3.1: checks on the guest-state area. */
export function checkGuest(ctx: Ctx): void {
  if (segPoolBusy) {
    checkGuestWith(ctx, undefined);
    return;
  }
  segPoolBusy = true;
  try {
    checkGuestWith(ctx, SEG_POOL);
  } finally {
    segPoolBusy = false;
  }
}

function checkGuestWith(ctx: Ctx, pool: readonly Seg[] | undefined): void {
  const { st, caps, k, entry, proc2, pin } = ctx;
  const m = caps.msrs;
  const la = ctx.laWidth;
  const cr0Lo = lo(ctx, SLOT.G_CR0);
  const cr4Lo = lo(ctx, SLOT.G_CR4);
  const rfLo = lo(ctx, SLOT.G_RFLAGS);
  const ug = (proc2 & PROC2.UNRESTRICTED_GUEST) !== 0;
  const ept = (proc2 & PROC2.ENABLE_EPT) !== 0;
  const ia32e = (entry & ENTRY.IA32E_MODE_GUEST) !== 0;
  const pe = (cr0Lo & W.CR0_PE) !== 0;
  const pg = (cr0Lo & W.CR0_PG) !== 0;
  const v86 = (rfLo & G.RF_VM) !== 0;
  const info = lo(ctx, SLOT.INTR_INFO);
  const injecting = (info & INTR_INFO.VALID) !== 0;
  const injType = (info >>> 8) & 7;
  const injVector = info & 0xff;
  const intr = lo(ctx, SLOT.G_INTERRUPTIBILITY);
  const activity = lo(ctx, SLOT.G_ACTIVITY);
  const sti = (intr & INTERRUPTIBILITY.STI) !== 0;
  const movss = (intr & INTERRUPTIBILITY.MOV_SS) !== 0;
  const fredOn = (hi(ctx, SLOT.G_CR4) & W.CR4_FRED_HI) !== 0;

  // §26.3.1.1 control registers, debug registers, MSRs
  const pePg = Number(CR0.PE | CR0.PG);
  const f0 = k.cr0Fixed0;
  if (!crFixedOk(ctx, SLOT.G_CR0, ug ? { lo: f0.lo & ~pePg, hi: f0.hi, big: 0n } : f0, k.cr0Fixed1)) {
    const fixed0 = ug ? m.IA32_VMX_CR0_FIXED0 & ~(CR0.PE | CR0.PG) : m.IA32_VMX_CR0_FIXED0;
    report(ctx, "GUEST.CR0.FIXED", `GUEST_CR0=${hexSlot(ctx, SLOT.G_CR0)}: must set ${hex(fixed0)} and stay within ${hex(m.IA32_VMX_CR0_FIXED1)}`);
  }
  if (pg && !pe) report(ctx, "GUEST.CR0.PG_REQUIRES_PE", `GUEST_CR0=${hexSlot(ctx, SLOT.G_CR0)}: PG set without PE`);
  if (!crFixedOk(ctx, SLOT.G_CR4, k.cr4Fixed0, k.cr4Fixed1)) {
    report(ctx, "GUEST.CR4.FIXED", `GUEST_CR4=${hexSlot(ctx, SLOT.G_CR4)}: must set ${hex(m.IA32_VMX_CR4_FIXED0)} and stay within ${hex(m.IA32_VMX_CR4_FIXED1)}`);
  }
  if (cr4Lo & W.CR4_CET && !(cr0Lo & W.CR0_WP)) report(ctx, "GUEST.CR4.CET_REQUIRES_WP", `GUEST_CR4=${hexSlot(ctx, SLOT.G_CR4)}: CR4.CET with GUEST_CR0=${hexSlot(ctx, SLOT.G_CR0)} lacking WP`);
  const debugctlLo = lo(ctx, SLOT.G_DEBUGCTL);
  if (entry & ENTRY.LOAD_DEBUG_CONTROLS && anyOf(ctx, SLOT.G_DEBUGCTL, k.debugctl)) {
    const debugctl = st.getSlot(SLOT.G_DEBUGCTL);
    report(ctx, "GUEST.DEBUGCTL.RESERVED", `GUEST_IA32_DEBUGCTL=${hex(debugctl)}: reserved bits ${hex(debugctl & k.debugctl.big)} set (bit 2 needs bus-lock detection, bit 15 RTM in CPUID)`);
  }
  if (ia32e && !(pg && cr4Lo & W.CR4_PAE)) report(ctx, "GUEST.IA32E.PG_AND_PAE", `GUEST_CR0=${hexSlot(ctx, SLOT.G_CR0)}, GUEST_CR4=${hexSlot(ctx, SLOT.G_CR4)}: IA-32e mode guest needs CR0.PG and CR4.PAE`);
  if (!ia32e && cr4Lo & W.CR4_PCIDE) report(ctx, "GUEST.NON_IA32E.NO_PCIDE", `GUEST_CR4=${hexSlot(ctx, SLOT.G_CR4)}: PCIDE set for a guest outside IA-32e mode`);
  if (!ia32e && fredOn) report(ctx, "GUEST.NON_IA32E.NO_FRED", `GUEST_CR4=${hexSlot(ctx, SLOT.G_CR4)}: FRED set for a guest outside IA-32e mode`);
  if (!cr3Ok(ctx, SLOT.G_CR3)) report(ctx, "GUEST.CR3.PHYS_WIDTH", `GUEST_CR3=${hexSlot(ctx, SLOT.G_CR3)}: bits at or above MAXPHYADDR (${ctx.maxPhys}) set`);
  if (entry & ENTRY.LOAD_DEBUG_CONTROLS && hi(ctx, SLOT.G_DR7) !== 0) {
    report(ctx, "GUEST.DR7.HIGH_ZERO", `GUEST_DR7=${hex(st.getSlot(SLOT.G_DR7))}: bits 63:32 must be 0`);
  }
  if (!canonSlot(ctx, SLOT.G_SYSENTER_ESP, la)) report(ctx, "GUEST.SYSENTER_ESP.CANONICAL", `GUEST_SYSENTER_ESP=${hex(st.getSlot(SLOT.G_SYSENTER_ESP))}: not canonical`);
  if (!canonSlot(ctx, SLOT.G_SYSENTER_EIP, la)) report(ctx, "GUEST.SYSENTER_EIP.CANONICAL", `GUEST_SYSENTER_EIP=${hex(st.getSlot(SLOT.G_SYSENTER_EIP))}: not canonical`);
  if (entry & ENTRY.LOAD_CET_STATE) {
    if (anyOf(ctx, SLOT.G_S_CET, k.sCet) || (ia32e ? !canonSlot(ctx, SLOT.G_S_CET, la) : hi(ctx, SLOT.G_S_CET) !== 0)) {
      const sCet = st.getSlot(SLOT.G_S_CET);
      const r = sCet & k.sCet.big;
      report(ctx, "GUEST.CET.S_CET", `GUEST_S_CET=${hex(sCet)}: must be ${ia32e ? "canonical" : "below 2^32"} with reserved bits ${hex(r || S_CET_RESERVED)} clear (bits 9:6, and those CPUID CET_SS/CET_IBT do not enumerate)`);
    }
    if ((lo(ctx, SLOT.G_S_CET) & W.S_CET_SUPPRESS_TRACKER) === W.S_CET_SUPPRESS_TRACKER) {
      report(ctx, "GUEST.CET.S_CET_SUPPRESS_TRACKER", `GUEST_S_CET=${hex(st.getSlot(SLOT.G_S_CET))}: SUPPRESS (bit 10) and TRACKER (bit 11) both set`);
    }
    if (!canonSlot(ctx, SLOT.G_ISST, la)) report(ctx, "GUEST.CET.ISST", `GUEST_INTR_SSP_TABLE=${hex(st.getSlot(SLOT.G_ISST))}: not canonical`);
    if ((lo(ctx, SLOT.G_SSP) & 3) !== 0 || (ia32e ? !canonSlot(ctx, SLOT.G_SSP, la) : hi(ctx, SLOT.G_SSP) !== 0)) {
      report(ctx, "GUEST.CET.SSP", `GUEST_SSP=${hex(st.getSlot(SLOT.G_SSP))}: must be 4-byte aligned and ${ia32e ? "canonical" : "below 2^32"}`);
    }
  }
  if (entry & ENTRY.LOAD_IA32_PERF_GLOBAL_CTRL && anyOf(ctx, SLOT.G_PERF, k.perfReserved)) {
    const v = st.getSlot(SLOT.G_PERF);
    report(ctx, "GUEST.PERF_GLOBAL_CTRL.RESERVED", `GUEST_IA32_PERF_GLOBAL_CTRL=${hex(v)}: reserved bits ${hex(v & k.perfReserved.big)} set`);
  }
  if (entry & ENTRY.LOAD_IA32_PAT && !patValidSlot(ctx, SLOT.G_PAT)) {
    report(ctx, "GUEST.PAT.VALID", `GUEST_IA32_PAT=${hex(st.getSlot(SLOT.G_PAT))}: every byte must be 0, 1, 4, 5, 6 or 7`);
  }
  if (entry & ENTRY.LOAD_IA32_EFER) {
    const eLo = lo(ctx, SLOT.G_EFER);
    if (eLo & ~k.eferDefined.lo || hi(ctx, SLOT.G_EFER) & ~k.eferDefined.hi) {
      report(ctx, "GUEST.EFER.RESERVED", `GUEST_IA32_EFER=${hexSlot(ctx, SLOT.G_EFER)}: reserved bits ${hex(st.getSlot(SLOT.G_EFER) & ~k.eferDefined.big & U64)} set`);
    }
    const lma = (eLo & W.EFER_LMA) !== 0;
    const lme = (eLo & W.EFER_LME) !== 0;
    if (lma !== ia32e) report(ctx, "GUEST.EFER.LMA_EQ_IA32E", `GUEST_IA32_EFER=${hexSlot(ctx, SLOT.G_EFER)}: LMA must be ${ia32e ? 1 : 0} (IA-32e mode guest)`);
    if (pg && lme !== lma) report(ctx, "GUEST.EFER.LME_EQ_LMA_IF_PG", `GUEST_IA32_EFER=${hexSlot(ctx, SLOT.G_EFER)}: LME must equal LMA when CR0.PG = 1`);
  }
  if (entry & ENTRY.LOAD_IA32_BNDCFGS && (lo(ctx, SLOT.G_BNDCFGS) & 0xffc || !canonSlot(ctx, SLOT.G_BNDCFGS, la))) {
    report(ctx, "GUEST.BNDCFGS", `GUEST_BNDCFGS=${hex(st.getSlot(SLOT.G_BNDCFGS))}: bits 11:2 must be 0 and the base canonical`);
  }
  if (entry & ENTRY.LOAD_IA32_RTIT_CTL && anyOf(ctx, SLOT.G_RTIT, k.rtitCtl)) {
    const r = st.getSlot(SLOT.G_RTIT);
    report(ctx, "GUEST.RTIT_CTL.RESERVED", `GUEST_IA32_RTIT_CTL=${hex(r)}: reserved bits ${hex(r & k.rtitCtl.big)} set (for CPUID leaf 14H)`);
  }
  if (entry & ENTRY.LOAD_IA32_LBR_CTL && anyOf(ctx, SLOT.G_LBR, k.lbrCtl)) {
    const l = st.getSlot(SLOT.G_LBR);
    report(ctx, "GUEST.LBR_CTL.RESERVED", `GUEST_IA32_LBR_CTL=${hex(l)}: reserved bits ${hex(l & k.lbrCtl.big)} set (for CPUID leaf 1CH)`);
  }
  if (entry & ENTRY.LOAD_PKRS && hi(ctx, SLOT.G_PKRS) !== 0) {
    report(ctx, "GUEST.PKRS.RESERVED", `GUEST_IA32_PKRS=${hex(st.getSlot(SLOT.G_PKRS))}: bits 63:32 must be 0`);
  }
  if (entry & ENTRY.LOAD_UINV) {
    const u = lo(ctx, SLOT.UINV);
    if (u & 0xff00) report(ctx, "GUEST.UINV", `GUEST_UINV=${hex(u)}: bits 15:8 must be 0`);
  }
  // FRED state is loaded (and checked) only for an IA-32e mode guest; outside it CR4.FRED must be 0.
  if (ia32e && entry & ENTRY.LOAD_IA32_FRED) fredState(ctx, "GUEST.FRED.STATE", "GUEST", SLOT.G_FRED_CONFIG);

  // §26.3.1.2 segment registers
  const es = readSeg(ctx, SEG_SLOTS[0]!, pool?.[0]);
  const cs = readSeg(ctx, SEG_SLOTS[1]!, pool?.[1]);
  const ss = readSeg(ctx, SEG_SLOTS[2]!, pool?.[2]);
  const ds = readSeg(ctx, SEG_SLOTS[3]!, pool?.[3]);
  const fs = readSeg(ctx, SEG_SLOTS[4]!, pool?.[4]);
  const gs = readSeg(ctx, SEG_SLOTS[5]!, pool?.[5]);
  const ldtr = readSeg(ctx, SEG_SLOTS[6]!, pool?.[6]);
  const tr = readSeg(ctx, SEG_SLOTS[7]!, pool?.[7]);
  if (tr.sel & 4) report(ctx, "GUEST.SEG.TR.SEL_TI", `GUEST_TR_SELECTOR=${hex(tr.sel)}: TI must be 0`);
  if (ldtr.usable && ldtr.sel & 4) report(ctx, "GUEST.SEG.LDTR.SEL_TI", `GUEST_LDTR_SELECTOR=${hex(ldtr.sel)}: TI must be 0`);
  if (!v86 && !ug && (ss.sel & 3) !== (cs.sel & 3)) {
    report(ctx, "GUEST.SEG.SS.RPL_EQ_CS_RPL", `GUEST_SS_SELECTOR=${hex(ss.sel)}, GUEST_CS_SELECTOR=${hex(cs.sel)}: RPLs must be equal`);
  }
  // The lists below are built only when a check fails: the common, valid case allocates nothing.
  if (v86 && !(v86BaseOk(cs) && v86BaseOk(ss) && v86BaseOk(ds) && v86BaseOk(es) && v86BaseOk(fs) && v86BaseOk(gs))) {
    const b = [cs, ss, ds, es, fs, gs].filter((s) => !v86BaseOk(s));
    report(ctx, "GUEST.SEG.V86.BASE", `${b.map((s) => `${segName(s, "BASE")}=${hex(st.getSlot(s.baseSlot))}`).join(", ")}: must equal selector × 16 in virtual-8086 mode`);
  }
  if (!canonHi(tr.baseHi, la) || !canonHi(fs.baseHi, la) || !canonHi(gs.baseHi, la)) {
    const nc = [tr, fs, gs].filter((s) => !canonHi(s.baseHi, la));
    report(ctx, "GUEST.SEG.BASE.TR_FS_GS_CANONICAL", `${nc.map((s) => `${segName(s, "BASE")}=${hex(st.getSlot(s.baseSlot))}`).join(", ")}: not canonical`);
  }
  if (ldtr.usable && !canonHi(ldtr.baseHi, la)) report(ctx, "GUEST.SEG.LDTR.BASE_CANONICAL", `GUEST_LDTR_BASE=${hex(st.getSlot(ldtr.baseSlot))}: not canonical`);
  if (cs.baseHi !== 0) report(ctx, "GUEST.SEG.CS.BASE_HIGH_ZERO", `GUEST_CS_BASE=${hex(st.getSlot(cs.baseSlot))}: bits 63:32 must be 0`);
  if ((ss.usable && ss.baseHi !== 0) || (ds.usable && ds.baseHi !== 0) || (es.usable && es.baseHi !== 0)) {
    const hb = [ss, ds, es].filter((s) => s.usable && s.baseHi !== 0);
    report(ctx, "GUEST.SEG.SS_DS_ES.BASE_HIGH_ZERO", `${hb.map((s) => `${segName(s, "BASE")}=${hex(st.getSlot(s.baseSlot))}`).join(", ")}: bits 63:32 must be 0`);
  }
  if (v86) {
    if (cs.limit !== 0xffff || ss.limit !== 0xffff || ds.limit !== 0xffff || es.limit !== 0xffff || fs.limit !== 0xffff || gs.limit !== 0xffff) {
      const bl = [cs, ss, ds, es, fs, gs].filter((s) => s.limit !== 0xffff);
      report(ctx, "GUEST.SEG.V86.LIMIT", `${bl.map((s) => `${segName(s, "LIMIT")}=${hex(s.limit)}`).join(", ")}: must be 0xffff in virtual-8086 mode`);
    }
    if (cs.ar !== 0xf3 || ss.ar !== 0xf3 || ds.ar !== 0xf3 || es.ar !== 0xf3 || fs.ar !== 0xf3 || gs.ar !== 0xf3) {
      const ba = [cs, ss, ds, es, fs, gs].filter((s) => s.ar !== 0xf3);
      report(ctx, "GUEST.SEG.V86.AR", `${ba.map((s) => `${segName(s, "AR_BYTES")}=${hex(s.ar)}`).join(", ")}: must be 0xf3 in virtual-8086 mode`);
    }
  } else {
    const t = cs.type;
    const codeOk = t === 9 || t === 11 || t === 13 || t === 15;
    if (!ug && !codeOk) report(ctx, "GUEST.SEG.CS.TYPE", `GUEST_CS_AR_BYTES=${hex(cs.ar)}: type ${t} must be 9, 11, 13 or 15`);
    if (ug && !codeOk && t !== 3) report(ctx, "GUEST.SEG.CS.TYPE_UG", `GUEST_CS_AR_BYTES=${hex(cs.ar)}: type ${t} must be 3, 9, 11, 13 or 15`);
    if (ss.usable && ss.type !== 3 && ss.type !== 7) report(ctx, "GUEST.SEG.SS.TYPE", `GUEST_SS_AR_BYTES=${hex(ss.ar)}: type ${ss.type} must be 3 or 7`);
    if (badDataType(ds) || badDataType(es) || badDataType(fs) || badDataType(gs)) {
      const bt = [ds, es, fs, gs].filter(badDataType);
      report(ctx, "GUEST.SEG.DATA.TYPE", `${bt.map((s) => `${segName(s, "AR_BYTES")}=${hex(s.ar)}`).join(", ")}: type must be accessed, and readable if code`);
    }
    // CS always counts as usable here; the others when their unusable bit is 0. The AND over
    // the six of the bits that must be 1 and the OR of those that must be 0 decide the common case.
    let and = cs.ar;
    let or = cs.ar;
    let gran = granularityOk(cs);
    if (ss.usable) {
      and &= ss.ar;
      or |= ss.ar;
      gran = gran && granularityOk(ss);
    }
    if (ds.usable) {
      and &= ds.ar;
      or |= ds.ar;
      gran = gran && granularityOk(ds);
    }
    if (es.usable) {
      and &= es.ar;
      or |= es.ar;
      gran = gran && granularityOk(es);
    }
    if (fs.usable) {
      and &= fs.ar;
      or |= fs.ar;
      gran = gran && granularityOk(fs);
    }
    if (gs.usable) {
      and &= gs.ar;
      or |= gs.ar;
      gran = gran && granularityOk(gs);
    }
    if (!(and & 0x10)) {
      const bs = [cs, ss, ds, es, fs, gs].filter((s) => s === cs || s.usable).filter((s) => !s.s);
      report(ctx, "GUEST.SEG.S_BIT", `${bs.map((s) => `${segName(s, "AR_BYTES")}=${hex(s.ar)}`).join(", ")}: S must be 1`);
    }
    if ((t === 3 && cs.dpl !== 0) || ((t === 9 || t === 11) && cs.dpl !== ss.dpl) || ((t === 13 || t === 15) && cs.dpl > ss.dpl)) {
      report(ctx, "GUEST.SEG.CS.DPL", `GUEST_CS_AR_BYTES=${hex(cs.ar)}, GUEST_SS_AR_BYTES=${hex(ss.ar)}: CS.DPL ${cs.dpl} inconsistent with CS type ${t} and SS.DPL ${ss.dpl}`);
    }
    if (!ug && ss.dpl !== (ss.sel & 3)) report(ctx, "GUEST.SEG.SS.DPL_EQ_RPL", `GUEST_SS_AR_BYTES=${hex(ss.ar)}, GUEST_SS_SELECTOR=${hex(ss.sel)}: SS.DPL must equal SS.RPL`);
    if ((t === 3 || !pe) && ss.dpl !== 0) report(ctx, "GUEST.SEG.SS.DPL_ZERO", `GUEST_SS_AR_BYTES=${hex(ss.ar)}: SS.DPL must be 0 when CS type is 3 or CR0.PE is 0`);
    if (!ug && (badDataDpl(ds) || badDataDpl(es) || badDataDpl(fs) || badDataDpl(gs))) {
      const bd = [ds, es, fs, gs].filter(badDataDpl);
      report(ctx, "GUEST.SEG.DATA.DPL_GE_RPL", `${bd.map((s) => `${segName(s, "AR_BYTES")}=${hex(s.ar)} (RPL ${s.sel & 3})`).join(", ")}: DPL must be ≥ RPL`);
    }
    if (!(and & 0x80)) {
      const bp = [cs, ss, ds, es, fs, gs].filter((s) => s === cs || s.usable).filter((s) => !s.p);
      report(ctx, "GUEST.SEG.P_BIT", `${bp.map((s) => `${segName(s, "AR_BYTES")}=${hex(s.ar)}`).join(", ")}: P must be 1`);
    }
    if (or & 0xf00) {
      const br = [cs, ss, ds, es, fs, gs].filter((s) => s === cs || s.usable).filter((s) => s.ar & 0xf00);
      report(ctx, "GUEST.SEG.AR_RSVD_11_8", `${br.map((s) => `${segName(s, "AR_BYTES")}=${hex(s.ar)}`).join(", ")}: bits 11:8 must be 0`);
    }
    if (ia32e && cs.l && cs.db) report(ctx, "GUEST.SEG.CS.DB_WITH_L", `GUEST_CS_AR_BYTES=${hex(cs.ar)}: D/B must be 0 when L = 1`);
    if (!gran) {
      const bg = [cs, ss, ds, es, fs, gs].filter((s) => s === cs || s.usable).filter((s) => !granularityOk(s));
      report(ctx, "GUEST.SEG.GRANULARITY", `${bg.map((s) => `${segName(s, "LIMIT")}=${hex(s.limit)} G=${s.g}`).join(", ")}: G inconsistent with limit`);
    }
    if (or & 0xfffe_0000) {
      const bh = [cs, ss, ds, es, fs, gs].filter((s) => s === cs || s.usable).filter((s) => s.ar & 0xfffe_0000);
      report(ctx, "GUEST.SEG.AR_RSVD_31_17", `${bh.map((s) => `${segName(s, "AR_BYTES")}=${hex(s.ar)}`).join(", ")}: bits 31:17 must be 0`);
    }
  }
  const fred64 = ia32e && fredOn;
  if (fred64 && (!(ss.dpl === 0 || ss.dpl === 3) || (ss.dpl === 3 && rfLo & G.RF_IOPL))) {
    report(ctx, "GUEST.SEG.FRED.SS_DPL", `GUEST_SS_AR_BYTES=${hex(ss.ar)}, GUEST_RFLAGS=${hexSlot(ctx, SLOT.G_RFLAGS)}: with CR4.FRED SS.DPL must be 0 or 3 (and IOPL 0 at 3)`);
  }
  // FRED event delivery has no compatibility-mode ring 0: CPL 0 runs 64-bit code.
  if (fred64 && ss.dpl === 0 && !cs.l) {
    report(ctx, "GUEST.SEG.FRED.CPL0_64BIT", `GUEST_CS_AR_BYTES=${hex(cs.ar)}, GUEST_SS_AR_BYTES=${hex(ss.ar)}: with CR4.FRED and SS.DPL 0, CS.L must be 1`);
  }
  // TR
  if (!(tr.type === 11 || (!ia32e && tr.type === 3))) report(ctx, "GUEST.SEG.TR.TYPE", `GUEST_TR_AR_BYTES=${hex(tr.ar)}: type ${tr.type} must be 11${ia32e ? "" : " or 3"}`);
  if (tr.s) report(ctx, "GUEST.SEG.TR.S", `GUEST_TR_AR_BYTES=${hex(tr.ar)}: S must be 0`);
  if (!tr.p) report(ctx, "GUEST.SEG.TR.P", `GUEST_TR_AR_BYTES=${hex(tr.ar)}: P must be 1`);
  if (tr.ar & 0xf00) report(ctx, "GUEST.SEG.TR.AR_RSVD_11_8", `GUEST_TR_AR_BYTES=${hex(tr.ar)}: bits 11:8 must be 0`);
  if (!granularityOk(tr)) report(ctx, "GUEST.SEG.TR.GRANULARITY", `GUEST_TR_LIMIT=${hex(tr.limit)}, G=${tr.g}: G inconsistent with limit`);
  if (!tr.usable) report(ctx, "GUEST.SEG.TR.USABLE", `GUEST_TR_AR_BYTES=${hex(tr.ar)}: TR must be usable`);
  if (tr.ar & 0xfffe_0000) report(ctx, "GUEST.SEG.TR.AR_RSVD_31_17", `GUEST_TR_AR_BYTES=${hex(tr.ar)}: bits 31:17 must be 0`);
  // LDTR
  if (ldtr.usable) {
    if (ldtr.type !== 2) report(ctx, "GUEST.SEG.LDTR.TYPE", `GUEST_LDTR_AR_BYTES=${hex(ldtr.ar)}: type ${ldtr.type} must be 2`);
    if (ldtr.s) report(ctx, "GUEST.SEG.LDTR.S", `GUEST_LDTR_AR_BYTES=${hex(ldtr.ar)}: S must be 0`);
    if (!ldtr.p) report(ctx, "GUEST.SEG.LDTR.P", `GUEST_LDTR_AR_BYTES=${hex(ldtr.ar)}: P must be 1`);
    if (ldtr.ar & 0xf00) report(ctx, "GUEST.SEG.LDTR.AR_RSVD_11_8", `GUEST_LDTR_AR_BYTES=${hex(ldtr.ar)}: bits 11:8 must be 0`);
    if (!granularityOk(ldtr)) report(ctx, "GUEST.SEG.LDTR.GRANULARITY", `GUEST_LDTR_LIMIT=${hex(ldtr.limit)}, G=${ldtr.g}: G inconsistent with limit`);
    if (ldtr.ar & 0xfffe_0000) report(ctx, "GUEST.SEG.LDTR.AR_RSVD_31_17", `GUEST_LDTR_AR_BYTES=${hex(ldtr.ar)}: bits 31:17 must be 0`);
  }

  // §26.3.1.3 GDTR/IDTR
  if (!canonSlot(ctx, SLOT.G_GDTR_BASE, la) || !canonSlot(ctx, SLOT.G_IDTR_BASE, la)) {
    report(ctx, "GUEST.DTR.BASE_CANONICAL", `GUEST_GDTR_BASE=${hex(st.getSlot(SLOT.G_GDTR_BASE))}, GUEST_IDTR_BASE=${hex(st.getSlot(SLOT.G_IDTR_BASE))}: must be canonical`);
  }
  const gl = lo(ctx, SLOT.G_GDTR_LIMIT);
  const il = lo(ctx, SLOT.G_IDTR_LIMIT);
  if ((gl | il) & 0xffff_0000) report(ctx, "GUEST.DTR.LIMIT_HIGH_ZERO", `GUEST_GDTR_LIMIT=${hex(gl)}, GUEST_IDTR_LIMIT=${hex(il)}: bits 31:16 must be 0`);

  // §26.3.1.4 RIP and RFLAGS
  const code64 = ia32e && cs.l === 1;
  if (!code64 && hi(ctx, SLOT.G_RIP) !== 0) report(ctx, "GUEST.RIP.HIGH_ZERO", `GUEST_RIP=${hex(st.getSlot(SLOT.G_RIP))}: bits 63:32 must be 0 outside 64-bit code`);
  const ripWidth = cr4Lo & W.CR4_LA57 ? 57 : 48;
  if (code64 && !canonSlot(ctx, SLOT.G_RIP, ripWidth)) report(ctx, "GUEST.RIP.CANONICAL", `GUEST_RIP=${hex(st.getSlot(SLOT.G_RIP))}: not canonical (${ripWidth}-bit linear addresses)`);
  if (rfLo & RFLAGS_RSVD.lo || hi(ctx, SLOT.G_RFLAGS) & RFLAGS_RSVD.hi || !(rfLo & G.RF_FIXED1)) report(ctx, "GUEST.RFLAGS.RESERVED", `GUEST_RFLAGS=${hexSlot(ctx, SLOT.G_RFLAGS)}: bits 63:22, 15, 5, 3 must be 0 and bit 1 must be 1`);
  if (v86 && (ia32e || !pe)) report(ctx, "GUEST.RFLAGS.VM", `GUEST_RFLAGS=${hexSlot(ctx, SLOT.G_RFLAGS)}: VM must be 0 for an IA-32e guest or with CR0.PE = 0`);
  const injExt = injecting && injType === 0;
  const rfIf = (rfLo & G.RF_IF) !== 0;
  if (injExt && !rfIf) report(ctx, "GUEST.RFLAGS.IF_FOR_EXTINT", `GUEST_RFLAGS=${hexSlot(ctx, SLOT.G_RFLAGS)}: IF must be 1 when injecting an external interrupt`);

  // §26.3.1.5 activity state
  if (activity > 3 || !((k.activityStates >>> activity) & 1)) {
    report(ctx, "GUEST.ACTIVITY.VALID", `GUEST_ACTIVITY_STATE=${activity}: not a supported activity state (IA32_VMX_MISC[8:6])`);
  }
  if (activity === ACTIVITY.HLT && ss.dpl !== 0) report(ctx, "GUEST.ACTIVITY.HLT_REQUIRES_SS_DPL0", `GUEST_ACTIVITY_STATE=1 with GUEST_SS_AR_BYTES=${hex(ss.ar)}: SS.DPL must be 0`);
  if ((sti || movss) && activity !== ACTIVITY.ACTIVE) {
    report(ctx, "GUEST.ACTIVITY.BLOCKING_REQUIRES_ACTIVE", `GUEST_INTERRUPTIBILITY_INFO=${hex(intr)}: STI/MOV-SS blocking requires activity state 0, not ${activity}`);
  }
  if (injecting) {
    if (activity === ACTIVITY.HLT) {
      const ok = injType === 0 || injType === 2 || (injType === 3 && (injVector === 1 || injVector === 18)) || (injType === 7 && injVector === 0);
      if (!ok) report(ctx, "GUEST.ACTIVITY.HLT_INJECTION", `VM_ENTRY_INTR_INFO_FIELD=${hex(info >>> 0)}: this event cannot be injected into the HLT state`);
    }
    if (activity === ACTIVITY.SHUTDOWN && !(injType === 2 || (injType === 3 && injVector === 18))) {
      report(ctx, "GUEST.ACTIVITY.SHUTDOWN_INJECTION", `VM_ENTRY_INTR_INFO_FIELD=${hex(info >>> 0)}: only NMI or #MC can be injected into the shutdown state`);
    }
    if (activity === ACTIVITY.WAIT_SIPI) report(ctx, "GUEST.ACTIVITY.WFS_NO_INJECTION", `VM_ENTRY_INTR_INFO_FIELD=${hex(info >>> 0)}: no event can be injected into wait-for-SIPI`);
  }
  const entryToSmm = (entry & ENTRY.ENTRY_TO_SMM) !== 0;
  if (entryToSmm && activity === ACTIVITY.WAIT_SIPI) report(ctx, "GUEST.ACTIVITY.SMM_NOT_WFS", "GUEST_ACTIVITY_STATE=3: not allowed with entry to SMM");

  // §26.3.1.5 interruptibility state
  const rsvdMask = caps.cpu.enclaveInterruption ? 0xffff_ffe0 : 0xffff_fff0;
  if (intr & rsvdMask) report(ctx, "GUEST.INTR.RESERVED", `GUEST_INTERRUPTIBILITY_INFO=${hex(intr)}: bits 31:${caps.cpu.enclaveInterruption ? 5 : 4} must be 0`);
  if (sti && movss) report(ctx, "GUEST.INTR.STI_MOVSS_EXCLUSIVE", `GUEST_INTERRUPTIBILITY_INFO=${hex(intr)}: STI and MOV-SS blocking both set`);
  if (sti && !rfIf) report(ctx, "GUEST.INTR.STI_REQUIRES_IF", `GUEST_INTERRUPTIBILITY_INFO=${hex(intr)}: STI blocking with RFLAGS.IF = 0`);
  if (injExt && (sti || movss)) report(ctx, "GUEST.INTR.EXTINT_NO_BLOCKING", `GUEST_INTERRUPTIBILITY_INFO=${hex(intr)}: STI/MOV-SS blocking while injecting an external interrupt`);
  const injNmi = injecting && injType === 2;
  if (injNmi && movss) report(ctx, "GUEST.INTR.NMI_NO_MOVSS", `GUEST_INTERRUPTIBILITY_INFO=${hex(intr)}: MOV-SS blocking while injecting an NMI`);
  const smiBlock = (intr & INTERRUPTIBILITY.SMI) !== 0;
  if (smiBlock && !ctx.env.inSmm) report(ctx, "GUEST.INTR.SMI_ONLY_IN_SMM", `GUEST_INTERRUPTIBILITY_INFO=${hex(intr)}: SMI blocking outside SMM`);
  if (entryToSmm && !smiBlock) report(ctx, "GUEST.INTR.SMI_IF_ENTRY_TO_SMM", `GUEST_INTERRUPTIBILITY_INFO=${hex(intr)}: entry to SMM requires SMI blocking`);
  if (pin & PIN.VIRTUAL_NMIS && injNmi && intr & INTERRUPTIBILITY.NMI) {
    report(ctx, "GUEST.INTR.VNMI_INJECT_NOT_BLOCKED", `GUEST_INTERRUPTIBILITY_INFO=${hex(intr)}: NMI blocking set while injecting an NMI with virtual NMIs`);
  }
  if (caps.cpu.enclaveInterruption && intr & INTERRUPTIBILITY.ENCLAVE_INTERRUPTION && movss) {
    report(ctx, "GUEST.INTR.ENCLAVE", `GUEST_INTERRUPTIBILITY_INFO=${hex(intr)}: enclave interruption with MOV-SS blocking`);
  }
  if (ia32e && fredOn && ss.dpl === 3 && sti) report(ctx, "GUEST.INTR.FRED_NO_STI_AT_CPL3", `GUEST_INTERRUPTIBILITY_INFO=${hex(intr)}: STI blocking at CPL 3 with CR4.FRED`);

  // §26.3.1.5 pending debug exceptions
  const pdeLo = lo(ctx, SLOT.G_PDE);
  if (anyOf(ctx, SLOT.G_PDE, PDE_RSVD)) report(ctx, "GUEST.PDE.RESERVED", `GUEST_PENDING_DBG_EXCEPTIONS=${hexSlot(ctx, SLOT.G_PDE)}: reserved bits ${hex(st.getSlot(SLOT.G_PDE) & PDE_RESERVED)} set`);
  if (sti || movss || activity === ACTIVITY.HLT) {
    const tf = (rfLo & G.RF_TF) !== 0;
    const btf = (debugctlLo & G.DEBUGCTL_BTF) !== 0;
    const bs = (pdeLo & (1 << 14)) !== 0;
    if (tf && !btf ? !bs : bs) {
      report(ctx, "GUEST.PDE.BS_CONSISTENCY", `GUEST_PENDING_DBG_EXCEPTIONS=${hexSlot(ctx, SLOT.G_PDE)}: BS must be ${tf && !btf ? 1 : 0} with RFLAGS.TF=${tf ? 1 : 0}, DEBUGCTL.BTF=${btf ? 1 : 0}`);
    }
  }
  if (pdeLo & (1 << 16)) {
    if (pdeLo & 0xf || pdeLo & (1 << 14) || !(pdeLo & (1 << 12)) || !caps.cpu.rtm || movss) {
      report(ctx, "GUEST.PDE.RTM", `GUEST_PENDING_DBG_EXCEPTIONS=${hexSlot(ctx, SLOT.G_PDE)}: RTM (bit 16) needs bit 12 set, bits 3:0 and 14 clear, RTM support and no MOV-SS blocking`);
    }
  }

  // §26.3.1.5 VMCS link pointer
  if (lo(ctx, SLOT.LINK) !== 0xffff_ffff || hi(ctx, SLOT.LINK) !== 0xffff_ffff) {
    const link = st.getSlot(SLOT.LINK);
    if (link & 0xfffn) report(ctx, "GUEST.LINK.ALIGN", `VMCS_LINK_POINTER=${hex(link)}: must be 4-KByte aligned`);
    if (link >> BigInt(ctx.maxPhys)) report(ctx, "GUEST.LINK.PHYS_WIDTH", `VMCS_LINK_POINTER=${hex(link)}: bits at or above MAXPHYADDR set`);
    const hdr = (link & 0xfffn) === 0n ? readMem(ctx, link, 4) : undefined;
    if (hdr !== undefined) {
      const rev = Number(hdr & 0x7fff_ffffn);
      if (rev !== k.revisionId) report(ctx, "GUEST.LINK.REVISION", `VMCS_LINK_POINTER=${hex(link)}: revision ID ${hex(rev)} ≠ ${hex(k.revisionId)}`);
      const shadow = (hdr >> 31n) & 1n;
      const want = proc2 & PROC2.VMCS_SHADOWING ? 1n : 0n;
      if (shadow !== want) report(ctx, "GUEST.LINK.SHADOW_BIT", `VMCS_LINK_POINTER=${hex(link)}: shadow-VMCS indicator ${shadow} ≠ VMCS shadowing ${want}`);
    }
    const inSmm = ctx.env.inSmm ?? false;
    if ((!inSmm || entryToSmm) && ctx.env.currentVmcsPointer !== undefined && link === ctx.env.currentVmcsPointer) {
      report(ctx, "GUEST.LINK.NOT_CURRENT_VMCS", `VMCS_LINK_POINTER=${hex(link)}: equals the current-VMCS pointer`);
    }
    if (inSmm && !entryToSmm && link === st.getSlot(SLOT.EXECUTIVE_VMCS)) {
      report(ctx, "GUEST.LINK.NOT_EXECUTIVE_VMCS", `VMCS_LINK_POINTER=${hex(link)}: equals EXECUTIVE_VMCS_POINTER`);
    }
  }

  // §26.3.1.6 PDPTEs (PAE paging: CR0.PG, CR4.PAE, not IA-32e)
  if (pg && cr4Lo & W.CR4_PAE && !ia32e) {
    const rsvd = 0x1e6n | (U64 & ~((1n << BigInt(ctx.maxPhys)) - 1n));
    if (ept) {
      const bad: string[] = [];
      for (let i = 0; i < 4; i++) {
        const p = st.getSlot(SLOT.G_PDPTE0 + i);
        if (p & 1n && p & rsvd) bad.push(`GUEST_PDPTR${i}=${hex(p)}`);
      }
      if (bad.length) report(ctx, "GUEST.PDPTE.EPT_FIELDS", `${bad.join(", ")}: reserved bits 2:1, 8:5 or ≥ MAXPHYADDR set`);
    } else {
      const cr3 = st.getSlot(SLOT.G_CR3);
      const base = cr3 & 0xffff_ffe0n;
      const bad: string[] = [];
      for (let i = 0; i < 4; i++) {
        const p = readMem(ctx, base + BigInt(i * 8), 8);
        if (p !== undefined && p & 1n && p & rsvd) bad.push(`PDPTE${i}@${hex(base + BigInt(i * 8))}=${hex(p)}`);
      }
      if (bad.length) report(ctx, "GUEST.PDPTE.FROM_CR3", `GUEST_CR3=${hex(cr3)}: ${bad.join(", ")}: reserved bits set`);
    }
  }
}
