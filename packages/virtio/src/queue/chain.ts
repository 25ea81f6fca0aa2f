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
 * the chain is finite and its total length fits a u32. The views are zero-copy windows on guest
 * memory, so a device that keeps a chain across an await must not write through them after the
 * transport was reset (see `Queue.generation`).
 */
export class DescriptorChain implements UsedToken {
  readonly id: number;
  readonly slots: number;
  readonly descriptors: readonly Descriptor[];
  private readonly views: readonly Buffer[];
  /** Index of the first writable descriptor (= descriptors.length when none). */
  readonly firstWritable: number;
  readonly readableLength: number;
  readonly writableLength: number;

  constructor(id: number, slots: number, descriptors: readonly Descriptor[], views: readonly Buffer[]) {
    this.id = id;
    this.slots = slots;
    this.descriptors = descriptors;
    this.views = views;
    let fw = descriptors.length;
    let r = 0;
    let w = 0;
    for (let i = 0; i < descriptors.length; i++) {
      const d = descriptors[i]!;
      if (d.writable) {
        if (fw === descriptors.length) fw = i;
        w += d.len;
      } else r += d.len;
    }
    this.firstWritable = fw;
    this.readableLength = r;
    this.writableLength = w;
  }

  /** Zero-copy view of element `i` (readable elements first, writable from `firstWritable`), without copying the list. */
  view(i: number): Buffer {
    const v = this.views[i];
    if (v === undefined) throw new RangeError(`chain has no element ${i}`);
    return v;
  }
  /** Number of elements. */
  get length(): number {
    return this.views.length;
  }
  /** Zero-copy views of the device-readable elements, in order. */
  readable(): Buffer[] {
    return this.views.slice(0, this.firstWritable);
  }
  /** Zero-copy views of the device-writable elements, in order. */
  writable(): Buffer[] {
    return this.views.slice(this.firstWritable);
  }
  reader(): ChainReader {
    return new ChainReader(this.readable());
  }
  writer(): ChainWriter {
    return new ChainWriter(this.writable());
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
 * memory and the ordering rule (virtio 1.2 §2.7.4.2 / §2.8: readable elements first).
 */
export class ChainBuilder {
  readonly descriptors: Descriptor[] = [];
  readonly views: Buffer[] = [];
  private total = 0;
  private sawWritable = false;
  constructor(
    private readonly mem: GuestMemory,
    private readonly queue: number,
  ) {}

  push(addr: number, len: number, writable: boolean): void {
    if (!writable && this.sawWritable) {
      throw new VirtqueueError("VIRTQ_READABLE_AFTER_WRITABLE", `queue ${this.queue}: device-readable descriptor after a device-writable one`, this.queue);
    }
    this.sawWritable ||= writable;
    this.total += len;
    if (this.total > 0xffff_ffff) {
      throw new VirtqueueError("VIRTQ_CHAIN_TOO_BIG", `queue ${this.queue}: chain is longer than 2^32 bytes`, this.queue);
    }
    this.views.push(sliceGuest(this.mem, addr, len, this.queue, "buffer"));
    this.descriptors.push({ addr, len, writable });
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
