import { EptError } from "./errors.js";

export const TWO32 = 4294967296;
export const PAGE_SIZE = 4096;
export const SIZE_2M = 0x200000;
export const SIZE_1G = 0x40000000;

/** Page size by paging level (1 = PTE … 3 = PDPTE). */
export const LEVEL_PAGE_SIZE = [0, PAGE_SIZE, SIZE_2M, SIZE_1G] as const;

/** Page sizes a leaf can have. */
export type PageSize = 4096 | 0x200000 | 0x40000000;

export type Level = 1 | 2 | 3 | 4 | 5;

export function checkLevel(level: unknown): asserts level is Level {
  if (level !== 1 && level !== 2 && level !== 3 && level !== 4 && level !== 5) {
    throw new EptError("EPT_INVALID_ARGUMENT", `paging level must be 1..5, got ${String(level)}`);
  }
}

export function checkMaxPhyAddr(maxPhyAddr: unknown): asserts maxPhyAddr is number {
  // Below 32 bits the address field would reach into the low word's flag area, which no
  // processor with EPT or IA-32e paging has ever reported.
  if (typeof maxPhyAddr !== "number" || !Number.isInteger(maxPhyAddr) || maxPhyAddr < 32 || maxPhyAddr > 52) {
    throw new EptError("EPT_INVALID_ARGUMENT", `MAXPHYADDR must be an integer in 32..52, got ${String(maxPhyAddr)}`);
  }
}

export function checkU64(name: string, v: unknown): asserts v is bigint {
  if (typeof v !== "bigint" || v < 0n || v >= 1n << 64n) {
    throw new EptError("EPT_INVALID_ARGUMENT", `${name} must be a bigint in [0, 2^64), got ${String(v)}`);
  }
}

export function hex(v: number | bigint): string {
  return `0x${v.toString(16)}`;
}

/** Bits [from, 63] of a u64 as a bigint mask. */
export function maskFrom(from: number): bigint {
  return ((1n << 64n) - 1n) ^ ((1n << BigInt(from)) - 1n);
}

/** Bits [lo, hi] inclusive as a bigint mask. */
export function bitRange(lo: number, hi: number): bigint {
  return ((1n << BigInt(hi - lo + 1)) - 1n) << BigInt(lo);
}

/**
 * An address given by the caller as number or bigint, turned into a bigint; numbers must be
 * non-negative safe integers so nothing is silently rounded.
 */
export function toBigAddress(name: string, v: unknown): bigint {
  if (typeof v === "bigint") return v;
  if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  throw new EptError("EPT_INVALID_ARGUMENT", `${name} must be a non-negative safe integer or a bigint, got ${String(v)}`);
}

/** The high (bits 63:32) bits of a bigint for the high word of a table entry. */
export function hi32(v: bigint): number {
  return Number((v >> 32n) & 0xffffffffn);
}
export function lo32(v: bigint): number {
  return Number(v & 0xffffffffn);
}
export function join64(lo: number, hi: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

/**
 * Mask of the address bits in an entry's high word that lie at or above MAXPHYADDR but below
 * bit 52: those are reserved in every EPT and IA-32e entry.
 */
export function reservedHighMask(maxPhyAddr: number): number {
  return (0xfffff & ~((1 << (maxPhyAddr - 32)) - 1)) >>> 0;
}
