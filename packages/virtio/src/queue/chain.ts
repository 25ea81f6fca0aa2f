import { type GuestMemory, GuestMemoryError, type StructLayout } from "@tsvmm/abi";
import { VirtqueueError } from "../errors.js";

/** One buffer element of a chain, as the driver described it. */
export interface Descriptor {
  readonly addr: number;
  readonly len: number;
  readonly writable: boolean;
}

/** What `Queue.addUsed` needs to return a chain: its id and the ring slots it took (packed rings skip them). */
export interface UsedToken {
  /** Split: head descriptor index; packed: buffer id. */
  readonly id: number;
  /** Ring descriptors the chain occupied (1 for an indirect chain). */
  readonly slots: number;
}

/**
 * A validated descriptor chain. By the time one exists every descriptor has been checked: each
 * buffer lies wholly inside one guest RAM region, readable elements come before writable ones,
 * the chain is finite and its total length fits a u32. Elements are kept as (host buffer, offset,
 * length) resolved at pop time; the Buffer views and `descriptors` objects are made only when
 * asked for, so a device on the hot path (blk) copies in and out with `copyOut`/`copyIn` and
 * allocates nothing per element. Views are zero-copy windows on guest memory, so a device that
 * keeps a chain across an await must not write through them (nor `copyIn`) after the transport
 * was reset (see `DeviceContext.current`).
 */
export class DescriptorChain implements UsedToken {
  readonly id: number;
  readonly slots: number;
  /** Element i is bytes [meta[3i], meta[3i] + meta[3i+1]) of bufs[i] (a region's buffer, or a view); meta[3i+2] is its guest address. */
  private readonly bufs: readonly Buffer[];
  private readonly meta: readonly number[];
  /** Number of elements. */
  readonly length: number;
  private views: Buffer[] | undefined;
  private descs: Descriptor[] | undefined;
  /** Index of the first writable descriptor (= descriptors.length when none). */
  readonly firstWritable: number;
  readonly readableLength: number;
  readonly writableLength: number;

  /** A chain over the given views (tests, devices that synthesise chains). */
  constructor(id: number, slots: number, descriptors: readonly Descriptor[], views: readonly Buffer[]);
  /** A chain from a ring walker's checked parts (the builder is not used again). */
  constructor(id: number, slots: number, parts: ChainBuilder);
  constructor(id: number, slots: number, descriptors: readonly Descriptor[] | ChainBuilder, views?: readonly Buffer[]) {
    this.id = id;
    this.slots = slots;
    if (descriptors instanceof ChainBuilder) {
      const b = descriptors;
      this.bufs = headOf(b.bufs, b.count);
      this.meta = headOf(b.meta, 3 * b.count);
      this.length = b.count;
      this.views = undefined;
      this.descs = undefined;
      this.firstWritable = b.firstWritable;
      this.readableLength = b.readableLength;
      this.writableLength = b.total - b.readableLength;
      return;
    }
    const vs = views ?? [];
    const n = descriptors.length;
    if (vs.length !== n) throw new RangeError(`chain: ${n} descriptors but ${vs.length} views`);
    let fw = n;
    let r = 0;
    let w = 0;
    for (let i = 0; i < n; i++) {
      const d = descriptors[i]!;
      if (vs[i]!.length !== d.len) throw new RangeError(`chain: view ${i} is ${vs[i]!.length} bytes, descriptor says ${d.len}`);
      if (d.writable) {
        if (fw === n) fw = i;
        w += d.len;
      } else {
        if (fw !== n) throw new RangeError("chain: readable descriptor after a writable one");
        r += d.len;
      }
    }
    this.bufs = vs;
    this.meta = descriptors.flatMap((d) => [0, d.len, d.addr]);
    this.length = n;
    this.views = [...vs];
    this.descs = [...descriptors];
    this.firstWritable = fw;
    this.readableLength = r;
    this.writableLength = w;
  }

  /** The elements as the driver described them (made on first use). */
  get descriptors(): readonly Descriptor[] {
    let d = this.descs;
    if (d === undefined) {
      d = [];
      const m = this.meta;
      for (let i = 0; i < this.length; i++) d.push({ addr: m[3 * i + 2]!, len: m[3 * i + 1]!, writable: i >= this.firstWritable });
      this.descs = d;
    }
    return d;
  }

  /** Zero-copy view of element `i` (readable elements first, writable from `firstWritable`), without copying the list. */
  view(i: number): Buffer {
    const v = this.allViews()[i];
    if (v === undefined) throw new RangeError(`chain has no element ${i}`);
    return v;
  }
  private allViews(): Buffer[] {
    let vs = this.views;
    if (vs === undefined) {
      vs = [];
      const m = this.meta;
      for (let j = 0; j < this.length; j++) {
        const o = m[3 * j]!;
        const b = this.bufs[j]!;
        const l = m[3 * j + 1]!;
        vs.push(o === 0 && b.length === l ? b : b.subarray(o, o + l));
      }
      this.views = vs;
    }
    return vs;
  }
  /** Byte length of element `i`. */
  elementLength(i: number): number {
    if (!(i >= 0 && i < this.length)) throw new RangeError(`chain has no element ${i}`);
    return this.meta[3 * i + 1]!;
  }
  /** Zero-copy views of the device-readable elements, in order. */
  readable(): Buffer[] {
    return this.allViews().slice(0, this.firstWritable);
  }
  /** Zero-copy views of the device-writable elements, in order. */
  writable(): Buffer[] {
    return this.allViews().slice(this.firstWritable);
  }
  reader(): ChainReader {
    return new ChainReader(this.readable());
  }
  writer(): ChainWriter {
    return new ChainWriter(this.writable());
  }

  /**
   * Copy readable bytes from byte `skip` of the readable part into `dst`, across elements, without
   * making views; returns the count (less than dst.length only at the end of the readable part).
   */
  copyOut(dst: Uint8Array, skip = 0): number {
    let done = 0;
    const m = this.meta;
    for (let i = 0; i < this.firstWritable && done < dst.length; i++) {
      const l = m[3 * i + 1]!;
      if (skip >= l) {
        skip -= l;
        continue;
      }
      const o = m[3 * i]!;
      const take = Math.min(l - skip, dst.length - done);
      const b = this.bufs[i]!;
      if (take <= 16) for (let k = 0; k < take; k++) dst[done + k] = b[o + skip + k]!;
      else dst.set(b.subarray(o + skip, o + skip + take), done);
      done += take;
      skip = 0;
    }
    return done;
  }

  /**
   * Copy `src` into the writable part from byte `skip` of it on, across elements, without making
   * views; returns the count (less than src.length only at the end of the writable part).
   */
  copyIn(src: Uint8Array, skip = 0): number {
    let done = 0;
    const n = this.length;
    const m = this.meta;
    for (let i = this.firstWritable; i < n && done < src.length; i++) {
      const l = m[3 * i + 1]!;
      if (skip >= l) {
        skip -= l;
        continue;
      }
      const take = Math.min(l - skip, src.length - done);
      const b = this.bufs[i]!;
      const at = m[3 * i]! + skip;
      if (take === 1) b[at] = src[done]!;
      else b.set(take === src.length ? src : src.subarray(done, done + take), at);
      done += take;
      skip = 0;
    }
    return done;
  }

  /**
   * When the first `length` bytes of the writable part lie in one element, hand that window to
   * `fill` as (host buffer, offset, length) and return what it returns; else false. `fill` must
   * write only inside the window (it is guest memory; the rest of the buffer may be too).
   */
  fillWritable(length: number, fill: (buf: Uint8Array, offset: number, length: number) => boolean): boolean {
    const i = this.firstWritable;
    if (i >= this.length || !(length >= 0) || this.meta[3 * i + 1]! < length) return false;
    return fill(this.bufs[i]!, this.meta[3 * i]!, length);
  }

  /** Store one byte at byte `pos` of the writable part; false when the part is shorter. */
  setWritableByte(pos: number, value: number): boolean {
    const n = this.length;
    const m = this.meta;
    for (let i = this.firstWritable; i < n; i++) {
      const l = m[3 * i + 1]!;
      if (pos < l) {
        this.bufs[i]![m[3 * i]! + pos] = value;
        return true;
      }
      pos -= l;
    }
    return false;
  }
}

/** The first `n` entries of `a` as a new array: literals for the usual short chains (Array.prototype.slice costs far more at this size). */
function headOf<T>(a: readonly T[], n: number): T[] {
  switch (n) {
    case 1:
      return [a[0]!];
    case 2:
      return [a[0]!, a[1]!];
    case 3:
      return [a[0]!, a[1]!, a[2]!];
    case 6:
      return [a[0]!, a[1]!, a[2]!, a[3]!, a[4]!, a[5]!];
    case 9:
      return [a[0]!, a[1]!, a[2]!, a[3]!, a[4]!, a[5]!, a[6]!, a[7]!, a[8]!];
    default:
      return a.slice(0, n);
  }
}

/** A read or write past the end of a chain's elements: the driver gave less than the request needs. */
function outOfChain(what: string, want: number, have: number): VirtqueueError {
  return new VirtqueueError("VIRTQ_CHAIN_SHORT", `${what}: needs ${want} bytes, chain has ${have}`);
}

/** Sequential reads across a chain's readable elements. */
export class ChainReader {
  private readonly bufs: readonly Buffer[];
  private i = 0;
  private off = 0;
  private left: number;
  constructor(bufs: readonly Buffer[]) {
    this.bufs = bufs;
    let n = 0;
    for (const b of bufs) n += b.length;
    this.left = n;
  }
  /** Bytes not yet read. */
  get remaining(): number {
    return this.left;
  }
  /** Copy the next `n` bytes out; throws when fewer remain. */
  read(n: number): Buffer {
    if (n > this.left) throw outOfChain("read", n, this.left);
    const out = Buffer.allocUnsafe(n);
    this.copyTo(out);
    return out;
  }
  /** Fill `dst` from the chain; returns bytes copied (less than dst.length only at the end). */
  copyTo(dst: Uint8Array): number {
    let done = 0;
    while (done < dst.length && this.i < this.bufs.length) {
      const b = this.bufs[this.i]!;
      const take = Math.min(b.length - this.off, dst.length - done);
      dst.set(b.subarray(this.off, this.off + take), done);
      done += take;
      this.off += take;
      if (this.off === b.length) {
        this.i++;
        this.off = 0;
      }
    }
    this.left -= done;
    return done;
  }
  /** Zero-copy views of the next `n` bytes (fewer at the end). */
  views(n: number): Buffer[] {
    const out: Buffer[] = [];
    let want = Math.min(n, this.left);
    this.left -= want;
    while (want > 0 && this.i < this.bufs.length) {
      const b = this.bufs[this.i]!;
      const take = Math.min(b.length - this.off, want);
      if (take > 0) out.push(b.subarray(this.off, this.off + take));
      want -= take;
      this.off += take;
      if (this.off === b.length) {
        this.i++;
        this.off = 0;
      }
    }
    return out;
  }
  skip(n: number): void {
    this.views(n);
  }
  /** Decode a struct from the next `layout.size` bytes. */
  readStruct<T>(layout: StructLayout<T>): T {
    return layout.decode(this.read(layout.size));
  }
}

/** Sequential writes across a chain's writable elements; `written` is what goes into the used ring. */
export class ChainWriter {
  private readonly bufs: readonly Buffer[];
  private i = 0;
  private off = 0;
  private left: number;
  private done = 0;
  constructor(bufs: readonly Buffer[]) {
    this.bufs = bufs;
    let n = 0;
    for (const b of bufs) n += b.length;
    this.left = n;
  }
  get remaining(): number {
    return this.left;
  }
  get written(): number {
    return this.done;
  }
  /** Copy all of `src` in; throws (writing nothing) when it does not fit. */
  write(src: Uint8Array): void {
    if (src.length > this.left) throw outOfChain("write", src.length, this.left);
    this.writeSome(src);
  }
  /** Copy as much of `src` as fits; returns the count. */
  writeSome(src: Uint8Array): number {
    let done = 0;
    while (done < src.length && this.i < this.bufs.length) {
      const b = this.bufs[this.i]!;
      const take = Math.min(b.length - this.off, src.length - done);
      b.set(src.subarray(done, done + take), this.off);
      done += take;
      this.off += take;
      if (this.off === b.length) {
        this.i++;
        this.off = 0;
      }
    }
    this.left -= done;
    this.done += done;
    return done;
  }
  /** Zero-copy views of the next `n` writable bytes (fewer at the end), counted as written. */
  views(n: number): Buffer[] {
    const out: Buffer[] = [];
    let want = Math.min(n, this.left);
    this.left -= want;
    this.done += want;
    while (want > 0 && this.i < this.bufs.length) {
      const b = this.bufs[this.i]!;
      const take = Math.min(b.length - this.off, want);
      if (take > 0) out.push(b.subarray(this.off, this.off + take));
      want -= take;
      this.off += take;
      if (this.off === b.length) {
        this.i++;
        this.off = 0;
      }
    }
    return out;
  }
  writeStruct<T>(layout: StructLayout<T>, value: T): void {
    this.write(layout.encode(value));
  }
}

/**
 * Collects a chain's descriptors while the ring walker reads them, checking each against guest
 * memory and the ordering rule (virtio 1.2 §2.7.4.2 / §2.8: readable elements first). Each buffer
 * is resolved to (host buffer, offset) against the region the previous one fell in (the usual
 * case: one RAM region), with the same rule as `GuestMemory.slice` (wholly inside one live
 * region); anything else goes through `mem.slice`, which throws the precise error.
 */
export class ChainBuilder {
  /** Scratch, reused chain after chain: the first `count` entries (3 numbers each in `meta`) are the current chain's. */
  readonly bufs: Buffer[] = [];
  readonly meta: number[] = [];
  count = 0;
  total = 0;
  readableLength = 0;
  firstWritable = 0;
  private sawWritable = false;
  constructor(
    private readonly mem: GuestMemory,
    private readonly queue: number,
    private readonly regions: RegionCache = new RegionCache(mem),
  ) {}

  /** Start a new chain (the ring walkers keep one builder per ring). */
  reset(): this {
    this.count = 0;
    this.total = 0;
    this.readableLength = 0;
    this.firstWritable = 0;
    this.sawWritable = false;
    return this;
  }

  push(addr: number, len: number, writable: boolean): void {
    if (!writable) {
      if (this.sawWritable) {
        throw new VirtqueueError("VIRTQ_READABLE_AFTER_WRITABLE", `queue ${this.queue}: device-readable descriptor after a device-writable one`, this.queue);
      }
      this.readableLength += len;
      this.firstWritable++;
    } else this.sawWritable = true;
    this.total += len;
    if (this.total > 0xffff_ffff) {
      throw new VirtqueueError("VIRTQ_CHAIN_TOO_BIG", `queue ${this.queue}: chain is longer than 2^32 bytes`, this.queue);
    }
    const rc = this.regions;
    const i = this.count;
    let off = 0;
    if (rc.find(addr, len)) {
      this.bufs[i] = rc.buf;
      off = addr - rc.base;
    } else this.bufs[i] = sliceGuest(this.mem, addr, len, this.queue, "buffer");
    const m = this.meta;
    m[3 * i] = off;
    m[3 * i + 1] = len;
    m[3 * i + 2] = addr;
    this.count = i + 1;
  }

  /** The chain collected since the last reset (copied out of the scratch). */
  build(id: number, slots: number): DescriptorChain {
    return new DescriptorChain(id, slots, this);
  }
}

/**
 * The guest RAM region the last buffer fell in, from `mem.regions`, so that resolving the next
 * buffer is two compares rather than a `mem.slice` (a lookup and a new Buffer per element).
 */
export class RegionCache {
  base = 0;
  private end = -1;
  private size = 0;
  buf: Buffer = Buffer.alloc(0);
  constructor(private readonly mem: GuestMemory) {}

  /** True when [addr, addr + len) lies wholly inside one live region; `buf`/`base` then name it. */
  find(addr: number, len: number): boolean {
    if (addr >= this.base && addr + len <= this.end && this.buf.length === this.size) return true;
    if (!(addr >= 0) || !Number.isSafeInteger(addr + len)) return false;
    for (const r of this.mem.regions) {
      // A released region (detached backing) is left to mem.slice, which names it.
      if (addr >= r.base && addr + len <= r.base + r.size && r.buffer.length === r.size) {
        this.base = r.base;
        this.end = r.base + r.size;
        this.size = r.size;
        this.buf = r.buffer;
        return true;
      }
    }
    return false;
  }
}

/** A bounds-checked view of guest memory whose failure is a queue error naming the queue. */
export function sliceGuest(mem: GuestMemory, addr: number, len: number, queue: number, what: string): Buffer {
  if (addr < 0) {
    throw new VirtqueueError("VIRTQ_BUFFER_OUT_OF_RANGE", `queue ${queue}: ${what} address is above 2^53`, queue);
  }
  try {
    return mem.slice(addr, len);
  } catch (e) {
    if (e instanceof GuestMemoryError) {
      throw new VirtqueueError(what === "buffer" ? "VIRTQ_BUFFER_OUT_OF_RANGE" : "VIRTQ_RING_OUT_OF_RANGE", `queue ${queue}: ${what} ${e.message}`, queue, { cause: e });
    }
    throw e;
  }
}
