import { CR0, CR4, EFER, ENTRY, EXIT, EXIT2 } from "../../src/bits/index.js";
import { type Ctx, HOST_SEL_SLOTS, HOST_SELECTORS, hex, isCanonical, patValid, report, SLOT } from "./context.js";

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

function fredState(ctx: Ctx, id: string, prefix: "GUEST" | "HOST", configSlot: number): void {
  const st = ctx.st;
  const cfg = st.getSlot(configSlot);
  const bad: string[] = [];
  if (cfg & FRED_CONFIG_RESERVED || !isCanonical(cfg & ~0xfffn, ctx.laWidth)) bad.push(`${prefix}_IA32_FRED_CONFIG=${hex(cfg)}`);
  // RSP1..3 follow CONFIG in the encoding order, then STKLVLS, then SSP1..3 (see fields.ts).
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
  const { st, caps, exit, entry } = ctx;
  const la = ctx.laWidth;
  const cr0 = st.getSlot(SLOT.H_CR0);
  const cr3 = st.getSlot(SLOT.H_CR3);
  const cr4 = st.getSlot(SLOT.H_CR4);
  const m = caps.msrs;
  const asz = (exit & EXIT.HOST_ADDR_SPACE_SIZE) !== 0;
  const ia32eGuest = (entry & ENTRY.IA32E_MODE_GUEST) !== 0;

  // §26.2.2
  if ((cr0 & m.IA32_VMX_CR0_FIXED0) !== m.IA32_VMX_CR0_FIXED0 || (cr0 & ~m.IA32_VMX_CR0_FIXED1 & U64) !== 0n) {
    report(ctx, "HOST.CR0.FIXED", `HOST_CR0=${hex(cr0)}: must set ${hex(m.IA32_VMX_CR0_FIXED0)} and stay within ${hex(m.IA32_VMX_CR0_FIXED1)}`);
  }
  if ((cr4 & m.IA32_VMX_CR4_FIXED0) !== m.IA32_VMX_CR4_FIXED0 || (cr4 & ~m.IA32_VMX_CR4_FIXED1 & U64) !== 0n) {
    report(ctx, "HOST.CR4.FIXED", `HOST_CR4=${hex(cr4)}: must set ${hex(m.IA32_VMX_CR4_FIXED0)} and stay within ${hex(m.IA32_VMX_CR4_FIXED1)}`);
  }
  const cr3Checked = caps.cpu.lam ? cr3 & ~(3n << 61n) : cr3;
  if (cr3Checked >> ctx.maxPhys !== 0n) report(ctx, "HOST.CR3.PHYS_WIDTH", `HOST_CR3=${hex(cr3)}: bits at or above MAXPHYADDR (${ctx.maxPhys}) set`);
  if (cr4 & CR4.CET && !(cr0 & CR0.WP)) report(ctx, "HOST.CR4.CET_REQUIRES_WP", `HOST_CR4=${hex(cr4)}: CR4.CET with HOST_CR0=${hex(cr0)} lacking WP`);
  const sEsp = st.getSlot(SLOT.H_SYSENTER_ESP);
  if (!isCanonical(sEsp, la)) report(ctx, "HOST.SYSENTER_ESP.CANONICAL", `HOST_IA32_SYSENTER_ESP=${hex(sEsp)}: not canonical`);
  const sEip = st.getSlot(SLOT.H_SYSENTER_EIP);
  if (!isCanonical(sEip, la)) report(ctx, "HOST.SYSENTER_EIP.CANONICAL", `HOST_IA32_SYSENTER_EIP=${hex(sEip)}: not canonical`);
  if (exit & EXIT.LOAD_CET_STATE) {
    const sCet = st.getSlot(SLOT.H_S_CET);
    const r = sCet & ctx.rsvd.sCet;
    if (r || !isCanonical(sCet, la)) report(ctx, "HOST.CET.S_CET", `HOST_S_CET=${hex(sCet)}: must be canonical with reserved bits ${hex(r || S_CET_RESERVED)} clear (bits 9:6, and those CPUID CET_SS/CET_IBT do not enumerate)`);
    if ((sCet & S_CET_SUPPRESS_TRACKER) === S_CET_SUPPRESS_TRACKER) {
      report(ctx, "HOST.CET.S_CET_SUPPRESS_TRACKER", `HOST_S_CET=${hex(sCet)}: SUPPRESS (bit 10) and TRACKER (bit 11) both set`);
    }
    const isst = st.getSlot(SLOT.H_ISST);
    if (!isCanonical(isst, la)) report(ctx, "HOST.CET.ISST", `HOST_INTR_SSP_TABLE=${hex(isst)}: not canonical`);
    const ssp = st.getSlot(SLOT.H_SSP);
    if ((ssp & 3n) !== 0n || (asz ? !isCanonical(ssp, la) : false)) {
      report(ctx, "HOST.CET.SSP", `HOST_SSP=${hex(ssp)}: must be 4-byte aligned${asz ? " and canonical" : ""}`);
    }
  }
  if (exit & EXIT.LOAD_IA32_PERF_GLOBAL_CTRL) {
    const v = st.getSlot(SLOT.H_PERF);
    const r = perfGlobalCtrlReserved(caps.cpu.pmuGpCounters, caps.cpu.pmuFixedCounters);
    if (v & r) report(ctx, "HOST.PERF_GLOBAL_CTRL.RESERVED", `HOST_IA32_PERF_GLOBAL_CTRL=${hex(v)}: reserved bits ${hex(v & r)} set`);
  }
  if (exit & EXIT.LOAD_IA32_PAT) {
    const pat = st.getSlot(SLOT.H_PAT);
    if (!patValid(pat)) report(ctx, "HOST.PAT.VALID", `HOST_IA32_PAT=${hex(pat)}: every byte must be 0, 1, 4, 5, 6 or 7`);
  }
  if (exit & EXIT.LOAD_IA32_EFER) {
    const efer = st.getSlot(SLOT.H_EFER);
    const rsv = efer & ~ctx.rsvd.eferDefined & U64;
    if (rsv) report(ctx, "HOST.EFER.RESERVED", `HOST_IA32_EFER=${hex(efer)}: reserved bits ${hex(rsv)} set`);
    const lma = (efer & EFER.LMA) !== 0n;
    const lme = (efer & EFER.LME) !== 0n;
    if (lma !== asz || lme !== asz) report(ctx, "HOST.EFER.LMA_LME", `HOST_IA32_EFER=${hex(efer)}: LMA and LME must both be ${asz ? 1 : 0} (host address-space size)`);
  }
  if (exit & EXIT.LOAD_PKRS) {
    const v = st.getSlot(SLOT.H_PKRS);
    if (v >> 32n) report(ctx, "HOST.PKRS.RESERVED", `HOST_IA32_PKRS=${hex(v)}: bits 63:32 must be 0`);
  }
  // FRED state is loaded (and checked) only for a 64-bit host; a 32-bit host may not have CR4.FRED.
  if (asz && exit & EXIT.ACTIVATE_SECONDARY_CONTROLS && ctx.exit2 & EXIT2.LOAD_IA32_FRED) fredState(ctx, "HOST.FRED.STATE", "HOST", SLOT.H_FRED_CONFIG);

  // §26.2.3
  const badSel: string[] = [];
  for (let i = 0; i < HOST_SEL_SLOTS.length; i++) {
    const sel = Number(st.getSlot(HOST_SEL_SLOTS[i]!));
    if (sel & 7) badSel.push(`HOST_${HOST_SELECTORS[i]}_SELECTOR=${hex(sel)}`);
  }
  if (badSel.length) report(ctx, "HOST.SEL.RPL_TI_ZERO", `${badSel.join(", ")}: RPL and TI must be 0`);
  const cs = Number(st.getSlot(HOST_SEL_SLOTS[1]!));
  const ss = Number(st.getSlot(HOST_SEL_SLOTS[2]!));
  const tr = Number(st.getSlot(HOST_SEL_SLOTS[6]!));
  if (cs === 0) report(ctx, "HOST.SEL.CS_NONZERO", "HOST_CS_SELECTOR=0x0: must not be 0");
  if (tr === 0) report(ctx, "HOST.SEL.TR_NONZERO", "HOST_TR_SELECTOR=0x0: must not be 0");
  if (ss === 0 && !asz) report(ctx, "HOST.SEL.SS_NONZERO_IF_32BIT", "HOST_SS_SELECTOR=0x0: must not be 0 when host address-space size is 0");
  if (caps.cpu.intel64) {
    const bases: [string, number][] = [
      ["HOST_FS_BASE", SLOT.H_FS_BASE],
      ["HOST_GS_BASE", SLOT.H_GS_BASE],
      ["HOST_GDTR_BASE", SLOT.H_GDTR_BASE],
      ["HOST_IDTR_BASE", SLOT.H_IDTR_BASE],
      ["HOST_TR_BASE", SLOT.H_TR_BASE],
    ];
    const bad = bases.filter(([, s]) => !isCanonical(st.getSlot(s), la)).map(([n, s]) => `${n}=${hex(st.getSlot(s))}`);
    if (bad.length) report(ctx, "HOST.BASE.CANONICAL", `${bad.join(", ")}: not canonical`);
  }

  // §26.2.4
  const rip = st.getSlot(SLOT.H_RIP);
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
    if (ia32eGuest) report(ctx, "HOST.ASZ.H32_NO_IA32E_GUEST", `VM_ENTRY_CONTROLS=${hex(entry)}: IA-32e mode guest with a 32-bit host`);
    if (cr4 & CR4.PCIDE) report(ctx, "HOST.ASZ.H32_NO_PCIDE", `HOST_CR4=${hex(cr4)}: PCIDE must be 0 for a 32-bit host`);
    if (cr4 & CR4.FRED) report(ctx, "HOST.ASZ.H32_NO_FRED", `HOST_CR4=${hex(cr4)}: FRED (bit 32) must be 0 for a 32-bit host`);
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
    if (!(cr4 & CR4.PAE)) report(ctx, "HOST.ASZ.H64_PAE", `HOST_CR4=${hex(cr4)}: PAE must be 1 for a 64-bit host`);
    const w = cr4 & CR4.LA57 ? 57 : 48;
    if (!isCanonical(rip, w)) report(ctx, "HOST.ASZ.H64_RIP_CANONICAL", `HOST_RIP=${hex(rip)}: not canonical (${w}-bit linear addresses)`);
  }
}
