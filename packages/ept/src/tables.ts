import type { GuestMemory } from "@tsvmm/abi";
import type { TableAllocator } from "./allocator.js";
import { hex, join64, type Level, type PageSize, TWO32, toBigAddress } from "./bits.js";
import { LEVEL_NAMES } from "./ept/entries.js";
import { encodeEptp } from "./ept/eptp.js";
import { EptError } from "./errors.js";
import {
  Access,
  EptFormat,
  type EptFormatOptions,
  type EptPageAttributes,
  Ia32eFormat,
  PagingFormat,
  type PagingFormatOptions,
  type PagingPageAttributes,
} from "./format.js";
import { TableMemory } from "./table-memory.js";
import { FastWalkPlan, TAKE_FULL_WALK, walkFast, walkQuick } from "./walk-fast.js";

/** Pages covered by one entry at each level: 512^(level-1). */
const SLOT = [0, 1, 512, 262144, 134217728, 68719476736];
/** Byte offset mask inside a leaf at level 1..3. */
const OFFSET_MASK = [0, 0xfff, 0x1fffff, 0x3fffffff];
const PAGE_SIZE_OF_LEVEL: readonly PageSize[] = [4096, 4096, 0x200000, 0x40000000];

/** Negative results of {@link PageTables.translateFast}. */
export const Fault = {
  NOT_PRESENT: -1,
  RESERVED: -2,
  PERMISSION: -3,
  ADDRESS_OUT_OF_RANGE: -4,
  TABLE_OUTSIDE_MEMORY: -5,
} as const;

export type FaultReason = "not-present" | "reserved" | "permission" | "address-out-of-range" | "table-outside-memory";
const FAULT_REASONS: readonly FaultReason[] = ["not-present", "reserved", "permission", "address-out-of-range", "table-outside-memory"];

export interface AccessType {
  write?: boolean;
  execute?: boolean;
  /** User-mode (CPL3) access; for EPT it selects the user-execute bit under MBEC. */
  user?: boolean;
}

export interface WalkStep {
  level: Level;
  /** Table holding the entry, its index, the entry's own address and raw value. */
  table: bigint;
  index: number;
  entryAddress: bigint;
  entry: bigint;
}

export interface Translation<A> {
  /** The translated input address (for IA-32e, the full 64-bit canonical form). */
  address: bigint;
  ok: boolean;
  physical: bigint | null;
  pageSize: PageSize | null;
  /** Level of the leaf (1 = 4 KiB, 2 = 2 MiB, 3 = 1 GiB). */
  level: 1 | 2 | 3 | null;
  attributes: Required<A> | null;
  /** Every entry read, from the root down, including the one that faulted. */
  steps: WalkStep[];
  fault: { reason: FaultReason; level: Level | null; message: string } | null;
}

export interface Mapping<A> {
  address: bigint;
  physical: bigint;
  size: PageSize;
  level: 1 | 2 | 3;
  attributes: Required<A>;
}

export interface TablePage {
  address: number;
  level: Level;
}

export interface MapOptions {
  /** Use exactly this page size instead of the largest that fits. */
  pageSize?: PageSize;
}

/**
 * Paging structures in guest memory, for one format (EPT or IA-32e). All operations share one
 * walker driven by the format's masks. Tables come from `allocator`; tables emptied by `unmap`
 * go back to it.
 */
export class PageTables<A> {
  readonly memory: GuestMemory;
  readonly allocator: TableAllocator;
  readonly format: PagingFormat<A>;
  /** Guest-physical address of the root table (PML4 or PML5). */
  readonly root: number;
  private readonly mem: TableMemory;
  // Results of the last walk, kept in typed arrays so the walk allocates nothing.
  private readonly stTable = new Float64Array(5);
  private readonly stIndex = new Int32Array(5);
  private readonly stLo = new Uint32Array(5);
  private readonly stHi = new Uint32Array(5);
  private stCount = 0;
  private faultLevel = 0;
  private leafLevel = 0;
  private permissionMessage: string | null = null;
  /** The walk of translateFast, specialised once; null for a format that overrides `misconfigured`. */
  private readonly plan: FastWalkPlan | null;

  constructor(memory: GuestMemory, allocator: TableAllocator, format: PagingFormat<A>, root?: number) {
    this.memory = memory;
    this.allocator = allocator;
    this.format = format;
    this.mem = new TableMemory(memory);
    const limit = 2 ** format.maxPhyAddr;
    if (allocator.base + allocator.size > limit) {
      throw new EptError("EPT_BEYOND_MAXPHYADDR", `allocator region ends past MAXPHYADDR (${format.maxPhyAddr} bits)`);
    }
    if (root === undefined) {
      this.root = allocator.alloc();
    } else {
      if (!Number.isSafeInteger(root) || root < 0 || root % 4096 !== 0) throw new EptError("EPT_MISALIGNED", `root ${String(root)} is not a 4 KiB aligned address`);
      if (root >= limit) throw new EptError("EPT_BEYOND_MAXPHYADDR", `root ${hex(root)} is past MAXPHYADDR`);
      if (this.mem.page(root) < 0) throw new EptError("EPT_TABLE_OUTSIDE_MEMORY", `root table ${hex(root)} is not in guest memory`);
      this.root = root;
    }
    // The flattened walk tests misconfiguration through the format's masks, so a format that
    // replaces the mask-based rule keeps the general walker.
    this.plan = format.misconfigured === PagingFormat.prototype.misconfigured ? new FastWalkPlan(format as PagingFormat<unknown>, this.root, this.mem) : null;
  }

  // ---- the walker -------------------------------------------------------------------------

  /**
   * Walk for the address whose low/high 32-bit words are `vlo`/`vhi`. Returns the physical
   * address (>= 0) or a {@link Fault} code. Allocates nothing.
   */
  private walk(vlo: number, vhi: number, access: number): number {
    const f = this.format;
    this.stCount = 0;
    this.faultLevel = 0;
    this.leafLevel = 0;
    const top = f.width - 32 - (f.signExtend ? 1 : 0);
    if (f.signExtend) {
      const t = vhi >> top;
      if (t !== 0 && t !== -1) return Fault.ADDRESS_OUT_OF_RANGE;
    } else if (vhi >>> top !== 0) {
      return Fault.ADDRESS_OUT_OF_RANGE;
    }
    const mem = this.mem;
    const present = f.presentMask;
    const resHi = f.reservedHi;
    const addrHi = f.addrHiMask;
    let table = this.root;
    let andLo = -1;
    let orHi = 0;
    let n = 0;
    for (let level: number = f.levels; level >= 1; level--) {
      // The region check of TableMemory.page, inlined: a call per level costs more than the walk.
      const w =
        table >= mem.curBase && table + 4096 <= mem.curEnd && mem.curSmall ? (table - mem.curBase) >>> 2 : mem.page(table);
      if (w < 0) {
        this.faultLevel = level;
        this.stCount = n;
        return Fault.TABLE_OUTSIDE_MEMORY;
      }
      const idx =
        level === 1
          ? (vlo >>> 12) & 511
          : level === 2
            ? (vlo >>> 21) & 511
            : level === 3
              ? ((vlo >>> 30) | (vhi << 2)) & 511
              : level === 4
                ? (vhi >>> 7) & 511
                : (vhi >>> 16) & 511;
      const words = mem.words;
      const lo = words[w + idx * 2]!;
      const hi = words[w + idx * 2 + 1]!;
      this.stTable[n] = table;
      this.stIndex[n] = idx;
      this.stLo[n] = lo;
      this.stHi[n] = hi;
      n++;
      this.stCount = n;
      if ((lo & present) === 0) {
        this.faultLevel = level;
        return Fault.NOT_PRESENT;
      }
      const leaf = level === 1 || ((lo & 0x80) !== 0 && level <= 3);
      if (
        (hi & resHi) !== 0 ||
        (leaf ? (level > 1 && !f.leafAllowed[level]) || (lo & f.reservedLeafLo[level]!) !== 0 : (lo & f.reservedTableLo[level]!) !== 0) ||
        f.misconfigured(leaf, lo)
      ) {
        this.faultLevel = level;
        return Fault.RESERVED;
      }
      andLo &= lo;
      orHi |= hi;
      if (leaf) {
        this.leafLevel = level;
        const problem = f.permissionProblem(andLo, orHi, lo, hi, access);
        if (problem !== null) {
          this.faultLevel = level;
          this.permissionMessage = problem;
          return Fault.PERMISSION;
        }
        const off = OFFSET_MASK[level]!;
        return (hi & addrHi) * TWO32 + (((lo & ~off & 0xfffff000) | (vlo & off)) >>> 0);
      }
      table = (hi & addrHi) * TWO32 + ((lo & 0xfffff000) >>> 0);
    }
    return Fault.NOT_PRESENT; // unreachable: level 1 is always a leaf
  }

  /**
   * Hot-path translation of a non-negative safe-integer address: the physical address, or a
   * negative {@link Fault} code. `access` is a sum of {@link Access} flags (0 = supervisor read).
   * Same checks and answers as {@link translate}; allocates nothing. The common EPT case (4
   * levels, 4 KiB pages, tables in the root's region below 4 GiB) takes a walk small enough to
   * inline into the caller; everything else, and every fault, goes through the full walk
   * specialised for the format.
   */
  translateFast(address: number, access = 0): number {
    const plan = this.plan;
    if (plan !== null) {
      const r = walkQuick(plan, address, access);
      if (r !== TAKE_FULL_WALK) return r;
    }
    return this.translateFull(address, access);
  }

  private translateFull(address: number, access: number): number {
    if (!(address >= 0 && address <= Number.MAX_SAFE_INTEGER)) return Fault.ADDRESS_OUT_OF_RANGE;
    const plan = this.plan;
    if (plan === null) return this.walk(address >>> 0, (address / TWO32) >>> 0, access);
    return walkFast(plan, this.mem, address >>> 0, (address / TWO32) >>> 0, access);
  }

  /** Full walk: the entry read at each level, the leaf and why the walk failed. */
  translate(address: number | bigint, access: AccessType = {}): Translation<A> {
    let a = toBigAddress("address", address);
    if (a < 0n) a = BigInt.asUintN(64, a);
    if (a >= 1n << 64n) throw new EptError("EPT_INVALID_ARGUMENT", `address ${hex(a)} does not fit in 64 bits`);
    const flags = (access.write ? Access.WRITE : 0) | (access.execute ? Access.EXECUTE : 0) | (access.user ? Access.USER : 0);
    this.permissionMessage = null;
    const r = this.walk(Number(a & 0xffffffffn), Number(a >> 32n), flags);
    const steps: WalkStep[] = [];
    for (let i = 0; i < this.stCount; i++) {
      const table = this.stTable[i]!;
      steps.push({
        level: (this.format.levels - i) as Level,
        table: BigInt(table),
        index: this.stIndex[i]!,
        entryAddress: BigInt(table + this.stIndex[i]! * 8),
        entry: join64(this.stLo[i]!, this.stHi[i]!),
      });
    }
    const leafLevel = this.leafLevel as 0 | 1 | 2 | 3;
    const last = this.stCount - 1;
    const attributes =
      leafLevel === 0 ? null : (this.format.leafAttributes(leafLevel, this.stLo[last]!, this.stHi[last]!) as Required<A>);
    if (r >= 0) {
      return { address: a, ok: true, physical: BigInt(r), pageSize: PAGE_SIZE_OF_LEVEL[leafLevel]!, level: leafLevel as 1 | 2 | 3, attributes, steps, fault: null };
    }
    const reason = FAULT_REASONS[-r - 1]!;
    const level = this.faultLevel === 0 ? null : (this.faultLevel as Level);
    const where = level === null ? "" : ` at ${this.levelName(level)}`;
    const message =
      reason === "permission"
        ? `${this.permissionMessage ?? "access denied"}${where}`
        : reason === "address-out-of-range"
          ? `${hex(a)} is outside the ${this.format.width}-bit ${this.format.signExtend ? "canonical " : ""}input space`
          : `${reason}${where} translating ${hex(a)}`;
    return {
      address: a,
      ok: false,
      physical: null,
      pageSize: leafLevel === 0 ? null : PAGE_SIZE_OF_LEVEL[leafLevel]!,
      level: leafLevel === 0 ? null : (leafLevel as 1 | 2 | 3),
      attributes,
      steps,
      fault: { reason, level, message },
    };
  }

  private levelName(level: number): string {
    return this.format.kind === "ept" ? `EPT ${LEVEL_NAMES[level]}` : (LEVEL_NAMES[level] ?? `level ${level}`);
  }

  // ---- range helpers ----------------------------------------------------------------------

  /** Validate an input range and return [first page, page count] in the internal zero-based space. */
  private inputRange(address: number | bigint, size: number | bigint, align: number): [number, number] {
    let a = toBigAddress("address", address);
    if (a < 0n) a = BigInt.asUintN(64, a);
    const s = toBigAddress("size", size);
    const al = BigInt(align);
    if (a % al !== 0n || s % al !== 0n) throw new EptError("EPT_MISALIGNED", `range ${hex(a)}+${hex(s)} is not aligned to ${hex(al)}`);
    if (s === 0n) throw new EptError("EPT_INVALID_ARGUMENT", "size must be > 0");
    const f = this.format;
    const span = 1n << BigInt(f.width);
    let start = a;
    let limit = span;
    if (f.signExtend) {
      const half = span >> 1n;
      if (a < half) limit = half;
      else if (a >= (1n << 64n) - half) start = a - ((1n << 64n) - span);
      else throw new EptError("EPT_ADDRESS_OUT_OF_RANGE", `${hex(a)} is not canonical for ${f.levels}-level paging`);
    }
    if (start + s > limit || a >= 1n << 64n) {
      throw new EptError("EPT_ADDRESS_OUT_OF_RANGE", `range ${hex(a)}+${hex(s)} leaves the ${f.width}-bit input space`);
    }
    return [Number(start >> 12n), Number(s >> 12n)];
  }

  /** Back from the internal page number to the (canonical) input address. */
  private outputAddress(vpn: number): bigint {
    const v = BigInt(vpn) << 12n;
    const f = this.format;
    if (f.signExtend && v >= 1n << BigInt(f.width - 1)) return v + ((1n << 64n) - (1n << BigInt(f.width)));
    return v;
  }

  private words(table: number): number {
    const w = this.mem.page(table);
    if (w < 0) throw new EptError("EPT_TABLE_OUTSIDE_MEMORY", `table ${hex(table)} is not in guest memory`);
    return w;
  }

  private childOf(lo: number, hi: number): number {
    return (hi & this.format.addrHiMask) * TWO32 + ((lo & 0xfffff000) >>> 0);
  }

  private isLeaf(level: number, lo: number): boolean {
    return level === 1 || (level <= 3 && (lo & 0x80) !== 0);
  }

  private checkEntry(level: number, lo: number, hi: number, table: number, idx: number): void {
    const f = this.format;
    const leaf = this.isLeaf(level, lo);
    if (
      (hi & f.reservedHi) !== 0 ||
      (leaf ? (level > 1 && !f.leafAllowed[level]) || (lo & f.reservedLeafLo[level]!) !== 0 : (lo & f.reservedTableLo[level]!) !== 0) ||
      f.misconfigured(leaf, lo)
    ) {
      throw new EptError("EPT_CORRUPT_TABLE", `entry ${idx} of table ${hex(table)} (${this.levelName(level)}) has reserved bits set`);
    }
  }

  /** Leaf covering page `vpn`: [level, table, index] or null when not mapped. */
  private findLeaf(vpn: number): [number, number, number] | null {
    let table = this.root;
    for (let level: number = this.format.levels; level >= 1; level--) {
      const w = this.words(table);
      const idx = Math.floor(vpn / SLOT[level]!) % 512;
      const lo = this.mem.words[w + idx * 2]!;
      const hi = this.mem.words[w + idx * 2 + 1]!;
      if ((lo & this.format.presentMask) === 0) return null;
      this.checkEntry(level, lo, hi, table, idx);
      if (this.isLeaf(level, lo)) return [level, table, idx];
      table = this.childOf(lo, hi);
    }
    return null;
  }

  /** Throw EPT_PARTIAL_LARGE_PAGE when a leaf straddles either end of [vpn, vpn+count). */
  private checkEdges(vpn: number, count: number): void {
    for (const p of [vpn, vpn + count - 1]) {
      const leaf = this.findLeaf(p);
      if (leaf === null || leaf[0] === 1) continue;
      const slot = SLOT[leaf[0]]!;
      const first = p - (p % slot);
      if (first < vpn || first + slot > vpn + count) {
        throw new EptError(
          "EPT_PARTIAL_LARGE_PAGE",
          `range cuts the ${PAGE_SIZE_OF_LEVEL[leaf[0]]! >> 20} MiB page at ${hex(this.outputAddress(first))}; split it first`,
        );
      }
    }
  }

  /**
   * First page in [vpn, vpn+count) whose mapped-ness equals `mapped`, or -1.
   */
  private scan(table: number, level: number, vpn: number, count: number, mapped: boolean): number {
    const slot = SLOT[level]!;
    let idx = Math.floor(vpn / slot) % 512;
    while (count > 0) {
      const w = this.words(table);
      const lo = this.mem.words[w + idx * 2]!;
      const hi = this.mem.words[w + idx * 2 + 1]!;
      const n = Math.min(count, slot - (vpn % slot));
      if ((lo & this.format.presentMask) === 0) {
        if (!mapped) return vpn;
      } else {
        this.checkEntry(level, lo, hi, table, idx);
        if (this.isLeaf(level, lo)) {
          if (mapped) return vpn;
        } else {
          const r = this.scan(this.childOf(lo, hi), level - 1, vpn, n, mapped);
          if (r >= 0) return r;
        }
      }
      vpn += n;
      count -= n;
      idx++;
    }
    return -1;
  }

  // ---- operations -------------------------------------------------------------------------

  /**
   * Map [address, address+size) to [physical, physical+size) with `attributes`, using the
   * largest page that fits each piece (or `options.pageSize`). Nothing in the range may be mapped.
   */
  map(address: number | bigint, physical: number | bigint, size: number | bigint, attributes: A, options: MapOptions = {}): void {
    const f = this.format;
    let forced = 0;
    if (options.pageSize !== undefined) {
      forced = PAGE_SIZE_OF_LEVEL.indexOf(options.pageSize, 1);
      if (forced < 1 || !f.leafAllowed[forced]) {
        throw new EptError("EPT_PAGE_SIZE_UNSUPPORTED", `page size ${String(options.pageSize)} is not available in this format`);
      }
    }
    const align = forced === 0 ? 4096 : PAGE_SIZE_OF_LEVEL[forced]!;
    const [vpn, count] = this.inputRange(address, size, align);
    const pa = toBigAddress("physical", physical);
    if (pa % BigInt(align) !== 0n) throw new EptError("EPT_MISALIGNED", `physical address ${hex(pa)} is not aligned to ${hex(align)}`);
    if (pa + (BigInt(count) << 12n) > 1n << BigInt(f.maxPhyAddr)) {
      throw new EptError("EPT_BEYOND_MAXPHYADDR", `physical range ${hex(pa)}+${hex(BigInt(count) << 12n)} is past MAXPHYADDR (${f.maxPhyAddr} bits)`);
    }
    const leafLo = [0, 0, 0, 0];
    const leafHi = [0, 0, 0, 0];
    for (const level of [1, 2, 3] as const) {
      if (level === 1 || f.leafAllowed[level]) [leafLo[level], leafHi[level]] = f.leafBits(level, attributes);
    }
    const taken = this.scan(this.root, f.levels, vpn, count, true);
    if (taken >= 0) throw new EptError("EPT_OVERLAP", `${hex(this.outputAddress(taken))} is already mapped`);
    try {
      this.mapRange(this.root, f.levels, vpn, Number(pa >> 12n), count, leafLo, leafHi, forced);
    } catch (e) {
      // The range was empty before, so unmapping it undoes a half-built mapping (for example
      // when the allocator runs dry) and returns its new tables.
      this.unmapRange(this.root, f.levels, vpn, count);
      throw e;
    }
  }

  private mapRange(table: number, level: number, vpn: number, ppn: number, count: number, leafLo: number[], leafHi: number[], forced: number): void {
    const f = this.format;
    const mem = this.mem;
    if (level === 1) {
      const llo = leafLo[1]!;
      const lhi = leafHi[1]!;
      const w = this.words(table) + (vpn % 512) * 2;
      const words = mem.words;
      if (ppn + count <= 2 ** 32) {
        // Page numbers that fit 32 bits (physical addresses below 2^44): integer shifts only,
        // no division per entry.
        for (let k = 0, e = w; k < count; k++, e += 2) {
          const p = ppn + k;
          words[e] = llo | ((p & 0xfffff) << 12);
          words[e + 1] = lhi | (p >>> 20);
        }
        return;
      }
      for (let k = 0; k < count; k++) {
        const p = ppn + k;
        words[w + k * 2] = llo | ((p & 0xfffff) << 12);
        words[w + k * 2 + 1] = lhi | Math.floor(p / 1048576);
      }
      return;
    }
    const slot = SLOT[level]!;
    let idx = Math.floor(vpn / slot) % 512;
    while (count > 0) {
      const within = vpn % slot;
      const n = Math.min(count, slot - within);
      let w = this.words(table) + idx * 2;
      const lo = mem.words[w]!;
      const hi = mem.words[w + 1]!;
      const present = (lo & f.presentMask) !== 0;
      const whole = within === 0 && n === slot && ppn % slot === 0;
      const leafHere = level <= 3 && whole && (forced === 0 ? f.leafAllowed[level] && !present : forced === level);
      if (leafHere) {
        if (present) {
          // Only an empty table can sit here (the range was checked to be unmapped).
          this.freeTree(this.childOf(lo, hi), level - 1);
          w = this.words(table) + idx * 2;
        }
        mem.words[w] = leafLo[level]! | ((ppn & 0xfffff) << 12);
        mem.words[w + 1] = leafHi[level]! | Math.floor(ppn / 1048576);
      } else {
        let child: number;
        if (present) {
          child = this.childOf(lo, hi);
        } else {
          child = this.allocator.alloc();
          w = this.words(table) + idx * 2;
          mem.words[w] = f.tableLo | (child & 0xfffff000);
          mem.words[w + 1] = f.tableHi | Math.floor(child / TWO32);
        }
        this.mapRange(child, level - 1, vpn, ppn, n, leafLo, leafHi, forced);
      }
      vpn += n;
      ppn += n;
      count -= n;
      idx++;
    }
  }

  /** Free a table and every table below it (entries are not inspected for leaves). */
  private freeTree(table: number, level: number): void {
    if (level > 1) {
      for (let i = 0; i < 512; i++) {
        const w = this.words(table) + i * 2;
        const lo = this.mem.words[w]!;
        const hi = this.mem.words[w + 1]!;
        if ((lo & this.format.presentMask) !== 0 && !this.isLeaf(level, lo)) this.freeTree(this.childOf(lo, hi), level - 1);
      }
    }
    if (this.allocator.owns(table)) this.allocator.free(table);
  }

  private isEmpty(table: number): boolean {
    const w = this.words(table);
    const words = this.mem.words;
    const pm = this.format.presentMask;
    for (let i = 0; i < 1024; i += 2) if ((words[w + i]! & pm) !== 0) return false;
    return true;
  }

  /**
   * Remove every mapping in [address, address+size). Holes are fine; a large page cut by either
   * end is not (EPT_PARTIAL_LARGE_PAGE). Tables left empty go back to the allocator.
   */
  unmap(address: number | bigint, size: number | bigint): void {
    const [vpn, count] = this.inputRange(address, size, 4096);
    this.checkEdges(vpn, count);
    this.unmapRange(this.root, this.format.levels, vpn, count);
  }

  private unmapRange(table: number, level: number, vpn: number, count: number): void {
    const slot = SLOT[level]!;
    let idx = Math.floor(vpn / slot) % 512;
    while (count > 0) {
      const n = Math.min(count, slot - (vpn % slot));
      let w = this.words(table) + idx * 2;
      const lo = this.mem.words[w]!;
      const hi = this.mem.words[w + 1]!;
      if ((lo & this.format.presentMask) !== 0) {
        if (this.isLeaf(level, lo)) {
          this.mem.words[w] = 0;
          this.mem.words[w + 1] = 0;
        } else {
          const child = this.childOf(lo, hi);
          this.unmapRange(child, level - 1, vpn, n);
          if (this.isEmpty(child)) {
            if (this.allocator.owns(child)) this.allocator.free(child);
            w = this.words(table) + idx * 2;
            this.mem.words[w] = 0;
            this.mem.words[w + 1] = 0;
          }
        }
      }
      vpn += n;
      count -= n;
      idx++;
    }
  }

  /**
   * Give every page in [address, address+size) new attributes, keeping its frame. The whole
   * range must be mapped (EPT_NOT_MAPPED) and must not cut a large page (EPT_PARTIAL_LARGE_PAGE).
   */
  protect(address: number | bigint, size: number | bigint, attributes: A): void {
    const f = this.format;
    const [vpn, count] = this.inputRange(address, size, 4096);
    const hole = this.scan(this.root, f.levels, vpn, count, false);
    if (hole >= 0) throw new EptError("EPT_NOT_MAPPED", `${hex(this.outputAddress(hole))} is not mapped`);
    this.checkEdges(vpn, count);
    const bits: [number, number][] = [[0, 0]];
    for (const level of [1, 2, 3] as const) bits.push(level === 1 || f.leafAllowed[level] ? f.leafBits(level, attributes) : [0, 0]);
    this.protectRange(this.root, f.levels, vpn, count, bits);
  }

  private protectRange(table: number, level: number, vpn: number, count: number, bits: [number, number][]): void {
    const slot = SLOT[level]!;
    let idx = Math.floor(vpn / slot) % 512;
    while (count > 0) {
      const n = Math.min(count, slot - (vpn % slot));
      const w = this.words(table) + idx * 2;
      const lo = this.mem.words[w]!;
      const hi = this.mem.words[w + 1]!;
      if (this.isLeaf(level, lo)) {
        const keep = (0xfffff000 & ~OFFSET_MASK[level]!) >>> 0;
        this.mem.words[w] = (lo & keep) | bits[level]![0];
        this.mem.words[w + 1] = (hi & this.format.addrHiMask) | bits[level]![1];
      } else {
        this.protectRange(this.childOf(lo, hi), level - 1, vpn, n, bits);
      }
      vpn += n;
      count -= n;
      idx++;
    }
  }

  /**
   * Replace the 2 MiB or 1 GiB page holding `address` by a table of 512 pages of the next size
   * down with the same frame and attributes (PAT moves to bit 7 for 4 KiB pages).
   */
  split(address: number | bigint): void {
    const [vpn] = this.inputRange(BigInt.asUintN(64, toBigAddress("address", address)) & ~0xfffn, 4096, 4096);
    const leaf = this.findLeaf(vpn);
    if (leaf === null) throw new EptError("EPT_NOT_MAPPED", `${hex(this.outputAddress(vpn))} is not mapped`);
    const [level, table, idx] = leaf;
    if (level === 1) throw new EptError("EPT_NOT_LARGE_PAGE", `${hex(this.outputAddress(vpn))} is mapped by a 4 KiB page`);
    let w = this.words(table) + idx * 2;
    const lo = this.mem.words[w]!;
    const hi = this.mem.words[w + 1]!;
    const f = this.format;
    const attrs = f.leafAttributes(level as 2 | 3, lo, hi);
    const [clo, chi] = f.leafBits((level - 1) as 1 | 2, attrs);
    const base = this.childOf(lo & ~OFFSET_MASK[level]!, hi) / 4096;
    const child = this.allocator.alloc();
    const cw = this.words(child);
    const step = SLOT[level - 1]!;
    for (let k = 0; k < 512; k++) {
      const p = base + k * step;
      this.mem.words[cw + k * 2] = clo | ((p & 0xfffff) << 12);
      this.mem.words[cw + k * 2 + 1] = chi | Math.floor(p / 1048576);
    }
    w = this.words(table) + idx * 2;
    this.mem.words[w] = f.tableLo | (child & 0xfffff000);
    this.mem.words[w + 1] = f.tableHi | Math.floor(child / TWO32);
  }

  /** Every leaf, in ascending input-address order. */
  mappings(): Mapping<A>[] {
    const out: Mapping<A>[] = [];
    const visit = (table: number, level: number, vpnBase: number) => {
      for (let i = 0; i < 512; i++) {
        const w = this.words(table) + i * 2;
        const lo = this.mem.words[w]!;
        const hi = this.mem.words[w + 1]!;
        if ((lo & this.format.presentMask) === 0) continue;
        const vpn = vpnBase + i * SLOT[level]!;
        if (this.isLeaf(level, lo)) {
          const l = level as 1 | 2 | 3;
          out.push({
            address: this.outputAddress(vpn),
            physical: BigInt(this.childOf(lo & ~OFFSET_MASK[l]!, hi)),
            size: PAGE_SIZE_OF_LEVEL[l]!,
            level: l,
            attributes: this.format.leafAttributes(l, lo, hi) as Required<A>,
          });
        } else {
          visit(this.childOf(lo, hi), level - 1, vpn);
        }
      }
    };
    visit(this.root, this.format.levels, 0);
    // With sign extension the upper half comes after the lower half already; order holds.
    return out;
  }

  /** Every table page reachable from the root (the root first), with its level. */
  tablePages(): TablePage[] {
    const out: TablePage[] = [];
    const visit = (table: number, level: number) => {
      out.push({ address: table, level: level as Level });
      if (level === 1) return;
      for (let i = 0; i < 512; i++) {
        const w = this.words(table) + i * 2;
        const lo = this.mem.words[w]!;
        const hi = this.mem.words[w + 1]!;
        if ((lo & this.format.presentMask) !== 0 && !this.isLeaf(level, lo)) visit(this.childOf(lo, hi), level - 1);
      }
    };
    visit(this.root, this.format.levels);
    return out;
  }
}

/** EPT paging structures. */
export class EptTables extends PageTables<EptPageAttributes> {
  declare readonly format: EptFormat;
  constructor(memory: GuestMemory, allocator: TableAllocator, options: EptFormatOptions & { root?: number } = {}) {
    super(memory, allocator, new EptFormat(options), options.root);
  }

  /** The EPTP for these tables (walk length from the format). */
  eptp(options: { memoryType?: 0 | 6; accessedDirty?: boolean; supervisorShadowStack?: boolean } = {}): bigint {
    return encodeEptp({ root: this.root, walkLength: this.format.levels, ...options });
  }
}

/** IA-32e (4- or 5-level) guest paging structures. */
export class PagingTables extends PageTables<PagingPageAttributes> {
  declare readonly format: Ia32eFormat;
  constructor(memory: GuestMemory, allocator: TableAllocator, options: PagingFormatOptions & { root?: number } = {}) {
    super(memory, allocator, new Ia32eFormat(options), options.root);
  }

  /** CR3 for these tables with CR4.PCIDE = 0: root | PCD (bit 4) | PWT (bit 3). */
  cr3(options: { pwt?: boolean; pcd?: boolean } = {}): bigint {
    return BigInt(this.root) | (options.pwt ? 8n : 0n) | (options.pcd ? 16n : 0n);
  }
}
