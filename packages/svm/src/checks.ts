import { CR0_MBZ, canonicalize, DR6_MBZ, DR7_MBZ, linearAddressWidth } from "@tsvmm/abi";
import { ATTRIB, CR0, CR4, EFER, EVENT, EVENT_TYPE, INTERCEPT_MISC2, NESTED_CTL, S_CET, VECTOR } from "./bits.js";
import { capsProblem, cr4Allowed, eferAllowed, hasFeature, type SvmCaps } from "./caps.js";
import { VmcbState } from "./state.js";

/**
 * The VMRUN consistency-check catalog: stable ids (the README table lists each with its test),
 * the AMD64 APM vol. 2 section (numbering of revisions 3.3x–3.4x), and the rule. "15.5.1" is the
 * list under "Canonicalization and Consistency Checks" in the VMRUN basic-operation section.
 */
export type CheckArea = "control" | "save";

export interface CheckInfo {
  readonly id: string;
  readonly apm: string;
  readonly area: CheckArea;
  readonly title: string;
}

type Row = readonly [id: string, apm: string, title: string];

const ROWS: readonly Row[] = [
  ["svm.ctrl.vmrun-intercept", "15.5.1", "the VMRUN intercept bit (010h bit 0) is set"],
  ["svm.ctrl.asid-zero", "15.5.1", "guest ASID is not 0 (the host's ASID)"],
  ["svm.ctrl.iopm-base", "15.5.1, 15.10.1", "the 12-KiB IOPM at IOPM_BASE_PA[63:12] ends below 2^MAXPHYADDR"],
  ["svm.ctrl.msrpm-base", "15.5.1, 15.11", "the 8-KiB MSRPM at MSRPM_BASE_PA[63:12] ends below 2^MAXPHYADDR"],
  ["svm.ctrl.eventinj-type", "15.20", "EVENTINJ.V=1: TYPE is 0 (INTR), 2 (NMI), 3 (exception) or 4 (software interrupt)"],
  ["svm.ctrl.eventinj-vector", "15.20", "EVENTINJ.V=1, TYPE=3: VECTOR is an exception the CPU defines (never 2 (NMI) or a reserved vector)"],
  ["svm.ctrl.eventinj-reserved", "15.20", "EVENTINJ.V=1: reserved bits 30:12 are 0"],
  ["svm.ctrl.np-unsupported", "15.25.3", "NP_ENABLE only when CPUID Fn8000_000A_EDX[NP]=1"],
  ["svm.ctrl.np-host-paging", "15.25.3", "NP_ENABLE requires host CR0.PG=1 at VMRUN"],
  ["svm.ctrl.np-ncr3", "15.25.4", "NP_ENABLE: nCR3 bits 63:MAXPHYADDR are 0"],
  ["svm.save.gpat", "15.25.4", "NP_ENABLE: every G_PAT entry is a valid memory type (0, 1, 4, 5, 6, 7)"],
  ["svm.save.efer-svme", "15.5.1", "EFER.SVME is 1"],
  ["svm.save.efer-mbz", "15.5.1", "EFER must-be-zero bits are 0 (bits the CPU's CPUID does not define)"],
  ["svm.save.efer-lm-unsupported", "15.5.1", "EFER.LME and EFER.LMA are 0 on a CPU without long mode"],
  ["svm.save.cr0-cd-nw", "15.5.1", "not CR0.CD=0 with CR0.NW=1"],
  ["svm.save.cr0-high", "15.5.1", "CR0[63:32] are 0"],
  ["svm.save.cr3-mbz", "15.5.1", "EFER.LME=1 and CR0.PG=1: CR3 bits 63:MAXPHYADDR are 0"],
  ["svm.save.cr4-mbz", "15.5.1", "CR4 must-be-zero bits are 0 (bits the CPU's CPUID does not enable)"],
  ["svm.save.dr6-high", "15.5.1", "DR6[63:32] are 0"],
  ["svm.save.dr7-high", "15.5.1", "DR7[63:32] are 0"],
  ["svm.save.lme-pg-no-pae", "15.5.1", "EFER.LME=1 and CR0.PG=1 require CR4.PAE=1"],
  ["svm.save.lme-pg-no-pe", "15.5.1", "EFER.LME=1 and CR0.PG=1 require CR0.PE=1"],
  ["svm.save.lme-pg-pae-cs-ld", "15.5.1", "EFER.LME, CR0.PG and CR4.PAE all 1: not CS.L=1 with CS.D=1"],
  ["svm.save.cr4-cet-wp", "15.5.1", "CR4.CET=1 requires CR0.WP=1"],
  ["svm.save.s-cet-mbz", "15.5.1", "S_CET reserved bits 63:2 are 0 (CPU with shadow stacks)"],
];

export const CHECKS: readonly CheckInfo[] = Object.freeze(
  ROWS.map(([id, apm, title]) => Object.freeze({ id, apm, title, area: (id.startsWith("svm.ctrl.") ? "control" : "save") as CheckArea })),
);

const BY_ID = new Map(CHECKS.map((c) => [c.id, c]));

export function checkInfo(id: string): CheckInfo | undefined {
  return BY_ID.get(id);
}

/** One failed check: its catalog id, APM section and a message naming the field and value. */
export interface Violation {
  id: string;
  apm: string;
  message: string;
}

/** The VMRUN environment that is not in the VMCB. */
export interface VmrunEnv {
  /** Host CR0.PG when VMRUN executes (default true: a 64-bit hypervisor pages). */
  hostPaging?: boolean;
}

/** Pseudo-ids reported when the input itself is unusable (never thrown). */
export const INPUT_INVALID_VMCB = "input.invalid-vmcb";
export const INPUT_INVALID_CAPS = "input.invalid-caps";

/** Size of the I/O and MSR permission maps (APM §15.10.1, §15.11). */
export const IOPM_SIZE = 0x3000;
export const MSRPM_SIZE = 0x2000;

/** Reserved vectors (APM vol. 2 table 8-1) and NMI; #CP and #VC depend on CPUID. */
function exceptionVectorValid(v: number, caps: SvmCaps): boolean {
  if (v === VECTOR.CP) return caps.cpu.shstk;
  if (v === VECTOR.VC) return caps.cpu.sevEs;
  return v < 32 && ![VECTOR.NMI, 9, 15, 20, 22, 23, 24, 25, 26, 27, 31].includes(v as never);
}

/** PAT entries 0 UC, 1 WC, 4 WT, 5 WP, 6 WB, 7 UC-; 2, 3 and 8–255 are invalid. */
export function patValid(pat: bigint): boolean {
  for (let i = 0n; i < 64n; i += 8n) {
    const t = Number((pat >> i) & 0xffn);
    if (t > 7 || t === 2 || t === 3) return false;
  }
  return true;
}

const hex = (v: bigint | number): string => `0x${v.toString(16)}`;

function run(s: VmcbState, caps: SvmCaps, env: VmrunEnv, out: Violation[]): void {
  const report = (id: string, message: string): void => {
    out.push({ id, apm: BY_ID.get(id)!.apm, message });
  };
  const maxPhys = BigInt(caps.cpu.maxPhysAddr);
  const limit = 1n << maxPhys;

  // Control area.
  const misc2 = Number(s.get("control.interceptMisc2"));
  if ((misc2 & INTERCEPT_MISC2.VMRUN) === 0) report("svm.ctrl.vmrun-intercept", `control.interceptMisc2=${hex(misc2)}: bit 0 (VMRUN) must be 1`);
  const asid = s.get("control.guestAsid");
  if (asid === 0n) report("svm.ctrl.asid-zero", "control.guestAsid=0x0: ASID 0 belongs to the host");
  const iopm = s.get("control.iopmBasePa");
  if ((iopm & ~0xfffn) + BigInt(IOPM_SIZE) > limit) report("svm.ctrl.iopm-base", `control.iopmBasePa=${hex(iopm)}: the IOPM reaches past 2^${maxPhys}`);
  const msrpm = s.get("control.msrpmBasePa");
  if ((msrpm & ~0xfffn) + BigInt(MSRPM_SIZE) > limit) report("svm.ctrl.msrpm-base", `control.msrpmBasePa=${hex(msrpm)}: the MSRPM reaches past 2^${maxPhys}`);

  const ev = s.get("control.eventInj");
  if (ev & EVENT.VALID) {
    const type = Number((ev & EVENT.TYPE_MASK) >> EVENT.TYPE_SHIFT);
    const vector = Number(ev & EVENT.VECTOR_MASK);
    if (![EVENT_TYPE.INTR, EVENT_TYPE.NMI, EVENT_TYPE.EXCEPTION, EVENT_TYPE.SOFTWARE_INT].includes(type as never)) {
      report("svm.ctrl.eventinj-type", `control.eventInj=${hex(ev)}: TYPE ${type} is reserved`);
    } else if (type === EVENT_TYPE.EXCEPTION && !exceptionVectorValid(vector, caps)) {
      report("svm.ctrl.eventinj-vector", `control.eventInj=${hex(ev)}: vector ${vector} is not an exception this CPU delivers`);
    }
    if (ev & EVENT.RESERVED_MASK) report("svm.ctrl.eventinj-reserved", `control.eventInj=${hex(ev)}: bits 30:12 must be 0`);
  }

  const nested = s.get("control.nestedCtl");
  if (nested & NESTED_CTL.NP_ENABLE) {
    if (!hasFeature(caps, "NP")) {
      report("svm.ctrl.np-unsupported", `control.nestedCtl=${hex(nested)}: NP_ENABLE on a CPU without nested paging`);
    } else {
      if (env.hostPaging === false) report("svm.ctrl.np-host-paging", `control.nestedCtl=${hex(nested)}: NP_ENABLE while host CR0.PG=0`);
      const ncr3 = s.get("control.nCr3");
      if (ncr3 >> maxPhys !== 0n) report("svm.ctrl.np-ncr3", `control.nCr3=${hex(ncr3)}: bits 63:${maxPhys} must be 0`);
      const gpat = s.get("save.gPat");
      if (!patValid(gpat)) report("svm.save.gpat", `save.gPat=${hex(gpat)}: an entry is not a valid memory type`);
    }
  }

  // State-save area.
  const efer = s.get("save.efer");
  const cr0 = s.get("save.cr0");
  const cr3 = s.get("save.cr3");
  const cr4 = s.get("save.cr4");
  if ((efer & EFER.SVME) === 0n) report("svm.save.efer-svme", `save.efer=${hex(efer)}: SVME (bit 12) must be 1`);
  const lm = EFER.LME | EFER.LMA;
  const eferRsvd = efer & ~(eferAllowed(caps) | lm);
  if (eferRsvd) report("svm.save.efer-mbz", `save.efer=${hex(efer)}: bits ${hex(eferRsvd)} are must-be-zero on this CPU`);
  if (!caps.cpu.longMode && efer & lm) report("svm.save.efer-lm-unsupported", `save.efer=${hex(efer)}: LME/LMA on a CPU without long mode`);
  if ((cr0 & CR0.CD) === 0n && (cr0 & CR0.NW) !== 0n) report("svm.save.cr0-cd-nw", `save.cr0=${hex(cr0)}: NW=1 with CD=0`);
  if (cr0 & CR0_MBZ) report("svm.save.cr0-high", `save.cr0=${hex(cr0)}: bits 63:32 must be 0`);
  const lmePg = (efer & EFER.LME) !== 0n && (cr0 & CR0.PG) !== 0n;
  if (lmePg && cr3 >> maxPhys !== 0n) report("svm.save.cr3-mbz", `save.cr3=${hex(cr3)}: bits 63:${maxPhys} must be 0 in long mode`);
  const cr4Rsvd = cr4 & ~cr4Allowed(caps);
  if (cr4Rsvd) report("svm.save.cr4-mbz", `save.cr4=${hex(cr4)}: bits ${hex(cr4Rsvd)} are must-be-zero on this CPU`);
  const dr6 = s.get("save.dr6");
  if (dr6 & DR6_MBZ) report("svm.save.dr6-high", `save.dr6=${hex(dr6)}: bits 63:32 must be 0`);
  const dr7 = s.get("save.dr7");
  if (dr7 & DR7_MBZ) report("svm.save.dr7-high", `save.dr7=${hex(dr7)}: bits 63:32 must be 0`);
  if (lmePg) {
    if ((cr4 & CR4.PAE) === 0n) report("svm.save.lme-pg-no-pae", `save.cr4=${hex(cr4)}: EFER.LME=1 and CR0.PG=1 need CR4.PAE=1`);
    if ((cr0 & CR0.PE) === 0n) report("svm.save.lme-pg-no-pe", `save.cr0=${hex(cr0)}: EFER.LME=1 and CR0.PG=1 need CR0.PE=1`);
    const cs = Number(s.get("save.cs.attrib"));
    if (cr4 & CR4.PAE && cs & ATTRIB.L && cs & ATTRIB.DB) report("svm.save.lme-pg-pae-cs-ld", `save.cs.attrib=${hex(cs)}: L=1 and D=1 in long mode`);
  }
  if (caps.cpu.shstk) {
    if (cr4 & CR4.CET && (cr0 & CR0.WP) === 0n) report("svm.save.cr4-cet-wp", `save.cr0=${hex(cr0)}: CR4.CET=1 needs CR0.WP=1`);
    const sCet = s.get("save.sCet");
    const rsvd = sCet & ~(S_CET.SH_STK_EN | S_CET.WR_SHSTK_EN);
    if (rsvd) report("svm.save.s-cet-mbz", `save.sCet=${hex(sCet)}: bits ${hex(rsvd)} are reserved`);
  }
}

/**
 * Every VMRUN consistency check of the catalog, run against `vmcb` as the CPU described by `caps`
 * would. Returns all violations (control area first, then the state-save area); an empty array
 * means VMRUN enters the guest. Never throws: unusable input is reported with id
 * input.invalid-vmcb or input.invalid-caps.
 */
export function checkVmrun(vmcb: VmcbState, caps: SvmCaps, env: VmrunEnv = {}): Violation[] {
  if (!VmcbState.isVmcbState(vmcb)) return [{ id: INPUT_INVALID_VMCB, apm: "-", message: "vmcb is not a VmcbState" }];
  const problem = capsProblem(caps);
  if (problem !== undefined) return [{ id: INPUT_INVALID_CAPS, apm: "-", message: problem }];
  const out: Violation[] = [];
  try {
    run(vmcb, caps, typeof env === "object" && env !== null ? env : {}, out);
    return out;
  } catch (err) {
    // Only a forged object carrying the brand can get here.
    return [{ id: INPUT_INVALID_VMCB, apm: "-", message: `check aborted: ${(err as Error)?.message ?? String(err)}` }];
  }
}

/** EXITCODE of a VMRUN that fails its consistency checks: VMEXIT_INVALID (−1). */
export const VMEXIT_INVALID = 0xffff_ffff_ffff_ffffn;

const SEGMENTS = ["es", "cs", "ss", "ds", "fs", "gs", "gdtr", "ldtr", "idtr", "tr"] as const;

/** Sign-extend bit 47 (bit 56 with CR4.LA57) to bit 63, as VMRUN does to every loaded base. */
export function canonicalizeAddress(v: bigint, la57 = false): bigint {
  return canonicalize(v, linearAddressWidth(la57));
}

/**
 * The state VMRUN loads: APM §15.5.1 has VMRUN (and VMLOAD) canonicalize every segment base it
 * loads instead of checking it, and set EFER.LMA from EFER.LME and CR0.PG (Bochs and KVM agree).
 */
export function canonicalizeVmcb(vmcb: VmcbState): VmcbState {
  const s = vmcb.clone();
  const la57 = (s.get("save.cr4") & CR4.LA57) !== 0n;
  for (const seg of SEGMENTS) s.set(`save.${seg}.base`, canonicalizeAddress(s.get(`save.${seg}.base`), la57));
  const efer = s.get("save.efer");
  const lma = (efer & EFER.LME) !== 0n && (s.get("save.cr0") & CR0.PG) !== 0n;
  s.set("save.efer", lma ? efer | EFER.LMA : efer & ~EFER.LMA);
  return s;
}

export type VmrunResult =
  | { kind: "success"; violations: []; loaded: VmcbState }
  | { kind: "vmexit-invalid"; exitCode: bigint; violations: Violation[] };

/**
 * What VMRUN does with this VMCB: enter the guest with the canonicalized state, or #VMEXIT with
 * EXITCODE VMEXIT_INVALID (−1, all 64 bits set) when any check fails.
 */
export function vmrunResult(vmcb: VmcbState, caps: SvmCaps, env: VmrunEnv = {}): VmrunResult {
  const v = checkVmrun(vmcb, caps, env);
  if (v.length > 0) return { kind: "vmexit-invalid", exitCode: VMEXIT_INVALID, violations: v };
  return { kind: "success", violations: [], loaded: canonicalizeVmcb(vmcb) };
}
