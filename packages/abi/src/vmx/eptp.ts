import { TsvmmError } from "../errors.js";

// The EPTP validity rule lives here, once, because two packages apply it: `vmcs` checks the
// EPT_POINTER field at VM entry and `ept` validates the EPTPs it builds.

/**
 * IA32_VMX_EPT_VPID_CAP (MSR 0x48C) bits used here, SDM Vol. 3D Appendix A.10.
 */
export const EptVpidCap = {
  EXECUTE_ONLY: 1n << 0n,
  PAGE_WALK_4: 1n << 6n,
  PAGE_WALK_5: 1n << 7n,
  MEMTYPE_UC: 1n << 8n,
  MEMTYPE_WB: 1n << 14n,
  PAGES_2M: 1n << 16n,
  PAGES_1G: 1n << 17n,
  INVEPT: 1n << 20n,
  ACCESSED_DIRTY: 1n << 21n,
  ADVANCED_EXIT_INFO: 1n << 22n,
  SUPERVISOR_SHADOW_STACK: 1n << 23n,
} as const;

/** An argument that is not a u64 / a MAXPHYADDR; guest-controlled values never reach here unchecked. */
export class EptpError extends TsvmmError<"EPTP_INVALID_ARGUMENT"> {
  constructor(message: string) {
    super("EPTP_INVALID_ARGUMENT", message);
  }
}

const hex = (v: bigint): string => `0x${v.toString(16)}`;

export type EptpProblemCode =
  | "EPTP_MEMORY_TYPE_INVALID"
  | "EPTP_MEMORY_TYPE_UNSUPPORTED"
  | "EPTP_WALK_LENGTH_INVALID"
  | "EPTP_WALK_LENGTH_UNSUPPORTED"
  | "EPTP_ACCESSED_DIRTY_UNSUPPORTED"
  | "EPTP_SUPERVISOR_SHADOW_STACK_UNSUPPORTED"
  | "EPTP_RESERVED_BITS"
  | "EPTP_BEYOND_MAXPHYADDR";

export interface EptpProblem {
  code: EptpProblemCode;
  /** The EPTP bits at fault. */
  bits: bigint;
  message: string;
}

/**
 * The VM-entry rule for the EPTP field (SDM Vol. 3C §27.2.1.1, "VM-Execution Control Fields",
 * when "enable EPT" is 1; formats in §25.6.11 and Appendix A.10). Returns every problem; an empty
 * list means the EPTP is acceptable. A pure function of its three arguments:
 *
 * - bits 2:0 must be 0 (UC) with cap bit 8, or 6 (WB) with cap bit 14;
 * - bits 5:3 must be 3 (4-level) with cap bit 6, or 4 (5-level) with cap bit 7;
 * - bit 6 (A/D enable) requires cap bit 21;
 * - bit 7 (supervisor shadow-stack control) requires cap bit 23;
 * - bits 11:8 are reserved (0);
 * - bits 63:maxPhyAddr must be 0.
 */
export function validateEptp(eptp: bigint, eptVpidCap: bigint, maxPhyAddr: number): EptpProblem[] {
  if (typeof eptp !== "bigint" || eptp < 0n || eptp >> 64n !== 0n) throw new EptpError(`eptp ${String(eptp)} is not a u64 bigint`);
  if (typeof eptVpidCap !== "bigint" || eptVpidCap < 0n || eptVpidCap >> 64n !== 0n) throw new EptpError(`eptVpidCap ${String(eptVpidCap)} is not a u64 bigint`);
  if (!Number.isInteger(maxPhyAddr) || maxPhyAddr < 32 || maxPhyAddr > 52) throw new EptpError(`MAXPHYADDR ${String(maxPhyAddr)} is not in 32..52`);
  const out: EptpProblem[] = [];
  const mt = eptp & 7n;
  if (mt !== 0n && mt !== 6n) {
    out.push({ code: "EPTP_MEMORY_TYPE_INVALID", bits: 7n, message: `EPTP memory type ${mt} is neither UC (0) nor WB (6)` });
  } else if ((eptVpidCap & (mt === 0n ? EptVpidCap.MEMTYPE_UC : EptVpidCap.MEMTYPE_WB)) === 0n) {
    out.push({
      code: "EPTP_MEMORY_TYPE_UNSUPPORTED",
      bits: 7n,
      message: `EPTP memory type ${mt === 0n ? "UC" : "WB"} is not supported (IA32_VMX_EPT_VPID_CAP bit ${mt === 0n ? 8 : 14} is 0)`,
    });
  }
  const pwl = (eptp >> 3n) & 7n;
  if (pwl !== 3n && pwl !== 4n) {
    out.push({ code: "EPTP_WALK_LENGTH_INVALID", bits: 0x38n, message: `EPTP page-walk length ${pwl + 1n} is neither 4 nor 5` });
  } else if ((eptVpidCap & (pwl === 3n ? EptVpidCap.PAGE_WALK_4 : EptVpidCap.PAGE_WALK_5)) === 0n) {
    out.push({
      code: "EPTP_WALK_LENGTH_UNSUPPORTED",
      bits: 0x38n,
      message: `EPTP page-walk length ${pwl + 1n} is not supported (IA32_VMX_EPT_VPID_CAP bit ${pwl === 3n ? 6 : 7} is 0)`,
    });
  }
  if ((eptp & 0x40n) !== 0n && (eptVpidCap & EptVpidCap.ACCESSED_DIRTY) === 0n) {
    out.push({ code: "EPTP_ACCESSED_DIRTY_UNSUPPORTED", bits: 0x40n, message: "EPTP enables A/D flags but IA32_VMX_EPT_VPID_CAP bit 21 is 0" });
  }
  if ((eptp & 0x80n) !== 0n && (eptVpidCap & EptVpidCap.SUPERVISOR_SHADOW_STACK) === 0n) {
    out.push({
      code: "EPTP_SUPERVISOR_SHADOW_STACK_UNSUPPORTED",
      bits: 0x80n,
      message: "EPTP enables supervisor shadow-stack control but IA32_VMX_EPT_VPID_CAP bit 23 is 0",
    });
  }
  if ((eptp & 0xf00n) !== 0n) {
    out.push({ code: "EPTP_RESERVED_BITS", bits: eptp & 0xf00n, message: `EPTP reserved bits 11:8 are set (${hex(eptp & 0xf00n)})` });
  }
  const above = eptp >> BigInt(maxPhyAddr);
  if (above !== 0n) {
    out.push({
      code: "EPTP_BEYOND_MAXPHYADDR",
      bits: above << BigInt(maxPhyAddr),
      message: `EPTP has bits set at or above MAXPHYADDR (${maxPhyAddr}): ${hex(above << BigInt(maxPhyAddr))}`,
    });
  }
  return out;
}
