import { close, closeSync, fdatasync, fstatSync, openSync, read, readv, write, writev } from "node:fs";
import { endianness } from "node:os";
import {
  bit,
  VIRTIO_BLK_F_BLK_SIZE,
  VIRTIO_BLK_F_DISCARD,
  VIRTIO_BLK_F_FLUSH,
  VIRTIO_BLK_F_RO,
  VIRTIO_BLK_F_SEG_MAX,
  VIRTIO_BLK_F_WRITE_ZEROES,
  VIRTIO_BLK_ID_BYTES,
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_UNSUPP,
  VIRTIO_BLK_T_DISCARD,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VIRTIO_BLK_T_WRITE_ZEROES,
  VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
  VIRTIO_ID_BLOCK,
} from "../constants.js";
import { type DeviceContext, drainQueue, readConfigBytes, type VirtioDevice } from "../device.js";
import { VirtioDeviceError, VirtqueueError } from "../errors.js";
import { BLK_OUTHDR_SECTOR, BLK_OUTHDR_TYPE, readAddr, VirtioBlkConfigLayout, VirtioBlkDiscardWriteZeroesLayout, VirtioBlkOuthdrLayout } from "../layouts.js";
import type { DescriptorChain } from "../queue/chain.js";

export const SECTOR_SIZE = 512;

/** Completion of one backend operation: null, or why it failed (the request then gets IOERR). */
export type IoDone = (err: Error | null) => void;

/**
 * Storage behind a virtio-blk device. Every operation completes asynchronously through its
 * callback (callbacks, not promises: this is the per-request hot path). `read` fills `into`
 * completely or fails; `write` writes all of `from` or fails.
 */
export interface BlockBackend {
  /** Size in bytes. */
  readonly size: number;
  readonly readOnly: boolean;
  read(position: number, into: Buffer, done: IoDone): void;
  /**
   * Optional: fill `into` in order from `position` (adjacent requests merged into one call, as
   * a block layer merges them), all of it or fail. Without it every read goes through `read`.
   */
  readv?(position: number, into: readonly Buffer[], done: IoDone): void;
  /**
   * Optional: fill bytes [offset, offset + length) of `into` from `position` at once, without
   * waiting for I/O (the data is at hand, e.g. in the page cache), and return true; return false
   * to decline (the device then calls `read`, which reports any error; a declined read may have
   * written part of the window). It may throw, which fails the request. The device calls it for
   * one read at a time, never a merged run, and completes the request at once, before the drain goes on.
   */
  readInline?(position: number, into: Uint8Array, offset: number, length: number): boolean;
  write(position: number, from: readonly Buffer[], done: IoDone): void;
  /** Make every completed write durable. */
  flush(done: IoDone): void;
  writeZeroes(position: number, length: number, done: IoDone): void;
  /** May drop the data; contents of the range are then unspecified (virtio 1.2 §5.2.6). */
  discard(position: number, length: number, done: IoDone): void;
  close(): Promise<void>;
}

const ZEROES = Buffer.alloc(1 << 20);

/** What is left of `bufs` after the first `n` bytes. */
function rest(bufs: readonly Buffer[], n: number): Buffer[] {
  const out: Buffer[] = [];
  for (const b of bufs) {
    if (n >= b.length) n -= b.length;
    else {
      out.push(n > 0 ? b.subarray(n) : b);
      n = 0;
    }
  }
  return out;
}
const EMPTY = Buffer.alloc(0);

/**
 * Reads up to `target.length` bytes of `fd` at `position` into `target` without ever waiting for
 * I/O: the byte count when the data is at hand (the page cache), "again" when it is not (or
 * throws). On Linux, `preadv2(RWF_NOWAIT)`: `readNoWait` of @tsvmm/kvm-backend.
 */
export type ReadNoWait = (fd: number, target: Uint8Array, position: number) => number | "again";

/**
 * A raw image file. I/O goes to the libuv thread pool (fs.read/readv/writev/fdatasync callbacks),
 * except small reads whose data is in the page cache when a `readNoWait` is given: those are done
 * inline (see `readInline`), as the pool hop would cost more than the read.
 */
export class RawFileBackend implements BlockBackend {
  readonly size: number;
  readonly readOnly: boolean;
  private fd: number;
  private readonly inlineMax: number;
  private readonly readNoWait: ReadNoWait | undefined;
  /**
   * For observability: reads done inline (`done`), tried inline but not all at hand ("again" or
   * short: `again`), tried and thrown (`failed`), not tried during a back-off (`skipped`); all
   * but the first then went to the pool.
   */
  readonly inlineStats = { done: 0, again: 0, failed: 0, skipped: 0 };
  /** Inline tries in a row that found the data not at hand. */
  private missStreak = 0;
  /** Reads left to send to the pool without a try, and the length of the next such pause. */
  private skipLeft = 0;
  private skipLen = INLINE_SKIP_MIN;

  private constructor(fd: number, size: number, readOnly: boolean, opts: RawFileBackendOptions) {
    this.fd = fd;
    this.size = size;
    this.readOnly = readOnly;
    const max = opts.inlineReadMaxBytes ?? DEFAULT_INLINE_MAX;
    this.inlineMax = Number.isSafeInteger(max) && max > 0 ? max : 0;
    this.readNoWait = opts.readNoWait;
    // Absent (not a method that always declines) when nothing may be inline: the device then skips
    // the attempt and every read goes straight to the pool.
    this.readInline = this.readNoWait !== undefined && this.inlineMax > 0 ? this.readInlineNoWait : undefined;
  }

  /** Open `path` (O_RDWR, or O_RDONLY with readOnly). Throws VirtioDeviceError when it cannot. */
  static open(path: string, opts: RawFileBackendOptions = {}): RawFileBackend {
    const ro = opts.readOnly ?? false;
    let fd: number;
    try {
      fd = openSync(path, ro ? "r" : "r+");
    } catch (e) {
      throw new VirtioDeviceError("VIRTIO_DEVICE_BACKEND", `blk: cannot open ${path}: ${(e as Error).message}`, { cause: e });
    }
    const st = fstatSync(fd);
    if (!st.isFile() && !st.isBlockDevice()) {
      closeSync(fd);
      throw new VirtioDeviceError("VIRTIO_DEVICE_BACKEND", `blk: ${path} is not a file or block device`);
    }
    return new RawFileBackend(fd, st.size, ro, opts);
  }

  read(position: number, into: Buffer, done: IoDone): void {
    const op = this.readOps.pop() ?? new ReadOp(this.readOps);
    op.fd = this.fd;
    op.position = position;
    op.into = into;
    op.got = 0;
    op.done = done;
    op.next();
  }

  /**
   * A small read done on the event loop itself with `readNoWait`, which never waits for the disk:
   * from the page cache that costs about what the thread-pool hop alone costs (queue the job,
   * wake a worker, wake the loop, run the callback). Data not at hand ("again", a short read, or
   * an error, which the pool read then reports) declines, and the device hands the request to the
   * pool, so a cold disk or a guest reading cold blocks on purpose never stalls the loop (a plain
   * pread here would, for a whole disk read). After INLINE_MISS_STREAK misses in a row (a cold
   * disk scan) the next reads go to the pool without a try, INLINE_SKIP_MIN reads doubling to
   * INLINE_SKIP_MAX while the probe after each pause misses too: a miss is not free (the failed try
   * starts the disk read on the loop's thread, ~5 us, and the pool read then waits for it), and a
   * cold scan measured 10-20% slower with a try per read. Undefined without `readNoWait` or with
   * `inlineReadMaxBytes: 0`. Throws RangeError for a window outside `into`.
   */
  readonly readInline: ((position: number, into: Uint8Array, offset: number, len: number) => boolean) | undefined;
  private readInlineNoWait(position: number, into: Uint8Array, offset: number, len: number): boolean {
    const rnw = this.readNoWait!;
    if (len > this.inlineMax) return false;
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(len) || offset < 0 || len < 0 || offset + len > into.length) {
      throw new RangeError(`blk: inline read of ${len} bytes at ${offset} of a ${into.length}-byte buffer`);
    }
    if (this.skipLeft > 0) {
      this.skipLeft--;
      this.inlineStats.skipped++;
      return false;
    }
    let n: number | "again";
    try {
      n = rnw(this.fd, offset === 0 && len === into.length ? into : into.subarray(offset, offset + len), position);
    } catch {
      this.inlineStats.failed++;
      this.missed();
      return false;
    }
    if (n === len) {
      this.inlineStats.done++;
      this.missStreak = 0;
      this.skipLen = INLINE_SKIP_MIN;
      return true;
    }
    this.inlineStats.again++;
    this.missed();
    return false;
  }
  private missed(): void {
    // The streak is kept through a pause, so one missed probe after it starts the next (longer) one.
    if (++this.missStreak < INLINE_MISS_STREAK) return;
    this.skipLeft = this.skipLen;
    this.skipLen = Math.min(this.skipLen * 2, INLINE_SKIP_MAX);
  }

  /** Reused pread states, each with its callback bound once: a read allocates no closure of ours. */
  private readonly readOps: ReadOp[] = [];

  readv(position: number, into: readonly Buffer[], done: IoDone): void {
    let bufs = into.filter((b) => b.length > 0);
    let pos = position;
    const step = (): void => {
      if (bufs.length === 0) {
        done(null);
        return;
      }
      readv(this.fd, bufs, pos, (err, n) => {
        if (err) {
          done(err);
          return;
        }
        if (n === 0) {
          done(new VirtioDeviceError("VIRTIO_DEVICE_BACKEND", `blk: short read at ${pos}`));
          return;
        }
        pos += n;
        bufs = rest(bufs, n);
        step();
      });
    };
    step();
  }

  write(position: number, from: readonly Buffer[], done: IoDone): void {
    let bufs = from.filter((b) => b.length > 0);
    let pos = position;
    const step = (): void => {
      if (bufs.length === 0) {
        done(null);
        return;
      }
      writev(this.fd, bufs, pos, (err, n) => {
        if (err) {
          done(err);
          return;
        }
        if (n === 0) {
          done(new VirtioDeviceError("VIRTIO_DEVICE_BACKEND", `blk: write made no progress at ${pos}`));
          return;
        }
        // A short writev: carry on from where it stopped, so a completion is never reported torn.
        pos += n;
        bufs = rest(bufs, n);
        step();
      });
    };
    step();
  }

  flush(done: IoDone): void {
    fdatasync(this.fd, (err) => done(err));
  }

  writeZeroes(position: number, length: number, done: IoDone): void {
    const step = (pos: number, left: number): void => {
      if (left === 0) {
        done(null);
        return;
      }
      write(this.fd, ZEROES, 0, Math.min(left, ZEROES.length), pos, (err, n) => {
        if (err) done(err);
        else if (n === 0) done(new VirtioDeviceError("VIRTIO_DEVICE_BACKEND", `blk: write-zeroes made no progress at ${pos}`));
        else step(pos + n, left - n);
      });
    };
    step(position, length);
  }

  discard(_position: number, _length: number, done: IoDone): void {
    // Node has no fallocate(PUNCH_HOLE); keeping the data is a valid discard.
    setImmediate(done, null);
  }

  close(): Promise<void> {
    const fd = this.fd;
    this.fd = -1;
    return new Promise((resolve) => close(fd, () => resolve()));
  }
}

export interface RawFileBackendOptions {
  readOnly?: boolean;
  /**
   * Lets small reads be done inline, on the event loop, when their data is in the page cache
   * (see `RawFileBackend.readInline`); without it every read goes to the libuv pool.
   */
  readNoWait?: ReadNoWait;
  /**
   * Reads up to this many bytes may be done inline (with `readNoWait`); default 256 KiB, 0 turns
   * inline reads off. A device also bounds what one drain reads inline (VirtioBlk: 2 MiB).
   */
  inlineReadMaxBytes?: number;
}

// Covers Linux's default readahead window (128 KiB) and the usual request sizes. An inline read
// costs the event loop what the pool path costs it anyway when the data goes through a bounce
// buffer (the copy into guest memory), less the pool's hop; one found only partly cached was
// copied for nothing, so the bound stays well below the largest requests.
const DEFAULT_INLINE_MAX = 256 * 1024;
/** Inline misses in a row that pause inline tries (see RawFileBackend.readInline). */
export const INLINE_MISS_STREAK = 8;
/** First and longest pause of inline tries, in reads. */
export const INLINE_SKIP_MIN = 32;
export const INLINE_SKIP_MAX = 1024;

/** One RawFileBackend.read: a pread for what is left of `into`; a short read carries on from where it stopped. */
class ReadOp {
  fd = -1;
  position = 0;
  into: Buffer = EMPTY;
  got = 0;
  done: IoDone | undefined;
  private readonly cb: (err: Error | null, n: number) => void;
  constructor(private readonly pool: ReadOp[]) {
    this.cb = (err, n) => this.onRead(err, n);
  }
  next(): void {
    const into = this.into;
    if (this.got === into.length) {
      this.finish(null);
      return;
    }
    read(this.fd, into, this.got, into.length - this.got, this.position + this.got, this.cb);
  }
  private onRead(err: Error | null, n: number): void {
    if (err) this.finish(err);
    else if (n === 0) this.finish(new VirtioDeviceError("VIRTIO_DEVICE_BACKEND", `blk: short read at ${this.position + this.got}`));
    else {
      this.got += n;
      this.next();
    }
  }
  private finish(err: Error | null): void {
    const done = this.done!;
    this.done = undefined;
    this.into = EMPTY;
    if (this.pool.length < 256) this.pool.push(this);
    done(err);
  }
}

export interface VirtioBlkOptions {
  backend: BlockBackend;
  /** Up to 20 bytes returned by GET_ID (default "tsvmm"). */
  id?: string;
  /** Request queue size (default 256). */
  queueSize?: number;
  /**
   * Read straight into the guest's buffer (one data descriptor) instead of a bounce buffer and a
   * copy. Off by default: with it, a driver that resets the device mid-request may still find
   * the late read's data (never its status or used entry) in a buffer it has reused.
   */
  directReads?: boolean;
  /**
   * Largest run of adjacent reads merged into one backend call (default 1 MiB): larger runs
   * are split so a long sequential stream still spreads over several thread-pool workers.
   */
  maxMergeBytes?: number;
}

export interface VirtioBlkState {
  readonly id: string;
  readonly capacity: number;
  readonly readOnly: boolean;
}

/** Largest read or write accepted (larger ones fail with IOERR rather than a host allocation that large). */
const MAX_IO_BYTES = 32 << 20;
/** Largest discard / write-zeroes range accepted, in sectors (advertised in config space). */
const MAX_RANGE_SECTORS = 0x40_0000; // 2 GiB
const DEFAULT_MERGE_BYTES = 1 << 20;
/** Most requests merged into one backend read (IOV_MAX is 1024). */
const MAX_MERGE = 256;
/**
 * Bytes one drain of the queue may read inline (RawFileBackend.readInline), ~0.2-0.4 ms of copying
 * on the event loop; reads past it go to the thread pool. Without a bound a queue of large
 * cached reads would hold the loop for as long as the guest liked.
 */
export const INLINE_DRAIN_BYTES = 2 << 20;

/**
 * virtio-blk (virtio 1.2 §5.2) over a {@link BlockBackend}. One request queue. Reads land in a
 * bounce buffer and are copied into guest memory only if the activation that took them is still
 * current, so a driver that resets the device mid-request never finds a late completion written
 * into memory it has reused. A request is reported complete only after the backend finished all
 * of it; FLUSH waits for fdatasync. Completions go to the used ring in the order they finish;
 * those that finish in one turn of the event loop share one used-buffer notification check.
 * Adjacent reads taken in one drain are merged into one backend call (see `queueRead`).
 */
export class VirtioBlk implements VirtioDevice {
  readonly deviceId = VIRTIO_ID_BLOCK;
  readonly name = "blk";
  readonly queueMaxSizes: readonly number[];
  readonly features: bigint;
  readonly configSize = VirtioBlkConfigLayout.size;
  readonly backend: BlockBackend;
  readonly capacity: number;
  private readonly id: Buffer;
  private readonly config: Buffer;
  private ctx: DeviceContext | undefined;
  private pending = 0;
  private paused = false;
  private readonly free: BlkRequest[] = [];
  /** The run of adjacent reads taken by the current drain, not yet handed to the backend. */
  private readonly reads: BlkRequest[] = [];
  private signalCtx: DeviceContext | undefined;
  private readonly directReads: boolean;
  private readonly maxMergeBytes: number;
  /** The request header of the chain being parsed (copied out of guest memory). */
  private readonly hdr = Buffer.alloc(VirtioBlkOuthdrLayout.size);
  /** The same bytes as u32 words, on a little-endian host (x86-64): no Buffer read call per field. */
  private readonly hdr32: Uint32Array | undefined;
  private idleWaiters: (() => void)[] = [];
  /** Inside queueNotify: completions made inline leave the interrupt decision to its end. */
  private draining = false;
  /** What the current drain may still read inline (INLINE_DRAIN_BYTES). */
  private inlineLeft = 0;
  /** Requests completed with each status, for observability. */
  readonly stats = { ok: 0, ioerr: 0, unsupp: 0, dropped: 0 };

  constructor(opts: VirtioBlkOptions) {
    this.backend = opts.backend;
    this.directReads = opts.directReads ?? false;
    this.hdr32 = endianness() === "LE" ? new Uint32Array(this.hdr.buffer, this.hdr.byteOffset, this.hdr.length >>> 2) : undefined;
    this.maxMergeBytes = Math.min(opts.maxMergeBytes ?? DEFAULT_MERGE_BYTES, MAX_IO_BYTES);
    const qs = opts.queueSize ?? 256;
    this.queueMaxSizes = [qs];
    this.capacity = Math.floor(opts.backend.size / SECTOR_SIZE);
    this.id = Buffer.from((opts.id ?? "tsvmm").slice(0, VIRTIO_BLK_ID_BYTES), "latin1");
    const ro = opts.backend.readOnly;
    let f = bit(VIRTIO_BLK_F_SEG_MAX) | bit(VIRTIO_BLK_F_BLK_SIZE) | bit(VIRTIO_BLK_F_FLUSH);
    f |= ro ? bit(VIRTIO_BLK_F_RO) : bit(VIRTIO_BLK_F_DISCARD) | bit(VIRTIO_BLK_F_WRITE_ZEROES);
    this.features = f;
    this.config = VirtioBlkConfigLayout.encode({
      capacity: BigInt(this.capacity),
      sizeMax: 0,
      segMax: Math.max(1, qs - 2),
      geometry: { cylinders: 0, heads: 0, sectors: 0 },
      blkSize: SECTOR_SIZE,
      physicalBlockExp: 0,
      alignmentOffset: 0,
      minIoSize: 0,
      optIoSize: 0,
      wce: 0,
      unused: 0,
      numQueues: 1,
      maxDiscardSectors: ro ? 0 : MAX_RANGE_SECTORS,
      maxDiscardSeg: ro ? 0 : 1,
      discardSectorAlignment: ro ? 0 : 1,
      maxWriteZeroesSectors: ro ? 0 : MAX_RANGE_SECTORS,
      maxWriteZeroesSeg: ro ? 0 : 1,
      writeZeroesMayUnmap: 0,
      unused1: Buffer.alloc(3),
    });
  }

  readConfig(offset: number, data: Buffer): void {
    readConfigBytes(this.config, offset, data);
  }
  writeConfig(): void {
    // No writable field is offered (writeback toggle needs VIRTIO_BLK_F_CONFIG_WCE).
  }

  activate(ctx: DeviceContext): void {
    this.ctx = ctx;
  }

  /** Requests handed to the backend and not yet finished. */
  get inFlight(): number {
    return this.pending;
  }
  /** Resolves when no request is in flight (after a reset, before closing the backend). */
  idle(): Promise<void> {
    return this.pending === 0 ? Promise.resolve() : new Promise((r) => this.idleWaiters.push(r));
  }

  queueNotify(queue: number): void {
    const ctx = this.ctx;
    if (ctx === undefined || queue !== 0 || this.paused) return;
    let more = false;
    this.draining = true;
    this.inlineLeft = INLINE_DRAIN_BYTES;
    try {
      more = drainQueue(ctx, 0, (c) => this.start(ctx, c));
    } finally {
      // Also when a later chain was refused: the reads taken before it are in flight and must end.
      try {
        this.submitReads();
      } finally {
        this.draining = false;
      }
    }
    // Inline completions of this drain share one interrupt decision, as a batch from the pool does.
    if (this.pending === 0) this.flushSignal();
    if (more) setImmediate(() => this.ctx === ctx && ctx.current && this.queueNotify(0));
  }

  /** Parse and launch one request; returns bytes written when it finished synchronously, else null. */
  private start(ctx: DeviceContext, chain: DescriptorChain): number | null {
    if (chain.writableLength < 1) {
      throw new VirtqueueError("VIRTQ_CHAIN_SHORT", "blk: request has no device-writable status byte");
    }
    const hdrLen = VirtioBlkOuthdrLayout.size;
    if (chain.readableLength < hdrLen) return this.finishNow(chain, VIRTIO_BLK_S_IOERR);
    // Copied out (16 bytes) rather than viewed in place: no Buffer made per request.
    const hdr = this.hdr;
    chain.copyOut(hdr);
    const h32 = this.hdr32;
    let type: number;
    let sector: number;
    if (h32 !== undefined) {
      type = h32[BLK_OUTHDR_TYPE >>> 2]!;
      // As readAddr: a sector at or above 2^53 is none (-1, refused by inRange).
      const hi = h32[(BLK_OUTHDR_SECTOR >>> 2) + 1]!;
      sector = hi >= 0x200000 ? -1 : hi * 0x1_0000_0000 + h32[BLK_OUTHDR_SECTOR >>> 2]!;
    } else {
      type = hdr.readUInt32LE(BLK_OUTHDR_TYPE);
      sector = readAddr(hdr, BLK_OUTHDR_SECTOR);
    }
    const dataIn = chain.writableLength - 1;
    const dataOut = chain.readableLength - hdrLen;
    const ro = this.backend.readOnly;
    switch (type) {
      case VIRTIO_BLK_T_IN: {
        if (!this.inRange(sector, dataIn) || dataOut !== 0) return this.finishNow(chain, VIRTIO_BLK_S_IOERR);
        const p = this.request(ctx, chain, dataIn);
        let into: Buffer;
        if (this.directReads && chain.length - chain.firstWritable === 2 && chain.elementLength(chain.firstWritable) === dataIn) {
          into = chain.view(chain.firstWritable);
        } else {
          // The data lands in guest memory (chain.copyIn) only when the completion finds its activation current.
          into = p.bounce = this.takeBounce(dataIn);
        }
        p.position = sector * SECTOR_SIZE;
        p.into = into;
        this.queueRead(p);
        return null;
      }
      case VIRTIO_BLK_T_OUT: {
        if (ro || !this.inRange(sector, dataOut) || dataIn !== 0) return this.finishNow(chain, VIRTIO_BLK_S_IOERR);
        const p = this.request(ctx, chain, 0);
        collectViews(chain, 0, hdrLen, dataOut, p.data);
        try {
          this.backend.write(sector * SECTOR_SIZE, p.data, p.done);
        } catch (e) {
          this.backendThrew(p, e);
        }
        return null;
      }
      case VIRTIO_BLK_T_FLUSH: {
        const p = this.request(ctx, chain, 0);
        try {
          if (ro) setImmediate(p.done, null);
          else this.backend.flush(p.done);
        } catch (e) {
          this.backendThrew(p, e);
        }
        return null;
      }
      case VIRTIO_BLK_T_GET_ID: {
        const w = chain.writer();
        const n = Math.min(dataIn, VIRTIO_BLK_ID_BYTES);
        w.write(this.id.subarray(0, n));
        return this.finishNow(chain, VIRTIO_BLK_S_OK, w.written);
      }
      case VIRTIO_BLK_T_DISCARD:
      case VIRTIO_BLK_T_WRITE_ZEROES: {
        if (ro) return this.finishNow(chain, VIRTIO_BLK_S_UNSUPP);
        const seg = VirtioBlkDiscardWriteZeroesLayout.size;
        const r = chain.reader();
        r.skip(hdrLen);
        if (r.remaining !== seg) return this.finishNow(chain, r.remaining > seg && r.remaining % seg === 0 ? VIRTIO_BLK_S_UNSUPP : VIRTIO_BLK_S_IOERR);
        const s = r.readStruct(VirtioBlkDiscardWriteZeroesLayout);
        const isWz = type === VIRTIO_BLK_T_WRITE_ZEROES;
        // §5.2.6.2: unknown flags, or unmap on a discard, are UNSUPP; ranges past the end or the max are IOERR.
        if (s.flags & ~(isWz ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0)) return this.finishNow(chain, VIRTIO_BLK_S_UNSUPP);
        const start = s.sector > BigInt(Number.MAX_SAFE_INTEGER) ? -1 : Number(s.sector);
        if (start < 0 || s.numSectors > MAX_RANGE_SECTORS || start + s.numSectors > this.capacity) return this.finishNow(chain, VIRTIO_BLK_S_IOERR);
        const pos = start * SECTOR_SIZE;
        const len = s.numSectors * SECTOR_SIZE;
        const p = this.request(ctx, chain, 0);
        try {
          if (isWz) this.backend.writeZeroes(pos, len, p.done);
          else this.backend.discard(pos, len, p.done);
        } catch (e) {
          this.backendThrew(p, e);
        }
        return null;
      }
      default:
        return this.finishNow(chain, VIRTIO_BLK_S_UNSUPP);
    }
  }

  /**
   * Queue a read for submission. Reads are merged as a block layer merges them: while each one
   * starts where the run before it ends (a sequential stream), they join that run, which goes to
   * the backend as one readv (one thread-pool job, not one per request); a read that does not
   * continue the run sends the run off at once, so random reads are not held back.
   */
  private queueRead(p: BlkRequest): void {
    const run = this.reads;
    const n = run.length;
    if (n > 0) {
      const first = run[0]!;
      const last = run[n - 1]!;
      const end = last.position + last.into.length;
      const fits = this.backend.readv !== undefined && p.into.length > 0 && n < MAX_MERGE && end + p.into.length - first.position <= this.maxMergeBytes;
      if (p.position === end && fits) {
        run.push(p);
        return;
      }
      this.submitReads();
    }
    run.push(p);
  }

  /**
   * Send the pending run of reads to the backend (see queueRead). With an inline path its reads are
   * first tried inline, in order, while their data is at hand and the drain's budget lasts; the
   * first that is not, and those after it, go to the pool (still merged).
   */
  private submitReads(): void {
    const run = this.reads;
    const n = run.length;
    if (n === 0) return;
    if (n === 1) {
      const p = run.pop()!; // not `length = 0`: that store is a runtime call
      if (!this.readNow(p)) this.readOnPool(p);
      return;
    }
    const group = run.splice(0);
    let k = 0;
    while (k < n && this.readNow(group[k]!)) k++;
    if (k === n) return;
    if (k === n - 1) {
      this.readOnPool(group[k]!);
      return;
    }
    const rest = k === 0 ? group : group.slice(k);
    const first = rest[0]!;
    try {
      this.backend.readv!(
        first.position,
        rest.map((p) => p.into),
        (err) => {
          for (const p of rest) this.complete(p, err);
        },
      );
    } catch (e) {
      for (const p of rest) this.backendThrew(p, e);
    }
  }

  /**
   * Reads `p` inline when the backend can and its data is at hand; true when `p` is finished (read,
   * or failed because the backend threw). Inline, the read completes before anything else runs:
   * no reset can come between it and its completion, so it may land in guest memory directly
   * (when the data is one element).
   */
  private readNow(p: BlkRequest): boolean {
    const backend = this.backend;
    const len = p.into.length;
    if (backend.readInline === undefined || len > this.inlineLeft) return false;
    try {
      const bounce = p.bounce;
      p.inlineTried = false;
      if (bounce !== undefined && p.chain!.fillWritable(bounce.length, p.fillInline)) {
        p.bounce = undefined;
        this.giveBounce(bounce);
      } else if (p.inlineTried || !backend.readInline(p.position, p.into, 0, len)) {
        // Declined (p.inlineTried: the data is not at hand), or the data is split over elements
        // and not at hand for the bounce buffer either.
        return false;
      }
    } catch (e) {
      this.backendThrew(p, e);
      return true;
    }
    this.inlineLeft -= len;
    this.complete(p, null);
    return true;
  }

  private readOnPool(p: BlkRequest): void {
    try {
      this.backend.read(p.position, p.into, p.done);
    } catch (e) {
      this.backendThrew(p, e);
    }
  }

  /** A pooled request record, counted in flight; the caller hands `p.done` to the backend exactly once. */
  private request(ctx: DeviceContext, chain: DescriptorChain, dataLen: number): BlkRequest {
    const p = this.free.pop() ?? new BlkRequest(this);
    p.ctx = ctx;
    p.chain = chain;
    p.dataLen = dataLen;
    this.pending++;
    return p;
  }

  /** A backend that throws instead of calling back fails this request (IOERR), not the device. */
  private backendThrew(p: BlkRequest, e: unknown): void {
    this.complete(p, e instanceof Error ? e : new VirtioDeviceError("VIRTIO_DEVICE_BACKEND", `blk: backend threw ${String(e)}`));
  }

  /** Backend completion of `p` (err null = success). Never throws: a fault becomes DEVICE_NEEDS_RESET. */
  complete(p: BlkRequest, err: Error | null): void {
    this.pending--;
    const ctx = p.ctx!;
    const chain = p.chain!;
    try {
      // The activation that took this chain is gone (reset, NEEDS_RESET): the driver may have reused its memory.
      if (!ctx.current) this.stats.dropped++;
      else {
        const status = err === null ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR;
        const bounce = p.bounce;
        if (status === VIRTIO_BLK_S_OK && bounce !== undefined) chain.copyIn(bounce);
        writeStatus(chain, status);
        this.count(status);
        ctx.queues[0]!.addUsed(chain, status === VIRTIO_BLK_S_OK ? p.dataLen + 1 : 1);
        this.signalLater(ctx);
      }
    } catch (e) {
      ctx.fail(e);
    } finally {
      if (p.bounce !== undefined) this.giveBounce(p.bounce);
      p.bounce = undefined;
      p.into = EMPTY;
      p.ctx = undefined;
      p.chain = undefined;
      if (p.data.length !== 0) p.data.length = 0;
      this.free.push(p);
      if (this.pending === 0) {
        // Nothing else is coming for this batch: signal now, before anyone waiting for idle looks
        // (a drain completing reads inline signals once when it ends).
        if (!this.draining) this.flushSignal();
        for (const w of this.idleWaiters.splice(0)) w();
      }
    }
  }

  /**
   * One used-buffer notification check per batch of completions: completions that finish in the
   * same turn of the event loop share it (event idx then decides whether the driver hears).
   */
  private signalLater(ctx: DeviceContext): void {
    const cur = this.signalCtx;
    if (cur === ctx) return;
    if (cur !== undefined) cur.signalUsed(0);
    else setImmediate(this.flushSignal);
    this.signalCtx = ctx;
  }
  private readonly flushSignal = (): void => {
    const c = this.signalCtx;
    this.signalCtx = undefined;
    c?.signalUsed(0);
  };

  /** Reused bounce buffers by size: a fresh 4 KiB+ Buffer per request is a fresh ArrayBuffer. */
  private readonly bounces = new Map<number, Buffer[]>();
  /** The list of the size asked for last (the usual stream is of one size): no Map lookup for it. */
  private bounceSize = -1;
  private bounceList: Buffer[] = [];
  private bounceListOf(n: number): Buffer[] | undefined {
    if (n === this.bounceSize) return this.bounceList;
    const l = this.bounces.get(n);
    if (l !== undefined) {
      this.bounceSize = n;
      this.bounceList = l;
    }
    return l;
  }
  private takeBounce(n: number): Buffer {
    return this.bounceListOf(n)?.pop() ?? Buffer.allocUnsafeSlow(n);
  }
  private giveBounce(b: Buffer): void {
    if (b.length > 1 << 20) return;
    let l = this.bounceListOf(b.length);
    if (l === undefined) {
      l = [];
      this.bounces.set(b.length, l);
    }
    if (l.length < 64) l.push(b);
  }

  private inRange(sector: number, bytes: number): boolean {
    return sector >= 0 && bytes % SECTOR_SIZE === 0 && bytes <= MAX_IO_BYTES && sector + bytes / SECTOR_SIZE <= this.capacity;
  }

  private count(status: number): void {
    if (status === VIRTIO_BLK_S_OK) this.stats.ok++;
    else if (status === VIRTIO_BLK_S_IOERR) this.stats.ioerr++;
    else this.stats.unsupp++;
  }

  /** Write the status byte at the end of the writable part; returns the used length. */
  private finishNow(chain: DescriptorChain, status: number, dataWritten = 0): number {
    writeStatus(chain, status);
    this.count(status);
    return status === VIRTIO_BLK_S_OK ? dataWritten + 1 : 1;
  }

  /** Take no new request, and resolve once every request in flight is complete in guest memory. */
  pause(): Promise<void> {
    this.paused = true;
    return this.idle();
  }
  resume(): void {
    this.paused = false;
  }

  reset(): void {
    // In-flight requests keep running in the pool; their completions see a dead context and drop.
    this.ctx = undefined;
  }

  saveState(): VirtioBlkState {
    return { id: this.id.toString("latin1"), capacity: this.capacity, readOnly: this.backend.readOnly };
  }
  restoreState(state: unknown): void {
    const s = state as Partial<VirtioBlkState> | null;
    if (s === null || typeof s !== "object" || s.capacity !== this.capacity || s.readOnly !== this.backend.readOnly) {
      throw new VirtioDeviceError("VIRTIO_DEVICE_BAD_STATE", "blk: saved state is for a different disk (capacity or read-only differ)");
    }
  }
}

/** A request in flight: what its completion needs. Pooled, with its callback bound once, so a request allocates no closure. */
class BlkRequest {
  ctx: DeviceContext | undefined;
  chain: DescriptorChain | undefined;
  /** Guest views of the request's data (reads: where it lands; writes: what goes out). */
  readonly data: Buffer[] = [];
  bounce: Buffer | undefined;
  dataLen = 0;
  /** Reads: the byte offset in the backend and the buffer the backend fills (bounce or guest view). */
  position = 0;
  into: Buffer = EMPTY;
  readonly done: IoDone;
  /** For DescriptorChain.fillWritable: an inline read of this request straight into the guest's window. */
  readonly fillInline: (buf: Uint8Array, offset: number, length: number) => boolean;
  constructor(owner: VirtioBlk) {
    this.done = (err) => owner.complete(this, err);
    this.fillInline = (buf, offset, length) => {
      this.inlineTried = true;
      return owner.backend.readInline!(this.position, buf, offset, length);
    };
  }
  inlineTried = false;
}

/** Push views of `len` bytes of `chain` starting `skip` bytes into element `from` onwards; zero-length pieces are left out. */
function collectViews(chain: DescriptorChain, from: number, skip: number, len: number, out: Buffer[]): void {
  for (let i = from; len > 0 && i < chain.length; i++) {
    const v = chain.view(i);
    if (skip >= v.length) {
      skip -= v.length;
      continue;
    }
    const take = Math.min(v.length - skip, len);
    out.push(skip === 0 && take === v.length ? v : v.subarray(skip, skip + take));
    len -= take;
    skip = 0;
  }
}

/** The status byte is the last byte of the chain's writable part (§5.2.6). */
function writeStatus(chain: DescriptorChain, status: number): void {
  if (!chain.setWritableByte(chain.writableLength - 1, status)) {
    throw new VirtqueueError("VIRTQ_CHAIN_SHORT", "blk: request has no device-writable status byte");
  }
}
