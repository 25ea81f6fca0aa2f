import { GuestMemoryError } from "./errors.js";

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
    const sorted = [...regions].sort((a, b) => a.base - b.base);
    let total = 0;
    let prevEnd = 0;
    for (const r of sorted) {
      if (!Number.isSafeInteger(r.base) || r.base < 0 || !Number.isSafeInteger(r.size) || r.size <= 0) {
        throw new GuestMemoryError("GUEST_MEMORY_INVALID_REGION", `region ${r.name ?? hex(r.base)}: base and size must be non-negative safe integers, size > 0`);
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
    return new GuestMemoryMap(layout.map((l) => ({ ...l, buffer: Buffer.alloc(l.size) })));
  }

  /** The region holding `gpa`, or undefined. */
  findRegion(gpa: GuestAddress): GuestRegion | undefined {
    let a: number;
    try {
      a = toGpa(gpa);
    } catch {
      return undefined;
    }
    return this.lookup(a, 0);
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
    return this.lookup(a, length) !== undefined;
  }

  /** Resolve an access to (region buffer, offset), or throw naming what is wrong. */
  private at(gpa: GuestAddress, length: number): [Buffer, number] {
    const a = toGpa(gpa);
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new GuestMemoryError("GUEST_MEMORY_OUT_OF_RANGE", `invalid access length ${String(length)} at ${hex(a)}`, BigInt(a), length);
    }
    const r = this.lookup(a, length);
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
    const [b, o] = this.at(gpa, 1);
    b[o] = value & 0xff;
  }
  writeU16(gpa: GuestAddress, value: number): void {
    const [b, o] = this.at(gpa, 2);
    b.writeUInt16LE(value & 0xffff, o);
  }
  writeU32(gpa: GuestAddress, value: number): void {
    const [b, o] = this.at(gpa, 4);
    b.writeUInt32LE(value >>> 0, o);
  }
  writeU64(gpa: GuestAddress, value: bigint | number): void {
    const [b, o] = this.at(gpa, 8);
    b.writeBigUInt64LE(BigInt.asUintN(64, BigInt(value)), o);
  }
}
