import { PROC } from "../bits/controls.js";
import { allowedControls, allowedProc2, basic, misc, type VmxCaps } from "../caps.js";
import { perfGlobalCtrlReserved } from "./host.js";
import { debugctlReserved, eferDefined, lbrCtlReserved, rtitCtlReserved, sCetReserved } from "./msr-masks.js";

/** A 64-bit mask split into its 32-bit words, so a check tests it without BigInt arithmetic. */
export interface Words {
  lo: number;
  hi: number;
  /** The mask itself, for messages. */
  big: bigint;
}

export function words(v: bigint): Words {
  return { lo: Number(v & 0xffff_ffffn), hi: Number((v >> 32n) & 0xffff_ffffn), big: v };
}

/**
 * Everything the checks derive from a capability object alone, computed once per (frozen) object:
 * allowed control bits, fixed CR bits and reserved-bit masks as 32-bit words.
 */
export interface Prepared {
  maxPhys: number;
  /** maxPhys − 32 (0..20): a 64-bit address fits MAXPHYADDR iff its high word >>> physShift is 0. */
  physShift: number;
  laWidth: number;
  pinMust1: number;
  pinMay1: number;
  procMust1: number;
  procMay1: number;
  proc2Must1: number;
  proc2May1: number;
  exitMust1: number;
  exitMay1: number;
  entryMust1: number;
  entryMay1: number;
  cr3TargetCount: number;
  zeroLengthInjection: boolean;
  mtf: boolean;
  basic56: boolean;
  nestedException: boolean;
  revisionId: number;
  /** Bit n set: activity state n is supported (0 always). */
  activityStates: number;
  cr0Fixed0: Words;
  cr0Fixed1: Words;
  cr4Fixed0: Words;
  cr4Fixed1: Words;
  vmfunc: Words;
  procCtls3: Words;
  exitCtls2: Words;
  perfReserved: Words;
  debugctl: Words;
  sCet: Words;
  rtitCtl: Words;
  lbrCtl: Words;
  eferDefined: Words;
}

export function prepare(caps: VmxCaps): Prepared {
  const m = caps.msrs;
  const pin = allowedControls(caps, "pin");
  const proc = allowedControls(caps, "proc");
  const exit = allowedControls(caps, "exit");
  const entry = allowedControls(caps, "entry");
  const proc2 = allowedProc2(caps);
  let activityStates = 1;
  for (let a = 1; a <= 3; a++) if (misc.activityStateSupported(caps, a)) activityStates |= 1 << a;
  return {
    maxPhys: caps.cpu.maxPhysAddr,
    physShift: caps.cpu.maxPhysAddr - 32,
    laWidth: caps.cpu.la57 ? 57 : 48,
    pinMust1: pin.must1,
    pinMay1: pin.may1,
    procMust1: proc.must1,
    procMay1: proc.may1,
    proc2Must1: proc2.must1,
    proc2May1: proc2.may1,
    exitMust1: exit.must1,
    exitMay1: exit.may1,
    entryMust1: entry.must1,
    entryMay1: entry.may1,
    cr3TargetCount: misc.cr3TargetCount(caps),
    zeroLengthInjection: misc.zeroLengthInjection(caps),
    mtf: (proc.may1 & PROC.MONITOR_TRAP_FLAG) !== 0,
    basic56: ((m.IA32_VMX_BASIC >> 56n) & 1n) === 1n,
    nestedException: basic.nestedException(caps),
    revisionId: basic.revisionId(caps),
    activityStates,
    cr0Fixed0: words(m.IA32_VMX_CR0_FIXED0),
    cr0Fixed1: words(m.IA32_VMX_CR0_FIXED1),
    cr4Fixed0: words(m.IA32_VMX_CR4_FIXED0),
    cr4Fixed1: words(m.IA32_VMX_CR4_FIXED1),
    vmfunc: words(m.IA32_VMX_VMFUNC),
    procCtls3: words(m.IA32_VMX_PROCBASED_CTLS3),
    exitCtls2: words(m.IA32_VMX_EXIT_CTLS2),
    perfReserved: words(perfGlobalCtrlReserved(caps.cpu.pmuGpCounters, caps.cpu.pmuFixedCounters)),
    debugctl: words(debugctlReserved(caps.cpu)),
    sCet: words(sCetReserved(caps.cpu)),
    rtitCtl: words(rtitCtlReserved(caps.cpu)),
    lbrCtl: words(lbrCtlReserved(caps.cpu)),
    eferDefined: words(eferDefined(caps.cpu)),
  };
}
