import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type BlockBackend,
  bit,
  type DriverQueue,
  type IoDone,
  type NetBackend,
  RawFileBackend,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_T_IN,
  VIRTIO_F_RING_PACKED,
  VIRTIO_RING_F_EVENT_IDX,
  VirtioBlk,
  VirtioBlkOuthdrLayout,
  VirtioConsole,
  VirtioNet,
  VirtioNetHdrV1Layout,
  VirtioRng,
} from "@tsvmm/virtio";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { harness, until } from "./helpers/harness.js";

// MmioTransport.pause/resume (what Vmm.pause uses) and the blk completion path's batching.

let dir = "";
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "tsvmm-quiesce-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A disk whose reads complete only when the test says so, all in the same turn (the rest is a raw file's). */
class HeldBackend implements BlockBackend {
  readonly held: (() => void)[] = [];
  constructor(
    readonly inner: RawFileBackend,
    private readonly content: Buffer,
  ) {}
  get size(): number {
    return this.inner.size;
  }
  get readOnly(): boolean {
    return this.inner.readOnly;
  }
  read(position: number, into: Buffer, done: IoDone): void {
    this.held.push(() => {
      this.content.copy(into, 0, position, position + into.length);
      done(null);
    });
  }
  write(position: number, from: readonly Buffer[], done: IoDone): void {
    this.inner.write(position, from, done);
  }
  flush(done: IoDone): void {
    this.inner.flush(done);
  }
  writeZeroes(position: number, length: number, done: IoDone): void {
    this.inner.writeZeroes(position, length, done);
  }
  discard(position: number, length: number, done: IoDone): void {
    this.inner.discard(position, length, done);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

type H = ReturnType<typeof harness<VirtioBlk>>;
function postRead(h: H, q: DriverQueue, sector: number, len: number) {
  const hdr = h.heap.alloc(16);
  h.mem.write(hdr, VirtioBlkOuthdrLayout.encode({ type: VIRTIO_BLK_T_IN, ioprio: 0, sector: BigInt(sector) }));
  const data = h.heap.alloc(len);
  h.mem.fill(data, len, 0xab);
  const status = h.heap.alloc(1);
  h.mem.writeU8(status, 0xee);
  q.add([
    { addr: hdr, len: 16, writable: false },
    { addr: data, len, writable: true },
    { addr: status, len: 1, writable: true },
  ]);
  return { data, status, sector, len };
}

describe.each([
  ["split", 0n],
  ["packed", bit(VIRTIO_F_RING_PACKED)],
])("virtio-blk, %s ring", (_n, ring) => {
  const content = randomBytes(1 << 20);
  const image = (): string => {
    const p = join(dir, `disk-${Math.random().toString(36).slice(2)}`);
    writeFileSync(p, content);
    return p;
  };

  it("pause() resolves only once every request in flight is complete in guest memory; a kick while paused waits for resume()", async () => {
    const blk = new VirtioBlk({ backend: RawFileBackend.open(image()) });
    const h = harness(blk);
    const [q] = h.drv.start(ring, [16]);
    const reqs = [0, 8, 16, 24].map((s) => postRead(h, q!, s, 4096));
    h.drv.kick(0);
    expect(blk.inFlight).toBe(4);
    await h.t.pause();
    expect(blk.inFlight).toBe(0);
    for (const r of reqs) {
      expect(h.mem.readU8(r.status)).toBe(VIRTIO_BLK_S_OK);
      expect(h.mem.read(r.data, r.len).equals(content.subarray(r.sector * 512, r.sector * 512 + r.len))).toBe(true);
    }
    expect(q!.takeUsed()).toHaveLength(4);
    // Paused: the doorbell is held, the ring untouched.
    const late = postRead(h, q!, 32, 4096);
    h.drv.kick(0);
    await new Promise((r) => setTimeout(r, 20));
    expect(blk.inFlight).toBe(0);
    expect(h.mem.readU8(late.status)).toBe(0xee);
    expect(q!.takeUsed()).toEqual([]);
    h.t.resume();
    const used: unknown[] = [];
    await until(() => used.push(...q!.takeUsed()) > 0, "the held request");
    expect(h.mem.readU8(late.status)).toBe(VIRTIO_BLK_S_OK);
    expect(h.errors).toEqual([]);
  });

  it("completions that finish in one turn of the event loop share one interrupt (no event idx: one per turn, not one per request)", async () => {
    const backend = new HeldBackend(RawFileBackend.open(image()), content);
    const blk = new VirtioBlk({ backend });
    const h = harness(blk);
    const [q] = h.drv.start(ring, [32]);
    const reqs = Array.from({ length: 8 }, (_, i) => postRead(h, q!, i * 8, 4096));
    h.drv.kick(0);
    expect(backend.held).toHaveLength(8);
    const raisedBefore = h.irq.raised;
    // All 8 complete in this one turn.
    for (const go of backend.held.splice(0)) go();
    await blk.idle();
    for (const r of reqs) {
      expect(h.mem.readU8(r.status)).toBe(VIRTIO_BLK_S_OK);
      expect(h.mem.read(r.data, r.len).equals(content.subarray(r.sector * 512, r.sector * 512 + r.len))).toBe(true);
    }
    expect(q!.takeUsed()).toHaveLength(8);
    expect(h.irq.raised - raisedBefore).toBe(1);
  });

  it("with event idx armed for the first completion, 8 requests raise exactly one interrupt and all are complete", async () => {
    const blk = new VirtioBlk({ backend: RawFileBackend.open(image()) });
    const h = harness(blk);
    const [q] = h.drv.start(ring | bit(VIRTIO_RING_F_EVENT_IDX), [32]);
    q!.setInterrupts(true, 1);
    const seenAtIrq: number[] = [];
    const reqs = Array.from({ length: 8 }, (_, i) => postRead(h, q!, i * 8, 512));
    const raised0 = h.irq.raised;
    h.drv.kick(0);
    await blk.idle();
    expect(h.irq.raised - raised0).toBe(1);
    seenAtIrq.push(q!.takeUsed().length);
    expect(seenAtIrq).toEqual([8]);
    for (const r of reqs) expect(h.mem.readU8(r.status)).toBe(VIRTIO_BLK_S_OK);
    expect(h.errors).toEqual([]);
  });

  it("directReads: the data lands in the guest buffer with no bounce copy, same bytes and status as the default", async () => {
    const blk = new VirtioBlk({ backend: RawFileBackend.open(image()), directReads: true });
    const h = harness(blk);
    const [q] = h.drv.start(ring, [16]);
    const reqs = [0, 3, 100, 2040].map((s) => postRead(h, q!, s, 4096));
    h.drv.kick(0);
    await blk.idle();
    for (const r of reqs) {
      expect(h.mem.readU8(r.status)).toBe(VIRTIO_BLK_S_OK);
      expect(h.mem.read(r.data, r.len).equals(content.subarray(r.sector * 512, r.sector * 512 + r.len))).toBe(true);
    }
    expect(q!.takeUsed().map((u) => u.len)).toEqual([4097, 4097, 4097, 4097]);
  });
});

describe("net and console hold host input while paused", () => {
  class PushBackend implements NetBackend {
    cb: ((f: Buffer) => void) | undefined;
    readonly sent: Buffer[] = [];
    pauses = 0;
    resumes = 0;
    write(frame: Buffer): void {
      this.sent.push(frame);
    }
    onFrame(cb: (frame: Buffer) => void): void {
      this.cb = cb;
    }
    pause(): void {
      this.pauses++;
    }
    resume(): void {
      this.resumes++;
    }
  }

  it("net: frames handed over while paused are held (up to maxPendingFrames, the rest dropped and counted) and delivered on resume", async () => {
    const backend = new PushBackend();
    const net = new VirtioNet({ backend, maxPendingFrames: 3 });
    const h = harness(net);
    const [rx] = h.drv.start(0n, [8, 8]);
    const bufs = Array.from({ length: 4 }, () => {
      const a = h.heap.alloc(2048);
      h.mem.fill(a, 2048, 0xee);
      rx!.add([{ addr: a, len: 2048, writable: true }]);
      return a;
    });
    h.drv.kick(0);
    await h.t.pause();
    expect(backend.pauses).toBe(1);
    const before = Buffer.concat(bufs.map((a) => h.mem.read(a, 2048)));
    for (let i = 0; i < 5; i++) backend.cb!(Buffer.alloc(60, i + 1));
    expect(Buffer.concat(bufs.map((a) => h.mem.read(a, 2048))).equals(before)).toBe(true);
    expect(rx!.takeUsed()).toEqual([]);
    expect(net.pendingFrames).toBe(3);
    expect(net.stats.rxDropped).toBe(2);
    h.t.resume();
    expect(backend.resumes).toBe(1);
    const used = rx!.takeUsed();
    expect(used).toHaveLength(3);
    used.forEach((u, i) => {
      expect(u.len).toBe(VirtioNetHdrV1Layout.size + 60);
      expect(h.mem.readU8(u.elements[0]!.addr + VirtioNetHdrV1Layout.size)).toBe(i + 1);
    });
  });

  it("console: input while paused waits in the device and arrives on resume", async () => {
    const out: Buffer[] = [];
    const con = new VirtioConsole({ output: (b) => out.push(b) });
    const h = harness(con);
    const [rx] = h.drv.start(0n, [8, 8]);
    const a = h.heap.alloc(64);
    rx!.add([{ addr: a, len: 64, writable: true }]);
    h.drv.kick(0);
    await h.t.pause();
    con.input(Buffer.from("typed while paused"));
    expect(rx!.takeUsed()).toEqual([]);
    h.t.resume();
    const used = rx!.takeUsed();
    expect(used).toHaveLength(1);
    expect(h.mem.read(a, used[0]!.len).toString()).toBe("typed while paused");
  });
});

describe("virtio-blk read merging", () => {
  /** A raw file that counts how the device called it. */
  class CountingBackend extends HeldBackend {
    reads = 0;
    readvs: number[] = [];
    override read(position: number, into: Buffer, done: IoDone): void {
      this.reads++;
      this.inner.read(position, into, done);
    }
    readv(position: number, into: readonly Buffer[], done: IoDone): void {
      this.readvs.push(into.length);
      this.inner.readv(position, into, done);
    }
  }
  const content = randomBytes(1 << 20);
  const setup = (queueSize = 64) => {
    const p = join(dir, `merge-${Math.random().toString(36).slice(2)}`);
    writeFileSync(p, content);
    const backend = new CountingBackend(RawFileBackend.open(p), content);
    const blk = new VirtioBlk({ backend });
    const h = harness(blk);
    const [q] = h.drv.start(0n, [queueSize]);
    return { backend, blk, h, q: q! };
  };
  const check = (h: H, reqs: ReturnType<typeof postRead>[]) => {
    for (const r of reqs) {
      expect(h.mem.readU8(r.status)).toBe(VIRTIO_BLK_S_OK);
      expect(h.mem.read(r.data, r.len).equals(content.subarray(r.sector * 512, r.sector * 512 + r.len))).toBe(true);
    }
  };

  it("runs of adjacent reads go to the backend as one readv each; a read that does not continue the run is sent alone", async () => {
    const { backend, blk, h, q } = setup();
    const sectors = [0, 8, 16, 24, 200, 208, 100, 1000, 16];
    const reqs = sectors.map((s) => postRead(h, q, s, 4096));
    h.drv.kick(0);
    await blk.idle();
    check(h, reqs);
    expect(backend.readvs).toEqual([4, 2]);
    expect(backend.reads).toBe(3);
    expect(q.takeUsed()).toHaveLength(sectors.length);
  });

  it("a refused chain after taken reads: the device needs a reset, and the reads it had taken still end (dropped, none left in flight)", async () => {
    const { backend, blk, h, q } = setup();
    postRead(h, q, 0, 4096);
    postRead(h, q, 8, 4096);
    // A request whose buffer lies outside guest RAM.
    q.add([{ addr: 0x7fff_0000, len: 16, writable: false }]);
    h.drv.kick(0);
    expect(h.errors.map((e) => e.code)).toEqual(["VIRTQ_BUFFER_OUT_OF_RANGE"]);
    await blk.idle();
    expect(blk.inFlight).toBe(0);
    expect(backend.readvs).toEqual([2]);
    expect(blk.stats.dropped).toBe(2);
    expect(q.takeUsed()).toEqual([]);
  });
});

describe("a doorbell held by pause() is not lost by a snapshot", () => {
  it("rung while paused, saved, restored into a new transport: the restored device serves the buffer", async () => {
    const h = harness(new VirtioRng());
    const [q] = h.drv.start(0n, [8]);
    await h.t.pause();
    const buf = h.heap.alloc(32);
    h.mem.fill(buf, 32, 0);
    q!.add([{ addr: buf, len: 32, writable: true }]);
    h.drv.kick(0);
    expect(q!.takeUsed()).toEqual([]);
    const saved = h.t.saveState();
    // The restored VM: same guest memory, a fresh transport and device.
    const h2 = harness(new VirtioRng(), { mem: h.mem });
    h2.t.restoreState(saved);
    const used = q!.takeUsed();
    expect(used.map((u) => u.len)).toEqual([32]);
    expect(h.mem.read(buf, 32).equals(Buffer.alloc(32))).toBe(false);
    expect(h2.errors).toEqual([]);
  });
});

describe("virtio-blk merge limit", () => {
  it("maxMergeBytes splits a long sequential run into several backend calls", async () => {
    const content = randomBytes(1 << 20);
    const p = join(dir, "merge-limit");
    writeFileSync(p, content);
    const raw = RawFileBackend.open(p);
    const calls: number[] = [];
    const backend: BlockBackend = {
      size: raw.size,
      readOnly: false,
      read: (pos, into, done) => {
        calls.push(1);
        raw.read(pos, into, done);
      },
      readv: (pos, into, done) => {
        calls.push(into.length);
        raw.readv(pos, into, done);
      },
      write: (pos, from, done) => raw.write(pos, from, done),
      flush: (done) => raw.flush(done),
      writeZeroes: (pos, len, done) => raw.writeZeroes(pos, len, done),
      discard: (pos, len, done) => raw.discard(pos, len, done),
      close: () => raw.close(),
    };
    const blk = new VirtioBlk({ backend, maxMergeBytes: 16 << 10 });
    const h = harness(blk);
    const [q] = h.drv.start(0n, [64]);
    // Ten adjacent 4 KiB reads: runs of at most 16 KiB -> 4 + 4 + 2.
    const reqs = Array.from({ length: 10 }, (_, i) => postRead(h, q!, i * 8, 4096));
    h.drv.kick(0);
    await blk.idle();
    expect(calls).toEqual([4, 4, 2]);
    for (const r of reqs) expect(h.mem.read(r.data, r.len).equals(content.subarray(r.sector * 512, r.sector * 512 + r.len))).toBe(true);
  });
});
