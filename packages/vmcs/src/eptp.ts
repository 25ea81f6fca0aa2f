import { type EptpProblem, type EptpProblemCode, validateEptp } from "@tsvmm/abi";
import type { VmxCaps } from "./caps.js";

/** One broken EPTP rule. */
export interface EptpViolation {
  id:
    | "CTRL.PROC2.EPTP.MEMTYPE"
    | "CTRL.PROC2.EPTP.WALK_LENGTH"
    | "CTRL.PROC2.EPTP.AD_FLAG"
    | "CTRL.PROC2.EPTP.SSS_FLAG"
    | "CTRL.PROC2.EPTP.RESERVED";
  message: string;
}

const hex = (v: bigint): string => `0x${v.toString(16)}`;

/**
 * The EPTP validity rule of SDM §26.2.1.1 (and §28.2.6 for the format). The rule itself is abi's
 * `validateEptp`, shared with the `ept` package; this maps its problems onto catalog ids:
 *   bits 2:0  memory type: 0 (UC) or 6 (WB), and reported in IA32_VMX_EPT_VPID_CAP[8]/[14];
 *   bits 5:3  page-walk length − 1: 3 (needs CAP[6]) or 4 (needs CAP[7], 5-level EPT);
 *   bit 6     accessed/dirty enable: needs CAP[21];
 *   bit 7     supervisor-shadow-stack enable: needs CAP[23] (CET-era SDMs; reserved before);
 *   bits 11:8 reserved; bits 63:MAXPHYADDR reserved.
 * Returns every broken rule (empty when the EPTP is valid).
 */
export function checkEptp(eptp: bigint, caps: VmxCaps): EptpViolation[] {
  let problems: EptpProblem[];
  try {
    problems = validateEptp(eptp, caps.msrs.IA32_VMX_EPT_VPID_CAP, caps.cpu.maxPhysAddr);
  } catch (e) {
    // Only a malformed capability model gets here; checkVmEntry never throws.
    return [{ id: "CTRL.PROC2.EPTP.RESERVED", message: `EPT_POINTER=${hex(eptp)}: cannot be checked: ${(e as Error).message}` }];
  }
  return problems.map((p) => ({ id: ID_OF[p.code], message: `EPT_POINTER=${hex(eptp)}: ${p.message}` }));
}

const ID_OF: Record<EptpProblemCode, EptpViolation["id"]> = {
  EPTP_MEMORY_TYPE_INVALID: "CTRL.PROC2.EPTP.MEMTYPE",
  EPTP_MEMORY_TYPE_UNSUPPORTED: "CTRL.PROC2.EPTP.MEMTYPE",
  EPTP_WALK_LENGTH_INVALID: "CTRL.PROC2.EPTP.WALK_LENGTH",
  EPTP_WALK_LENGTH_UNSUPPORTED: "CTRL.PROC2.EPTP.WALK_LENGTH",
  EPTP_ACCESSED_DIRTY_UNSUPPORTED: "CTRL.PROC2.EPTP.AD_FLAG",
  EPTP_SUPERVISOR_SHADOW_STACK_UNSUPPORTED: "CTRL.PROC2.EPTP.SSS_FLAG",
  EPTP_RESERVED_BITS: "CTRL.PROC2.EPTP.RESERVED",
  EPTP_BEYOND_MAXPHYADDR: "CTRL.PROC2.EPTP.RESERVED",
};
