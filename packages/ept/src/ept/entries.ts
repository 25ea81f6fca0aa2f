import { bitRange, checkLevel, checkMaxPhyAddr, checkU64, hex, type Level, toBigAddress } from "../bits.js";
import { EptError } from "../errors.js";
import {
  EPT_ACCESSED,
  EPT_DIRTY,
  EPT_EXECUTE,
  EPT_HI_PAGING_WRITE,
  EPT_HI_SUB_PAGE_WRITE,
  EPT_HI_SUPERVISOR_SHADOW_STACK,
  EPT_HI_SUPPRESS_VE,
  EPT_HI_VERIFY_GUEST_PAGING,
  EPT_IGNORE_PAT,
  EPT_MEMTYPE_SHIFT,
  EPT_PAGE_SIZE,
  EPT_READ,
  EPT_USER_EXECUTE,
  EPT_WRITE,
} from "./bits.js";

/** EPT memory types for leaf entries (SDM Vol. 3C §29.3.7); 2, 3 and 7 are reserved. */
export const EptMemoryType = { UC: 0, WC: 1, WT: 4, WP: 5, WB: 6 } as const;
export type EptMemoryType = (typeof EptMemoryType)[keyof typeof EptMemoryType];

export function isEptMemoryType(v: unknown): v is EptMemoryType {
  return v === 0 || v === 1 || v === 4 || v === 5 || v === 6;
}

/** Level names: 5 = PML5E, 4 = PML4E, 3 = PDPTE, 2 = PDE, 1 = PTE. */
export const LEVEL_NAMES = ["", "PTE", "PDE", "PDPTE", "PML4E", "PML5E"] as const;

/** Permission bits common to every EPT entry. */
export interface EptAccessBits {
  read: boolean;
  write: boolean;
  /** Bit 2: execute (supervisor-mode execute when MBEC is on). */
  execute: boolean;
  /** Bit 10: user-mode execute (MBEC). */
  userExecute: boolean;
  /** Bit 8: accessed (used when EPTP enables A/D). */
  accessed: boolean;
}

/** An entry referencing the next paging structure. */
export interface EptTableEntry extends EptAccessBits {
  kind: "table";
  /** Physical address of the next table (4 KiB aligned). */
  address: bigint;
}

/** An entry mapping a page: any PTE, or a PDE (2 MiB) / PDPTE (1 GiB) with bit 7 set. */
export interface EptPageEntry extends EptAccessBits {
  kind: "page";
  /** Physical address of the page (aligned to its size). */
  address: bigint;
  memoryType: EptMemoryType | 2 | 3 | 7;
  ignorePat: boolean;
  dirty: boolean;
  verifyGuestPaging: boolean;
  pagingWrite: boolean;
  supervisorShadowStack: boolean;
  subPageWrite: boolean;
  suppressVe: boolean;
}

export type EptEntry = EptTableEntry | EptPageEntry;

/** Encoding input: flags default to false, memory type to WB. */
export type EptEntryInput =
  | ({ kind: "table"; address: number | bigint } & Partial<EptAccessBits>)
  | ({ kind: "page"; address: number | bigint; memoryType?: EptMemoryType } & Partial<
      Omit<EptPageEntry, "kind" | "address" | "memoryType">
    >);

/** Size of the page an EPT leaf at `level` maps. */
export function eptPageSize(level: 1 | 2 | 3): number {
  return level === 1 ? 4096 : level === 2 ? 0x200000 : 0x40000000;
}

/**
 * Encode one EPT entry. `maxPhyAddr` bounds the address (bits 51:N are reserved). Throws
 * EPT_INVALID_ENTRY for a leaf at PML4/PML5, a reserved memory type or a misaligned address.
 */
export function encodeEptEntry(level: Level, entry: EptEntryInput, maxPhyAddr = 52): bigint {
  checkLevel(level);
  checkMaxPhyAddr(maxPhyAddr);
  const address = toBigAddress("address", entry.address);
  let v = 0n;
  if (entry.read) v |= BigInt(EPT_READ);
  if (entry.write) v |= BigInt(EPT_WRITE);
  if (entry.execute) v |= BigInt(EPT_EXECUTE);
  if (entry.userExecute) v |= BigInt(EPT_USER_EXECUTE);
  if (entry.accessed) v |= BigInt(EPT_ACCESSED);
  let align = 4096n;
  if (entry.kind === "page") {
    if (level > 3) throw new EptError("EPT_INVALID_ENTRY", `a ${LEVEL_NAMES[level]} cannot map a page`);
    const mt = entry.memoryType ?? EptMemoryType.WB;
    if (!isEptMemoryType(mt)) throw new EptError("EPT_INVALID_ENTRY", `EPT memory type ${String(mt)} is reserved`);
    v |= BigInt(mt << EPT_MEMTYPE_SHIFT);
    if (level > 1) v |= BigInt(EPT_PAGE_SIZE);
    if (entry.ignorePat) v |= BigInt(EPT_IGNORE_PAT);
    if (entry.dirty) v |= BigInt(EPT_DIRTY);
    if (entry.verifyGuestPaging) v |= BigInt(EPT_HI_VERIFY_GUEST_PAGING) << 32n;
    if (entry.pagingWrite) v |= BigInt(EPT_HI_PAGING_WRITE) << 32n;
    if (entry.supervisorShadowStack) v |= BigInt(EPT_HI_SUPERVISOR_SHADOW_STACK) << 32n;
    if (entry.subPageWrite) v |= BigInt(EPT_HI_SUB_PAGE_WRITE) << 32n;
    if (entry.suppressVe) v |= BigInt(EPT_HI_SUPPRESS_VE) << 32n;
    align = BigInt(eptPageSize(level as 1 | 2 | 3));
  } else if (entry.kind !== "table") {
    throw new EptError("EPT_INVALID_ENTRY", `entry kind must be "table" or "page"`);
  } else if (level === 1) {
    throw new EptError("EPT_INVALID_ENTRY", "a PTE always maps a page; it cannot reference a table");
  }
  if (address % align !== 0n) {
    throw new EptError("EPT_MISALIGNED", `${LEVEL_NAMES[level]} address ${hex(address)} is not aligned to ${hex(align)}`);
  }
  if (address >> BigInt(maxPhyAddr) !== 0n) {
    throw new EptError("EPT_BEYOND_MAXPHYADDR", `address ${hex(address)} is past MAXPHYADDR (${maxPhyAddr} bits)`);
  }
  return v | address;
}

/** True when bit 7 makes this entry a leaf (always for a PTE). */
export function isEptLeaf(level: Level, raw: bigint): boolean {
  return level === 1 || ((level === 2 || level === 3) && (raw & BigInt(EPT_PAGE_SIZE)) !== 0n);
}

/**
 * Decode one EPT entry. The address is taken from bits 51:12 (51:21 or 51:30 for large pages) —
 * reserved bits are not interpreted here; ask {@link eptEntryProblems}.
 */
export function decodeEptEntry(level: Level, raw: bigint): EptEntry {
  checkLevel(level);
  checkU64("entry", raw);
  const lo = Number(raw & 0xffffffffn);
  const hi = Number(raw >> 32n);
  const common: EptAccessBits = {
    read: (lo & EPT_READ) !== 0,
    write: (lo & EPT_WRITE) !== 0,
    execute: (lo & EPT_EXECUTE) !== 0,
    userExecute: (lo & EPT_USER_EXECUTE) !== 0,
    accessed: (lo & EPT_ACCESSED) !== 0,
  };
  if (!isEptLeaf(level, raw)) return { kind: "table", ...common, address: raw & bitRange(12, 51) };
  const low = level === 1 ? 12 : level === 2 ? 21 : 30;
  return {
    kind: "page",
    ...common,
    address: raw & bitRange(low, 51),
    memoryType: ((lo >>> EPT_MEMTYPE_SHIFT) & 7) as EptPageEntry["memoryType"],
    ignorePat: (lo & EPT_IGNORE_PAT) !== 0,
    dirty: (lo & EPT_DIRTY) !== 0,
    verifyGuestPaging: (hi & EPT_HI_VERIFY_GUEST_PAGING) !== 0,
    pagingWrite: (hi & EPT_HI_PAGING_WRITE) !== 0,
    supervisorShadowStack: (hi & EPT_HI_SUPERVISOR_SHADOW_STACK) !== 0,
    subPageWrite: (hi & EPT_HI_SUB_PAGE_WRITE) !== 0,
    suppressVe: (hi & EPT_HI_SUPPRESS_VE) !== 0,
  };
}

/** What the processor supports, for deciding whether an entry is misconfigured. */
export interface EptEntryEnv {
  maxPhyAddr?: number;
  /** Mode-based execute control is on: bit 10 also makes an entry present. */
  mbec?: boolean;
  /** IA32_VMX_EPT_VPID_CAP bit 0: execute-only translations are supported. */
  executeOnly?: boolean;
  /** IA32_VMX_EPT_VPID_CAP bit 16 / bit 17: 2 MiB / 1 GiB pages. Default true. */
  pages2M?: boolean;
  pages1G?: boolean;
}

export type EptEntryProblem =
  | "reserved-bits"
  | "write-without-read"
  | "execute-only-unsupported"
  | "reserved-memory-type"
  | "large-page-unsupported";

/** True when the entry is present: any of bits 2:0 (or bit 10 under MBEC) is set. */
export function isEptPresent(raw: bigint, mbec = false): boolean {
  return (raw & (mbec ? 0x407n : 7n)) !== 0n;
}

/**
 * Why a present EPT entry would cause an EPT misconfiguration (SDM Vol. 3C §29.3.3.1).
 * Empty for a well-formed entry and for any not-present entry.
 */
export function eptEntryProblems(level: Level, raw: bigint, env: EptEntryEnv = {}): EptEntryProblem[] {
  checkLevel(level);
  checkU64("entry", raw);
  const maxPhyAddr = env.maxPhyAddr ?? 52;
  checkMaxPhyAddr(maxPhyAddr);
  if (!isEptPresent(raw, env.mbec)) return [];
  const out: EptEntryProblem[] = [];
  const lo = Number(raw & 0xffffffffn);
  let reserved = bitRange(maxPhyAddr, 51);
  const leaf = isEptLeaf(level, raw);
  if (!leaf) reserved |= level >= 4 ? bitRange(3, 7) : bitRange(3, 6);
  else if (level === 2) reserved |= bitRange(12, 20);
  else if (level === 3) reserved |= bitRange(12, 29);
  if ((raw & reserved) !== 0n) out.push("reserved-bits");
  if ((lo & 3) === 2) out.push("write-without-read");
  if ((lo & 1) === 0 && (lo & (env.mbec ? 0x404 : 4)) !== 0 && !env.executeOnly) out.push("execute-only-unsupported");
  if (leaf) {
    const mt = (lo >>> 3) & 7;
    if (mt === 2 || mt === 3 || mt === 7) out.push("reserved-memory-type");
    if ((level === 2 && env.pages2M === false) || (level === 3 && env.pages1G === false)) out.push("large-page-unsupported");
  }
  return out;
}
