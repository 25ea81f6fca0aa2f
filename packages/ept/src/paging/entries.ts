import { bitRange, checkLevel, checkMaxPhyAddr, checkU64, hex, type Level, toBigAddress } from "../bits.js";
import { EptError } from "../errors.js";
import {
  PG_ACCESSED,
  PG_DIRTY,
  PG_GLOBAL,
  PG_HI_PKEY_SHIFT,
  PG_HI_XD,
  PG_PAGE_SIZE,
  PG_PAT_4K,
  PG_PAT_LARGE,
  PG_PCD,
  PG_PRESENT,
  PG_PWT,
  PG_USER,
  PG_WRITE,
} from "./bits.js";

/** Flags common to every IA-32e paging entry. */
export interface PagingCommonBits {
  present: boolean;
  /** R/W. */
  write: boolean;
  /** U/S: user-mode accesses allowed. */
  user: boolean;
  pwt: boolean;
  pcd: boolean;
  accessed: boolean;
  /** XD (bit 63). */
  executeDisable: boolean;
}

export interface PagingTableEntry extends PagingCommonBits {
  kind: "table";
  address: bigint;
}

export interface PagingPageEntry extends PagingCommonBits {
  kind: "page";
  address: bigint;
  dirty: boolean;
  global: boolean;
  pat: boolean;
  /** Bits 62:59 (used with CR4.PKE/PKS). */
  protectionKey: number;
}

export type PagingEntry = PagingTableEntry | PagingPageEntry;

export type PagingEntryInput =
  | ({ kind: "table"; address: number | bigint } & Partial<PagingCommonBits>)
  | ({ kind: "page"; address: number | bigint } & Partial<Omit<PagingPageEntry, "kind" | "address">>);

export function isPagingLeaf(level: Level, raw: bigint): boolean {
  return level === 1 || ((level === 2 || level === 3) && (raw & BigInt(PG_PAGE_SIZE)) !== 0n);
}

/**
 * Encode one IA-32e paging entry (level 5 = PML5E … 1 = PTE). `present` defaults to true;
 * other flags default to false.
 */
export function encodePagingEntry(level: Level, entry: PagingEntryInput, maxPhyAddr = 52): bigint {
  checkLevel(level);
  checkMaxPhyAddr(maxPhyAddr);
  const address = toBigAddress("address", entry.address);
  let lo = 0;
  let hi = 0;
  if (entry.present ?? true) lo |= PG_PRESENT;
  if (entry.write) lo |= PG_WRITE;
  if (entry.user) lo |= PG_USER;
  if (entry.pwt) lo |= PG_PWT;
  if (entry.pcd) lo |= PG_PCD;
  if (entry.accessed) lo |= PG_ACCESSED;
  if (entry.executeDisable) hi |= PG_HI_XD;
  let align = 4096n;
  if (entry.kind === "page") {
    if (level > 3) throw new EptError("EPT_INVALID_ENTRY", `level ${level} cannot map a page`);
    if (entry.dirty) lo |= PG_DIRTY;
    if (entry.global) lo |= PG_GLOBAL;
    if (level > 1) lo |= PG_PAGE_SIZE;
    if (entry.pat) lo |= level === 1 ? PG_PAT_4K : PG_PAT_LARGE;
    const pk = entry.protectionKey ?? 0;
    if (!Number.isInteger(pk) || pk < 0 || pk > 15) throw new EptError("EPT_INVALID_ARGUMENT", `protection key must be 0..15, got ${String(pk)}`);
    hi |= pk << PG_HI_PKEY_SHIFT;
    align = level === 1 ? 4096n : level === 2 ? 0x200000n : 0x40000000n;
  } else if (entry.kind !== "table") {
    throw new EptError("EPT_INVALID_ENTRY", `entry kind must be "table" or "page"`);
  } else if (level === 1) {
    throw new EptError("EPT_INVALID_ENTRY", "a PTE always maps a page; it cannot reference a table");
  }
  if (address % align !== 0n) throw new EptError("EPT_MISALIGNED", `address ${hex(address)} is not aligned to ${hex(align)}`);
  if (address >> BigInt(maxPhyAddr) !== 0n) {
    throw new EptError("EPT_BEYOND_MAXPHYADDR", `address ${hex(address)} is past MAXPHYADDR (${maxPhyAddr} bits)`);
  }
  return ((BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0)) | address;
}

export function decodePagingEntry(level: Level, raw: bigint): PagingEntry {
  checkLevel(level);
  checkU64("entry", raw);
  const lo = Number(raw & 0xffffffffn);
  const hi = Number(raw >> 32n);
  const common: PagingCommonBits = {
    present: (lo & PG_PRESENT) !== 0,
    write: (lo & PG_WRITE) !== 0,
    user: (lo & PG_USER) !== 0,
    pwt: (lo & PG_PWT) !== 0,
    pcd: (lo & PG_PCD) !== 0,
    accessed: (lo & PG_ACCESSED) !== 0,
    executeDisable: (hi & PG_HI_XD) !== 0,
  };
  if (!isPagingLeaf(level, raw)) return { kind: "table", ...common, address: raw & bitRange(12, 51) };
  const low = level === 1 ? 12 : level === 2 ? 21 : 30;
  return {
    kind: "page",
    ...common,
    address: raw & bitRange(low, 51),
    dirty: (lo & PG_DIRTY) !== 0,
    global: (lo & PG_GLOBAL) !== 0,
    pat: (lo & (level === 1 ? PG_PAT_4K : PG_PAT_LARGE)) !== 0,
    protectionKey: (hi >>> PG_HI_PKEY_SHIFT) & 0xf,
  };
}

export interface PagingEntryEnv {
  maxPhyAddr?: number;
  /** IA32_EFER.NXE; when false bit 63 is reserved. Default true. */
  nxe?: boolean;
  /** CPUID.80000001H:EDX.Page1GB; when false PS in a PDPTE is reserved. Default true. */
  pages1G?: boolean;
}

/**
 * True when a present entry has a reserved bit set (a #PF with PFEC.RSVD, SDM Vol. 3A §4.7):
 * bits 51:MAXPHYADDR, XD without NXE, PS in a PML4E/PML5E, bits 20:13 / 29:13 of a large leaf,
 * PS in a PDPTE without 1 GiB page support.
 */
export function pagingEntryHasReservedBits(level: Level, raw: bigint, env: PagingEntryEnv = {}): boolean {
  checkLevel(level);
  checkU64("entry", raw);
  const maxPhyAddr = env.maxPhyAddr ?? 52;
  checkMaxPhyAddr(maxPhyAddr);
  if ((raw & 1n) === 0n) return false;
  let reserved = bitRange(maxPhyAddr, 51);
  if (env.nxe === false) reserved |= 1n << 63n;
  if (level >= 4) reserved |= BigInt(PG_PAGE_SIZE);
  else if (isPagingLeaf(level, raw)) {
    if (level === 2) reserved |= bitRange(13, 20);
    if (level === 3) reserved |= env.pages1G === false ? BigInt(PG_PAGE_SIZE) : bitRange(13, 29);
  }
  return (raw & reserved) !== 0n;
}
