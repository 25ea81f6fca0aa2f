import { type EptpProblem, validateEptp as eptpRule } from "@tsvmm/abi";
import { checkMaxPhyAddr, checkU64, hex, toBigAddress } from "../bits.js";
import { EptError } from "../errors.js";

// The EPTP validity rule and the capability bits it reads live in @tsvmm/abi, shared with the
// vmcs package's VM-entry check; this package re-exports them and adds argument checking.
export { type EptpProblem, type EptpProblemCode, EptVpidCap } from "@tsvmm/abi";

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

/**
 * The VM-entry rule for the EPTP field (SDM Vol. 3C §27.2.1.1; formats in §25.6.11 and Appendix
 * A.10), as abi's `validateEptp` states it: every problem, empty when the EPTP is acceptable.
 * Arguments that are not a u64 / a MAXPHYADDR in 32..52 throw EptError EPT_INVALID_ARGUMENT.
 */
export function validateEptp(eptp: bigint, eptVpidCap: bigint, maxPhyAddr: number): EptpProblem[] {
  checkU64("eptp", eptp);
  checkU64("eptVpidCap", eptVpidCap);
  checkMaxPhyAddr(maxPhyAddr);
  return eptpRule(eptp, eptVpidCap, maxPhyAddr);
}
