import { checkMaxPhyAddr, checkU64, hex, toBigAddress } from "../bits.js";
import { EptError } from "../errors.js";

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

/** EPTP fields, SDM Vol. 3C §25.6.11 (Table 25-9), "Extended-Page-Table Pointer (EPTP)". */
export interface Eptp {
  /** Bits 2:0: memory type for accessing the EPT paging structures; 0 = UC, 6 = WB. */
  memoryType: number;
  /** Bits 5:3 plus one. */
  walkLength: number;
  /** Bit 6: accessed and dirty flags for EPT. */
  accessedDirty: boolean;
  /** Bit 7: enforcement of access rights for supervisor shadow-stack pages. */
  supervisorShadowStack: boolean;
  /** Bits N-1:12: physical address of the root (PML4 or PML5) table. */
  root: bigint;
  /** Bits 11:8 — reserved; kept so decode/encode round-trips any value. */
  reserved11to8: number;
}

export interface EptpInput {
  root: number | bigint;
  /** Default 6 (WB). */
  memoryType?: 0 | 6;
  /** Default 4. */
  walkLength?: 4 | 5;
  accessedDirty?: boolean;
  supervisorShadowStack?: boolean;
}

/** Encode an EPTP. The root must be 4 KiB aligned and below 2^52; see {@link validateEptp} for the full rule. */
export function encodeEptp(input: EptpInput): bigint {
  const root = toBigAddress("root", input.root);
  if ((root & 0xfffn) !== 0n) throw new EptError("EPT_MISALIGNED", `EPT root ${hex(root)} is not 4 KiB aligned`);
  if (root >> 52n !== 0n) throw new EptError("EPT_BEYOND_MAXPHYADDR", `EPT root ${hex(root)} is past bit 51`);
  const mt = input.memoryType ?? 6;
  if (mt !== 0 && mt !== 6) throw new EptError("EPT_INVALID_ARGUMENT", `EPTP memory type must be 0 (UC) or 6 (WB), got ${String(mt)}`);
  const wl = input.walkLength ?? 4;
  if (wl !== 4 && wl !== 5) throw new EptError("EPT_INVALID_ARGUMENT", `EPT walk length must be 4 or 5, got ${String(wl)}`);
  let v = root | BigInt(mt) | (BigInt(wl - 1) << 3n);
  if (input.accessedDirty) v |= 1n << 6n;
  if (input.supervisorShadowStack) v |= 1n << 7n;
  return v;
}

export function decodeEptp(eptp: bigint): Eptp {
  checkU64("eptp", eptp);
  return {
    memoryType: Number(eptp & 7n),
    walkLength: Number((eptp >> 3n) & 7n) + 1,
    accessedDirty: (eptp & (1n << 6n)) !== 0n,
    supervisorShadowStack: (eptp & (1n << 7n)) !== 0n,
    reserved11to8: Number((eptp >> 8n) & 0xfn),
    root: eptp & ~0xfffn,
  };
}

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
  checkU64("eptp", eptp);
  checkU64("eptVpidCap", eptVpidCap);
  checkMaxPhyAddr(maxPhyAddr);
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
