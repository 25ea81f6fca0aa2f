import { constants } from "node:buffer";
import { GuestMemoryError } from "./errors.js";
import type { StructLayout } from "./layout.js";

/** A guest-physical address. Numbers must be safe integers; bigints are accepted for u64 values. */
export type GuestAddress = number | bigint;

/** One contiguous range of guest-physical memory backed by host memory. */
export interface GuestRegion {
  /** First guest-physical address of the region. */
  readonly base: number;
  /** Length in bytes; equals `buffer.length`. */
  readonly size: number;
  /** Host memory behind the region. For KVM this is the mmap'ed slot itself, not a copy. */
  readonly buffer: Buffer;
  /** Optional label used in error messages and dumps. */
  readonly name?: string;
}

/**
 * Guest memory seen by guest-physical address. Every access must fall wholly inside one region:
 * an access that falls in a hole, crosses a region's end, or has an address that is not a
 * non-negative safe integer throws {@link GuestMemoryError}. Nothing wraps or truncates.
 */
export interface GuestMemory {
  readonly regions: readonly GuestRegion[];
  /** Sum of all region sizes. */
  readonly totalSize: number;
  /** Lowest address above every region. */
  readonly end: number;
  /** True when `[gpa, gpa + length)` lies wholly inside one region (length 0 needs `gpa` inside or at a region end). */
  contains(gpa: GuestAddress, length?: number): boolean;
  /** Zero-copy view of guest memory; writes to it are writes to the guest. */
  slice(gpa: GuestAddress, length: number): Buffer;
  /** A copy of guest memory. */
  read(gpa: GuestAddress, length: number): Buffer;
  write(gpa: GuestAddress, data: Uint8Array): void;
  fill(gpa: GuestAddress, length: number, value: number): void;
  readU8(gpa: GuestAddress): number;
  readU16(gpa: GuestAddress): number;
  readU32(gpa: GuestAddress): number;
  readU64(gpa: GuestAddress): bigint;
  writeU8(gpa: GuestAddress, value: number): void;
  writeU16(gpa: GuestAddress, value: number): void;
  writeU32(gpa: GuestAddress, value: number): void;
  writeU64(gpa: GuestAddress, value: bigint | number): void;
  /**
   * Decode a declared C object at `gpa`. The whole object must lie inside one region, as for
   * every other access; a short or straddling object is GUEST_MEMORY_OUT_OF_RANGE, never a partial read.
   */
  readObj<T>(layout: StructLayout<T>, gpa: GuestAddress): T;
  /**
   * Encode `value` and store it at `gpa`. The value is encoded before anything is stored, so a
   * value that does not fit (LayoutError) or an object that does not lie inside one region
   * (GuestMemoryError) leaves guest memory untouched. Padding and fields left undefined are stored as zero.
   */
  writeObj<T>(layout: StructLayout<T>, gpa: GuestAddress, value: T): void;
}

/** Turn a guest-supplied address into a safe integer, or throw. */
export function toGpa(gpa: GuestAddress): number {
  if (typeof gpa === "bigint") {
    if (gpa < 0n || gpa > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new GuestMemoryError("GUEST_MEMORY_INVALID_ADDRESS", `guest address 0x${gpa.toString(16)} is out of range`, gpa);
    }
    return Number(gpa);
  }
  if (!Number.isSafeInteger(gpa) || gpa < 0) {
    throw new GuestMemoryError("GUEST_MEMORY_INVALID_ADDRESS", `guest address ${String(gpa)} is not a non-negative safe integer`);
  }
  return gpa;
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/** A detached ArrayBuffer (kvm-backend unmaps and detaches a slot when its VM closes) reads as length 0. */
const isReleased = (r: GuestRegion): boolean => r.buffer.length !== r.size;

function released(r: GuestRegion): GuestMemoryError {
  return new GuestMemoryError("GUEST_MEMORY_RELEASED", `region ${r.name ?? hex(r.base)} was released (its VM was closed?); guest memory can no longer be accessed`);
}

function checkValue(value: number, what: string): void {
  if (!Number.isInteger(value)) throw new GuestMemoryError("GUEST_MEMORY_INVALID_VALUE", `${what}: ${String(value)} is not an integer`);
}

function checkNewRegion(l: unknown, i: number): { base: number; size: number; name?: string } {
  const r = l as { base?: unknown; size?: unknown; name?: unknown } | null;
  const name = r !== null && typeof r === "object" && typeof r.name === "string" ? r.name : `#${i}`;
  if (r === null || typeof r !== "object" || !Number.isSafeInteger(r.base) || (r.base as number) < 0) {
    throw new GuestMemoryError("GUEST_MEMORY_INVALID_REGION", `region ${name}: base ${String(r?.base)} is not a non-negative safe integer`);
  }
  if (!Number.isSafeInteger(r.size) || (r.size as number) <= 0 || (r.size as number) > constants.MAX_LENGTH) {
    throw new GuestMemoryError("GUEST_MEMORY_INVALID_REGION", `region ${name}: size ${String(r.size)} is not an integer in 1..${constants.MAX_LENGTH}`);
  }
  return l as { base: number; size: number; name?: string };
}

/**
 * The one GuestMemory implementation: a sorted set of non-overlapping regions over Buffers.
 * kvm-backend builds it over mmap'ed slots; pure packages build it over plain Buffers.
 */
export class GuestMemoryMap implements GuestMemory {
  readonly regions: readonly GuestRegion[];
  readonly totalSize: number;
  readonly end: number;
  // Most accesses hit the region of the previous one; remembering it skips the search.
  private last: GuestRegion | undefined;

  constructor(regions: readonly GuestRegion[]) {
    if (!Array.isArray(regions)) throw new GuestMemoryError("GUEST_MEMORY_INVALID_REGION", "regions: not an array");
    regions.forEach(checkNewRegion);
    const sorted = [...regions].sort((a, b) => a.base - b.base);
    let total = 0;
    let prevEnd = 0;
    for (const r of sorted) {
      if (!Buffer.isBuffer(r.buffer)) {
        throw new GuestMemoryError("GUEST_MEMORY_INVALID_REGION", `region ${r.name ?? hex(r.base)}: buffer is not a Buffer`);
      }
      if (r.buffer.length !== r.size) {
        throw new GuestMemoryError("GUEST_MEMORY_INVALID_REGION", `region ${r.name ?? hex(r.base)}: buffer length ${r.buffer.length} != size ${r.size}`);
      }
      if (!Number.isSafeInteger(r.base + r.size)) {
        throw new GuestMemoryError("GUEST_MEMORY_INVALID_REGION", `region ${r.name ?? hex(r.base)} ends past 2^53`);
      }
      if (r.base < prevEnd) {
        throw new GuestMemoryError("GUEST_MEMORY_INVALID_REGION", `region ${r.name ?? hex(r.base)} overlaps the region before it`);
      }
      prevEnd = r.base + r.size;
      total += r.size;
    }
    this.regions = Object.freeze(sorted);
    this.totalSize = total;
    this.end = prevEnd;
  }

  /** Plain zeroed Buffers at the given bases; for tests and pure packages. */
  static allocate(layout: readonly { base: number; size: number; name?: string }[]): GuestMemoryMap {
    // Sizes are checked before Buffer.alloc, which would throw a raw RangeError for NaN or 2^40.
    if (!Array.isArray(layout)) throw new GuestMemoryError("GUEST_MEMORY_INVALID_REGION", "allocate: layout is not an array");
    const checked = layout.map(checkNewRegion);
    return new GuestMemoryMap(
      checked.map((l) => {
        try {
          return { ...l, buffer: Buffer.alloc(l.size) };
        } catch (e) {
          // Node 22+ accepts sizes up to 2^53-1 and then fails to allocate with a raw RangeError.
          throw new GuestMemoryError("GUEST_MEMORY_INVALID_REGION", `allocate: ${l.size} bytes cannot be allocated: ${(e as Error).message}`);
        }
      }),
    );
  }

  /** The region holding `gpa`, or undefined. Throws GUEST_MEMORY_RELEASED once that region's backing is gone. */
  findRegion(gpa: GuestAddress): GuestRegion | undefined {
    let a: number;
    try {
      a = toGpa(gpa);
    } catch {
      return undefined;
    }
    return this.live(this.lookup(a, 0));
  }

  /** Pass a found region through if its backing is still there; on a miss, say "released" if any region is. */
  private live(r: GuestRegion | undefined): GuestRegion | undefined {
    if (r !== undefined) {
      if (isReleased(r)) throw released(r);
      return r;
    }
    const gone = this.regions.find(isReleased);
    if (gone !== undefined) throw released(gone);
    return undefined;
  }

  private lookup(a: number, length: number): GuestRegion | undefined {
    const l = this.last;
    if (l !== undefined && a >= l.base && a + length <= l.base + l.size) return l;
    const rs = this.regions;
    let lo = 0;
    let hi = rs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const r = rs[mid]!;
      if (a < r.base) hi = mid - 1;
      else if (a >= r.base + r.size && !(length === 0 && a === r.base + r.size)) lo = mid + 1;
      else {
        if (a + length > r.base + r.size) return undefined;
        this.last = r;
        return r;
      }
    }
    return undefined;
  }

  contains(gpa: GuestAddress, length = 0): boolean {
    if (!Number.isSafeInteger(length) || length < 0) return false;
    let a: number;
    try {
      a = toGpa(gpa);
    } catch {
      return false;
    }
    if (!Number.isSafeInteger(a + length)) return false;
    return this.live(this.lookup(a, length)) !== undefined;
  }

  /** Resolve an access to (region buffer, offset), or throw naming what is wrong. */
  private at(gpa: GuestAddress, length: number): [Buffer, number] {
    const a = toGpa(gpa);
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new GuestMemoryError("GUEST_MEMORY_OUT_OF_RANGE", `invalid access length ${String(length)} at ${hex(a)}`, BigInt(a), length);
    }
    const r = this.live(this.lookup(a, length));
    if (r === undefined) {
      const holder = this.lookup(a, 0);
      const why = holder === undefined ? "falls outside guest memory" : `crosses the end of region ${holder.name ?? hex(holder.base)} at ${hex(holder.base + holder.size)}`;
      throw new GuestMemoryError("GUEST_MEMORY_OUT_OF_RANGE", `access of ${length} bytes at ${hex(a)} ${why}`, BigInt(a), length);
    }
    return [r.buffer, a - r.base];
  }

  slice(gpa: GuestAddress, length: number): Buffer {
    const [b, o] = this.at(gpa, length);
    return b.subarray(o, o + length);
  }
  read(gpa: GuestAddress, length: number): Buffer {
    return Buffer.from(this.slice(gpa, length));
  }
  write(gpa: GuestAddress, data: Uint8Array): void {
    const [b, o] = this.at(gpa, data.length);
    b.set(data, o);
  }
  fill(gpa: GuestAddress, length: number, value: number): void {
    checkValue(value, "fill value");
    const [b, o] = this.at(gpa, length);
    b.fill(value & 0xff, o, o + length);
  }
  readU8(gpa: GuestAddress): number {
    const [b, o] = this.at(gpa, 1);
    return b[o]!;
  }
  readU16(gpa: GuestAddress): number {
    const [b, o] = this.at(gpa, 2);
    return b.readUInt16LE(o);
  }
  readU32(gpa: GuestAddress): number {
    const [b, o] = this.at(gpa, 4);
    return b.readUInt32LE(o);
  }
  readU64(gpa: GuestAddress): bigint {
    const [b, o] = this.at(gpa, 8);
    return b.readBigUInt64LE(o);
  }
  writeU8(gpa: GuestAddress, value: number): void {
    checkValue(value, "writeU8 value");
    const [b, o] = this.at(gpa, 1);
    b[o] = value & 0xff;
  }
  writeU16(gpa: GuestAddress, value: number): void {
    checkValue(value, "writeU16 value");
    const [b, o] = this.at(gpa, 2);
    b.writeUInt16LE(value & 0xffff, o);
  }
  writeU32(gpa: GuestAddress, value: number): void {
    checkValue(value, "writeU32 value");
    const [b, o] = this.at(gpa, 4);
    b.writeUInt32LE(value >>> 0, o);
  }
  writeU64(gpa: GuestAddress, value: bigint | number): void {
    if (typeof value !== "bigint") checkValue(value, "writeU64 value");
    const [b, o] = this.at(gpa, 8);
    b.writeBigUInt64LE(BigInt.asUintN(64, BigInt(value)), o);
  }
  readObj<T>(layout: StructLayout<T>, gpa: GuestAddress): T {
    const [b, o] = this.at(gpa, layout.size);
    return layout.decode(b, o);
  }
  writeObj<T>(layout: StructLayout<T>, gpa: GuestAddress, value: T): void {
    // Resolve the range first (a bad address is the more useful error), encode, then store in one copy.
    const [b, o] = this.at(gpa, layout.size);
    b.set(layout.encode(value), o);
  }
}
