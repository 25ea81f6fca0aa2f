import { close, closeSync, fdatasync, fstatSync, openSync, read, write, writev } from "node:fs";
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
import { readBlkOuthdr, VirtioBlkConfigLayout, VirtioBlkDiscardWriteZeroesLayout, VirtioBlkOuthdrLayout } from "../layouts.js";
import type { ChainWriter, DescriptorChain } from "../queue/chain.js";

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
  write(position: number, from: readonly Buffer[], done: IoDone): void;
  /** Make every completed write durable. */
  flush(done: IoDone): void;
  writeZeroes(position: number, length: number, done: IoDone): void;
  /** May drop the data; contents of the range are then unspecified (virtio 1.2 §5.2.6). */
  discard(position: number, length: number, done: IoDone): void;
  close(): Promise<void>;
}

const ZEROES = Buffer.alloc(1 << 20);

/**
 * A raw image file, I/O on the libuv thread pool (fs.read/writev/fdatasync callbacks), so the
 * event loop only ever issues requests and copies results.
 */
export class RawFileBackend implements BlockBackend {
  readonly size: number;
  readonly readOnly: boolean;
  private fd: number;

  private constructor(fd: number, size: number, readOnly: boolean) {
    this.fd = fd;
    this.size = size;
    this.readOnly = readOnly;
  }

  /** Open `path` (O_RDWR, or O_RDONLY with readOnly). Throws VirtioDeviceError when it cannot. */
  static open(path: string, opts: { readOnly?: boolean } = {}): RawFileBackend {
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
    return new RawFileBackend(fd, st.size, ro);
  }

  read(position: number, into: Buffer, done: IoDone): void {
    const step = (got: number): void => {
      if (got === into.length) {
        done(null);
        return;
      }
      read(this.fd, into, got, into.length - got, position + got, (err, n) => {
        if (err) done(err);
        else if (n === 0) done(new VirtioDeviceError("VIRTIO_DEVICE_BACKEND", `blk: short read at ${position + got}`));
        else step(got + n);
      });
    };
    step(0);
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
        const rest: Buffer[] = [];
        for (const b of bufs) {
          if (n >= b.length) n -= b.length;
          else {
            rest.push(n > 0 ? b.subarray(n) : b);
            n = 0;
          }
        }
        bufs = rest;
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

export interface VirtioBlkOptions {
  backend: BlockBackend;
  /** Up to 20 bytes returned by GET_ID (default "tsvmm"). */
  id?: string;
  /** Request queue size (default 256). */
  queueSize?: number;
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

/**
 * virtio-blk (virtio 1.2 §5.2) over a {@link BlockBackend}. One request queue. Reads land in a
 * bounce buffer and are copied into guest memory only if the activation that took them is still
 * current, so a driver that resets the device mid-request never finds a late completion written
 * into memory it has reused. A request is reported complete only after the backend finished all
 * of it; FLUSH waits for fdatasync. Completions go to the used ring in the order they finish.
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
  private idleWaiters: (() => void)[] = [];
  /** Requests completed with each status, for observability. */
  readonly stats = { ok: 0, ioerr: 0, unsupp: 0, dropped: 0 };

  constructor(opts: VirtioBlkOptions) {
    this.backend = opts.backend;
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
    if (ctx === undefined || queue !== 0) return;
    const more = drainQueue(ctx, 0, (c) => this.start(ctx, c));
    if (more) setImmediate(() => this.ctx === ctx && ctx.current && this.queueNotify(0));
  }

  /** Parse and launch one request; returns bytes written when it finished synchronously, else null. */
  private start(ctx: DeviceContext, chain: DescriptorChain): number | null {
    const w = chain.writer();
    if (w.remaining < 1) {
      throw new VirtqueueError("VIRTQ_CHAIN_SHORT", "blk: request has no device-writable status byte");
    }
    const r = chain.reader();
    if (r.remaining < VirtioBlkOuthdrLayout.size) return this.finishNow(chain, VIRTIO_BLK_S_IOERR);
    const { type, sector } = readBlkOuthdr(r.read(VirtioBlkOuthdrLayout.size));
    const dataIn = w.remaining - 1;
    const ro = this.backend.readOnly;
    switch (type) {
      case VIRTIO_BLK_T_IN: {
        if (!this.inRange(sector, dataIn) || r.remaining !== 0) return this.finishNow(chain, VIRTIO_BLK_S_IOERR);
        const bounce = this.takeBounce(dataIn);
        return this.launch(
          ctx,
          chain,
          (d) => this.backend.read(sector * SECTOR_SIZE, bounce, d),
          dataIn,
          (wr) => {
            wr.write(bounce);
          },
          () => this.giveBounce(bounce),
        );
      }
      case VIRTIO_BLK_T_OUT: {
        if (ro) return this.finishNow(chain, VIRTIO_BLK_S_IOERR);
        const len = r.remaining;
        if (!this.inRange(sector, len) || dataIn !== 0) return this.finishNow(chain, VIRTIO_BLK_S_IOERR);
        const views = r.views(len);
        return this.launch(ctx, chain, (d) => this.backend.write(sector * SECTOR_SIZE, views, d), 0);
      }
      case VIRTIO_BLK_T_FLUSH:
        return this.launch(ctx, chain, (d) => (ro ? setImmediate(d, null) : this.backend.flush(d)), 0);
      case VIRTIO_BLK_T_GET_ID: {
        const n = Math.min(dataIn, VIRTIO_BLK_ID_BYTES);
        const id = Buffer.alloc(n);
        this.id.copy(id, 0, 0, n);
        w.write(id);
        return this.finishNow(chain, VIRTIO_BLK_S_OK, w.written);
      }
      case VIRTIO_BLK_T_DISCARD:
      case VIRTIO_BLK_T_WRITE_ZEROES: {
        if (ro) return this.finishNow(chain, VIRTIO_BLK_S_UNSUPP);
        const seg = VirtioBlkDiscardWriteZeroesLayout.size;
        if (r.remaining !== seg) return this.finishNow(chain, r.remaining > seg && r.remaining % seg === 0 ? VIRTIO_BLK_S_UNSUPP : VIRTIO_BLK_S_IOERR);
        const s = r.readStruct(VirtioBlkDiscardWriteZeroesLayout);
        const isWz = type === VIRTIO_BLK_T_WRITE_ZEROES;
        // §5.2.6.2: unknown flags, or unmap on a discard, are UNSUPP; ranges past the end or the max are IOERR.
        if (s.flags & ~(isWz ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0)) return this.finishNow(chain, VIRTIO_BLK_S_UNSUPP);
        const start = s.sector > BigInt(Number.MAX_SAFE_INTEGER) ? -1 : Number(s.sector);
        if (start < 0 || s.numSectors > MAX_RANGE_SECTORS || start + s.numSectors > this.capacity) return this.finishNow(chain, VIRTIO_BLK_S_IOERR);
        const pos = start * SECTOR_SIZE;
        const len = s.numSectors * SECTOR_SIZE;
        return this.launch(ctx, chain, (d) => (isWz ? this.backend.writeZeroes(pos, len, d) : this.backend.discard(pos, len, d)), 0);
      }
      default:
        return this.finishNow(chain, VIRTIO_BLK_S_UNSUPP);
    }
  }

  /** Reused bounce buffers by size: a fresh 4 KiB+ Buffer per request is a fresh ArrayBuffer. */
  private readonly bounces = new Map<number, Buffer[]>();
  private takeBounce(n: number): Buffer {
    return this.bounces.get(n)?.pop() ?? Buffer.allocUnsafeSlow(n);
  }
  private giveBounce(b: Buffer): void {
    if (b.length > 1 << 20) return;
    const l = this.bounces.get(b.length) ?? [];
    if (l.length < 64) l.push(b);
    this.bounces.set(b.length, l);
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
    const w = chain.writer();
    w.views(dataWritten);
    w.views(w.remaining - 1);
    w.write(Buffer.of(status));
    this.count(status);
    return status === VIRTIO_BLK_S_OK ? dataWritten + 1 : 1;
  }

  private launch(
    ctx: DeviceContext,
    chain: DescriptorChain,
    io: (done: IoDone) => void,
    dataLen: number,
    fill?: (w: ChainWriter) => void,
    release?: () => void,
  ): null {
    this.pending++;
    const done = (status: number): void => {
      this.pending--;
      try {
        // The activation that took this chain is gone (reset, NEEDS_RESET): the driver may have reused its memory.
        if (!ctx.current) {
          this.stats.dropped++;
          return;
        }
        let used: number;
        if (status === VIRTIO_BLK_S_OK && fill !== undefined) {
          const w = chain.writer();
          fill(w);
          w.write(Buffer.of(status));
          this.count(status);
          used = dataLen + 1;
        } else used = this.finishNow(chain, status);
        const q = ctx.queues[0]!;
        q.addUsed(chain, used);
        ctx.signalUsed(0);
      } catch (e) {
        ctx.fail(e);
      } finally {
        release?.();
        if (this.pending === 0) for (const w of this.idleWaiters.splice(0)) w();
      }
    };
    try {
      io((err) => done(err === null ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR));
    } catch {
      // A backend that throws instead of calling back fails this request, not the device.
      done(VIRTIO_BLK_S_IOERR);
    }
    return null;
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
