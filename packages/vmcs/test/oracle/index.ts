// A frozen copy of src/checks as of commit 67c1e32, before the checks moved from BigInt to 32-bit
// words (issue #20): test/differential.test.ts holds the optimised checker to its exact output.
// Not built, not exported. A deliberate change to a check's rule or message must be made here too.
import { PROC } from "../../src/bits/controls.js";
import { ENTRY_FAILURE_QUAL, EXIT_REASON, EXIT_REASON_FLAGS, VM_INSTRUCTION_ERROR } from "../../src/bits/exits.js";
import { NUMERIC_FACT_MAX, type VmxCaps } from "../../src/caps.js";
import { checkInfo } from "../../src/checks/catalog.js";
import { debugctlReserved, eferDefined, lbrCtlReserved, rtitCtlReserved, sCetReserved } from "../../src/checks/msr-masks.js";
import { isVmcsState, type VmcsState } from "../../src/state.js";
import { type Ctx, SLOT, type Violation, type VmEntryEnv } from "./context.js";
import { checkControls } from "./controls.js";
import { checkGuest } from "./guest.js";
import { checkHost } from "./host.js";

export { CHECKS, type CheckGroup, type CheckInfo, checkInfo } from "../../src/checks/catalog.js";
export { DEBUGCTL_BITS, debugctlReserved, eferDefined, lbrCtlReserved, rtitCtlReserved, S_CET_BITS, sCetReserved } from "../../src/checks/msr-masks.js";
export type { Violation, VmEntryEnv } from "./context.js";

/** Pseudo-ids reported when the input itself is unusable (never thrown). */
export const INPUT_INVALID_STATE = "INPUT.INVALID_STATE";
export const INPUT_INVALID_CAPS = "INPUT.INVALID_CAPS";

const MSR_KEYS = [
  "IA32_VMX_BASIC",
  "IA32_VMX_PINBASED_CTLS",
  "IA32_VMX_PROCBASED_CTLS",
  "IA32_VMX_EXIT_CTLS",
  "IA32_VMX_ENTRY_CTLS",
  "IA32_VMX_MISC",
  "IA32_VMX_CR0_FIXED0",
  "IA32_VMX_CR0_FIXED1",
  "IA32_VMX_CR4_FIXED0",
  "IA32_VMX_CR4_FIXED1",
  "IA32_VMX_PROCBASED_CTLS2",
  "IA32_VMX_EPT_VPID_CAP",
  "IA32_VMX_TRUE_PINBASED_CTLS",
  "IA32_VMX_TRUE_PROCBASED_CTLS",
  "IA32_VMX_TRUE_EXIT_CTLS",
  "IA32_VMX_TRUE_ENTRY_CTLS",
  "IA32_VMX_VMFUNC",
  "IA32_VMX_PROCBASED_CTLS3",
  "IA32_VMX_EXIT_CTLS2",
] as const;

function capsProblem(caps: unknown): string | undefined {
  if (typeof caps !== "object" || caps === null) return "capabilities are not an object";
  const c = caps as { msrs?: Record<string, unknown>; cpu?: Record<string, unknown> };
  if (typeof c.msrs !== "object" || c.msrs === null) return "capabilities lack msrs";
  for (const k of MSR_KEYS) {
    const v = c.msrs[k];
    if (typeof v !== "bigint" || v < 0n || v >= 1n << 64n) return `capability MSR ${k} is not a 64-bit bigint`;
  }
  if (typeof c.cpu !== "object" || c.cpu === null) return "capabilities lack cpu facts";
  const mp = c.cpu.maxPhysAddr;
  if (typeof mp !== "number" || !Number.isInteger(mp) || mp < 32 || mp > 52) return "cpu.maxPhysAddr must be an integer in 32..52";
  for (const k of ["pmuGpCounters", "pmuFixedCounters"]) {
    const v = c.cpu[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 32) return `cpu.${k} must be an integer in 0..32`;
  }
  // Facts added with the newest SDM rules may be absent from a hand-built object (read as "not
  // enumerated"); present, they must have the right type and range.
  for (const [k, max] of Object.entries(NUMERIC_FACT_MAX)) {
    const v = c.cpu[k];
    if (v !== undefined && (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > max)) return `cpu.${k} must be an integer in 0..${max}`;
  }
  for (const k of ["busLockDetect", "cetSs", "cetIbt", "nx", "fred", "cet", "rtm", "lam", "la57", "intel64"]) {
    const v = c.cpu[k];
    if (v !== undefined && typeof v !== "boolean") return `cpu.${k} must be a boolean`;
  }
  return undefined;
}

type Masks = Ctx["rsvd"];

function masksFor(caps: VmxCaps): Masks {
  return {
    debugctl: debugctlReserved(caps.cpu),
    sCet: sCetReserved(caps.cpu),
    rtitCtl: rtitCtlReserved(caps.cpu),
    lbrCtl: lbrCtlReserved(caps.cpu),
    eferDefined: eferDefined(caps.cpu),
  };
}

/**
 * Validation and reserved-bit masks per capability object. Only frozen objects (every built-in
 * profile and whatever capsFromJSON returns) are cached: a mutable one could change between calls.
 */
const CAPS_CACHE = new WeakMap<object, { problem: string | undefined; masks: Masks | undefined }>();

function prepareCaps(caps: unknown): { problem: string | undefined; masks: Masks | undefined } {
  const cacheable = typeof caps === "object" && caps !== null && Object.isFrozen(caps) && Object.isFrozen((caps as VmxCaps).cpu) && Object.isFrozen((caps as VmxCaps).msrs);
  if (cacheable) {
    const hit = CAPS_CACHE.get(caps);
    if (hit) return hit;
  }
  const problem = capsProblem(caps);
  const r = { problem, masks: problem === undefined ? masksFor(caps as VmxCaps) : undefined };
  if (cacheable) CAPS_CACHE.set(caps as object, r);
  return r;
}

function makeCtx(st: VmcsState, caps: VmxCaps, env: VmEntryEnv, rsvd: Masks): Ctx {
  const proc = Number(st.getSlot(SLOT.PROC));
  const exit = Number(st.getSlot(SLOT.EXIT));
  return {
    st,
    caps,
    env,
    maxPhys: BigInt(caps.cpu.maxPhysAddr),
    laWidth: caps.cpu.la57 ? 57 : 48,
    pin: Number(st.getSlot(SLOT.PIN)),
    proc,
    proc2: proc & PROC.ACTIVATE_SECONDARY_CONTROLS ? Number(st.getSlot(SLOT.PROC2)) : 0,
    proc3: proc & PROC.ACTIVATE_TERTIARY_CONTROLS ? st.getSlot(SLOT.PROC3) : 0n,
    exit,
    exit2: exit & 0x8000_0000 ? st.getSlot(SLOT.EXIT2) : 0n,
    entry: Number(st.getSlot(SLOT.ENTRY)),
    rsvd,
    out: [],
  };
}

/**
 * Every VM-entry check of SDM §26.2–§26.3 (the catalog), run against `state` as the CPU described
 * by `caps` would. Returns all violations in SDM order (controls, host state, guest state); an
 * empty array means VM entry would succeed. Never throws: unusable input is reported as a
 * violation with id INPUT.INVALID_STATE or INPUT.INVALID_CAPS.
 */
export function checkVmEntry(state: VmcsState, caps: VmxCaps, env: VmEntryEnv = {}): Violation[] {
  if (!isVmcsState(state)) return [{ id: INPUT_INVALID_STATE, sdm: "-", message: "state is not a VmcsState" }];
  const { problem, masks } = prepareCaps(caps);
  if (problem !== undefined || masks === undefined) return [{ id: INPUT_INVALID_CAPS, sdm: "-", message: problem ?? "capabilities unusable" }];
  const e: VmEntryEnv = typeof env === "object" && env !== null ? env : {};
  try {
    const ctx = makeCtx(state, caps, e, masks);
    checkControls(ctx);
    checkHost(ctx);
    checkGuest(ctx);
    return ctx.out;
  } catch (err) {
    // Only a hostile env (e.g. a memory object whose accessors misbehave) can get here.
    return [{ id: INPUT_INVALID_STATE, sdm: "-", message: `check aborted: ${(err as Error)?.message ?? String(err)}` }];
  }
}

/** What the CPU does with a VMLAUNCH/VMRESUME of this state (SDM §26.1–§26.3, §26.8). */
export type VmEntryResult =
  | { kind: "success"; violations: [] }
  | {
      kind: "vmfail-valid";
      /** 7: invalid control field(s); 8: invalid host-state field(s). */
      vmInstructionError: number;
      violations: Violation[];
    }
  | {
      kind: "entry-failure";
      /** Full exit-reason field: 33 with bit 31 (VM-entry failure) set. */
      exitReason: number;
      basicExitReason: number;
      exitQualification: number;
      violations: Violation[];
    };

const LINK_IDS = new Set(["GUEST.LINK.ALIGN", "GUEST.LINK.PHYS_WIDTH", "GUEST.LINK.REVISION", "GUEST.LINK.SHADOW_BIT", "GUEST.LINK.NOT_CURRENT_VMCS", "GUEST.LINK.NOT_EXECUTIVE_VMCS"]);

/**
 * The outcome the CPU reports. Control and host-state checks come first and fail with
 * VMfailValid (error 7 for controls, 8 for host state; the SDM does not order the two, this
 * model reports 7 when both fail). Guest-state failures cause a VM exit with basic reason 33
 * (bit 31 set) and exit qualification 0, except 4 for an invalid VMCS link pointer and 2 for
 * PDPTE loading when those are the only guest failures (the register checks of §26.3.1.1–4 come
 * before §26.3.1.5's link pointer, which comes before PDPTE loading in §26.3.1.6).
 */
export function vmEntryResult(state: VmcsState, caps: VmxCaps, env: VmEntryEnv = {}): VmEntryResult {
  const v = checkVmEntry(state, caps, env);
  if (v.length === 0) return { kind: "success", violations: [] };
  const group = (x: Violation): string => (x.id.startsWith("INPUT.") ? "input" : (checkInfo(x.id)?.group ?? "guest"));
  const controls = v.filter((x) => group(x) === "controls" || group(x) === "input");
  if (controls.length) return { kind: "vmfail-valid", vmInstructionError: VM_INSTRUCTION_ERROR.ENTRY_INVALID_CONTROL_FIELD, violations: controls };
  const host = v.filter((x) => group(x) === "host");
  if (host.length) return { kind: "vmfail-valid", vmInstructionError: VM_INSTRUCTION_ERROR.ENTRY_INVALID_HOST_STATE_FIELD, violations: host };
  let qual: number = ENTRY_FAILURE_QUAL.DEFAULT;
  const plain = v.filter((x) => !LINK_IDS.has(x.id) && x.id !== "GUEST.PDPTE.FROM_CR3");
  if (plain.length === 0) {
    qual = v.some((x) => LINK_IDS.has(x.id)) ? ENTRY_FAILURE_QUAL.INVALID_VMCS_LINK_POINTER : ENTRY_FAILURE_QUAL.PDPTE_LOAD;
  }
  return {
    kind: "entry-failure",
    exitReason: (EXIT_REASON.INVALID_STATE | EXIT_REASON_FLAGS.VM_ENTRY_FAILURE) >>> 0,
    basicExitReason: EXIT_REASON.INVALID_STATE,
    exitQualification: qual,
    violations: v,
  };
}
