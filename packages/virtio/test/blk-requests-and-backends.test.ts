import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, truncateSync, } from "node:fs";
import type { TsvmmError } from "@tsvmm/abi";
import {
  type BlockBackend,
  bit,
  type DriverQueue,
  type IoDone,
  RawFileBackend,
  VIRTIO_BLK_F_DISCARD,
  VIRTIO_BLK_F_FLUSH,
  VIRTIO_BLK_F_WRITE_ZEROES,
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_UNSUPP,
  VIRTIO_BLK_T_DISCARD,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VIRTIO_BLK_T_WRITE_ZEROES,
  VIRTIO_CONFIG_S_NEEDS_RESET,
  VIRTIO_F_RING_PACKED,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
  VirtioBlk,
  VirtioBlkConfigLayout,
  VirtioBlkDiscardWriteZeroesLayout,
  VirtioBlkOuthdrLayout,
} from "@tsvmm/virtio";
import { describe, expect, it } from "vitest";
import { harness, until } from "./helpers/harness.js";
import { imageDir } from "./helpers/images.js";

const scratch = imageDir("tsvmm-blk-cov-");
const image = scratch.image;

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return (e as TsvmmError).code ?? "not typed";
  }
  return "no error";
}

/**
 * A block backend over a host Buffer whose operations can be made to fail, as a disk can: the
 * error path of a backend (a callback with an error, or a backend bug that throws) cannot be
 * produced on demand with a healthy file.
 */
class MemoryBackend implements BlockBackend {
  readonly data: Buffer;
  failWith: Error | null = null;
  throwOnCall = false;
  flushes = 0;
  constructor(
    size: number,
    readonly readOnly = false,
  ) {
    this.data = randomBytes(size);
  }
  get size(): number {
    return this.data.length;
  }
  private finish(done: IoDone, act: () => void): void {
    if (this.throwOnCall) throw new Error("backend bug");
    const err = this.failWith;
    setImmediate(() => {
      if (err === null) act();
      done(err);
    });
  }
  read(position: number, into: Buffer, done: IoDone): void {
    this.finish(done, () => this.data.copy(into, 0, position, position + into.length));
  }
  write(position: number, from: readonly Buffer[], done: IoDone): void {
    this.finish(done, () => {
      let p = position;
      for (const b of from) p += b.copy(this.data, p);
    });
  }
  flush(done: IoDone): void {
    this.finish(done, () => this.flushes++);
  }
  writeZeroes(position: number, length: number, done: IoDone): void {
    this.finish(done, () => this.data.fill(0, position, position + length));
  }
  discard(_position: number, _length: number, done: IoDone): void {
    this.finish(done, () => {});
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

type H = ReturnType<typeof harness<VirtioBlk>>;

/** One request as a driver lays it out (§5.2.6): header, out data, in data, status byte. */
function post(h: H, q: DriverQueue, type: number, sector: number | bigint, out: Buffer | null, inLen: number, opts: { indirect?: boolean; hdrLen?: number } = {}) {
  const hdrLen = opts.hdrLen ?? 16;
  const hdr = h.heap.alloc(16);
  h.mem.write(hdr, VirtioBlkOuthdrLayout.encode({ type, ioprio: 0, sector: BigInt(sector) }));
  const els = [{ addr: hdr, len: hdrLen, writable: false }];
  if (out !== null) {
    const a = h.heap.alloc(Math.max(out.length, 1));
    h.mem.write(a, out);
    els.push({ addr: a, len: out.length, writable: false });
  }
  const data = h.heap.alloc(Math.max(inLen, 1));
  if (inLen > 0) els.push({ addr: data, len: inLen, writable: true });
  const status = h.heap.alloc(1);
  h.mem.writeU8(status, 0xee);
  els.push({ addr: status, len: 1, writable: true });
  const token = q.add(els, opts);
  if (token < 0) throw new Error("ring full");
  return { token, status, data };
}

async function complete(q: DriverQueue, n: number) {
  const got: { token: number; len: number }[] = [];
  await until(() => {
    got.push(...q.takeUsed().map((u) => ({ token: u.token, len: u.len })));
    return got.length >= n;
  }, "blk completions");
  return got;
}

const seg = (sector: bigint | number, n: number, flags = 0) => VirtioBlkDiscardWriteZeroesLayout.encode({ sector: BigInt(sector), numSectors: n, flags });
const RINGS = [
  ["split", 0n],
  ["packed", bit(VIRTIO_F_RING_PACKED)],
] as const;
const FEATS = bit(VIRTIO_RING_F_EVENT_IDX) | bit(VIRTIO_RING_F_INDIRECT_DESC) | bit(VIRTIO_BLK_F_FLUSH) | bit(VIRTIO_BLK_F_DISCARD) | bit(VIRTIO_BLK_F_WRITE_ZEROES);

describe("RawFileBackend", () => {
  it("open refuses a missing path, a directory and a character device with VIRTIO_DEVICE_BACKEND", () => {
    const d = scratch.path("a-directory");
    mkdirSync(d);
    expect(codeOf(() => RawFileBackend.open(scratch.path("missing.img")))).toBe("VIRTIO_DEVICE_BACKEND");
    expect(codeOf(() => RawFileBackend.open(d, { readOnly: true }))).toBe("VIRTIO_DEVICE_BACKEND");
    expect(codeOf(() => RawFileBackend.open("/dev/null"))).toBe("VIRTIO_DEVICE_BACKEND");
  });

  it("a read past the end of a file that shrank after open fails with a short read; the device answers IOERR", async () => {
    const path = image("shrink.img", randomBytes(64 * 1024));
    const be = RawFileBackend.open(path);
    truncateSync(path, 4096);
    const err = await new Promise<Error | null>((r) => be.read(8192, Buffer.alloc(512), r));
    expect((err as TsvmmError).code).toBe("VIRTIO_DEVICE_BACKEND");
    // Half inside the file: the loop reads what is there, then hits end of file.
    const err2 = await new Promise<Error | null>((r) => be.read(3584, Buffer.alloc(1024), r));
    expect((err2 as TsvmmError).code).toBe("VIRTIO_DEVICE_BACKEND");

    const blk = new VirtioBlk({ backend: be });
    const h = harness(blk);
    const [q] = h.drv.start(FEATS, [16]);
    const ok = post(h, q!, VIRTIO_BLK_T_IN, 0, null, 4096);
    const bad = post(h, q!, VIRTIO_BLK_T_IN, 100, null, 512);
    h.drv.kick(0);
    await complete(q!, 2);
    expect(h.mem.readU8(ok.status)).toBe(VIRTIO_BLK_S_OK);
    expect(h.mem.read(ok.data, 4096).equals(readFileSync(path))).toBe(true);
    expect(h.mem.readU8(bad.status)).toBe(VIRTIO_BLK_S_IOERR);
    await be.close();
  });

  it("after close every operation reports the OS error and each request completes with IOERR; the device stays up", async () => {
    const be = RawFileBackend.open(image("closed.img", Buffer.alloc(64 * 1024)));
    const blk = new VirtioBlk({ backend: be });
    const h = harness(blk);
    const [q] = h.drv.start(FEATS, [16]);
    await be.close();
    const reqs = [
      post(h, q!, VIRTIO_BLK_T_IN, 0, null, 512),
      post(h, q!, VIRTIO_BLK_T_OUT, 0, Buffer.alloc(512, 1), 0),
      post(h, q!, VIRTIO_BLK_T_FLUSH, 0, null, 0),
      post(h, q!, VIRTIO_BLK_T_WRITE_ZEROES, 0, seg(0, 8), 0),
    ];
    h.drv.kick(0);
    const done = await complete(q!, 4);
    expect(done.map((d) => d.len)).toEqual([1, 1, 1, 1]);
    expect(reqs.map((r) => h.mem.readU8(r.status))).toEqual(new Array(4).fill(VIRTIO_BLK_S_IOERR));
    expect(blk.stats.ioerr).toBe(4);
    expect(h.drv.status & VIRTIO_CONFIG_S_NEEDS_RESET).toBe(0);
  });

  it("write-zeroes longer than the zero buffer (3 MiB) zeroes exactly its range", async () => {
    const content = randomBytes(4 << 20);
    const path = image("wz.img", content);
    const blk = new VirtioBlk({ backend: RawFileBackend.open(path) });
    const h = harness(blk);
    const [q] = h.drv.start(FEATS, [16]);
    const r = post(h, q!, VIRTIO_BLK_T_WRITE_ZEROES, 0, seg(1, 6144), 0);
    h.drv.kick(0);
    await complete(q!, 1);
    expect(h.mem.readU8(r.status)).toBe(VIRTIO_BLK_S_OK);
    const now = readFileSync(path);
    expect(now.subarray(0, 512).equals(content.subarray(0, 512))).toBe(true);
    expect(now.subarray(512, 512 + (3 << 20)).equals(Buffer.alloc(3 << 20))).toBe(true);
    expect(now.subarray(512 + (3 << 20)).equals(content.subarray(512 + (3 << 20)))).toBe(true);
    await blk.backend.close();
  });
});

describe.each(RINGS)("virtio-blk request types and statuses (§5.2.6), %s ring", (_n, ring) => {
  it("discard / write-zeroes segments: more than one is UNSUPP, a torn one IOERR, unknown flags UNSUPP, UNMAP on write-zeroes OK, ranges past 2^53 or the maximum IOERR", async () => {
    const be = new MemoryBackend(1 << 20);
    const blk = new VirtioBlk({ backend: be });
    const h = harness(blk);
    const [q] = h.drv.start(ring | FEATS, [64]);
    const cfg = VirtioBlkConfigLayout.decode(h.drv.readConfig(0, VirtioBlkConfigLayout.size));
    const cases: [number, Buffer, number][] = [
      [VIRTIO_BLK_T_DISCARD, Buffer.concat([seg(0, 1), seg(4, 1)]), VIRTIO_BLK_S_UNSUPP],
      [VIRTIO_BLK_T_WRITE_ZEROES, Buffer.concat([seg(0, 1), seg(4, 1), seg(8, 1)]), VIRTIO_BLK_S_UNSUPP],
      [VIRTIO_BLK_T_DISCARD, seg(0, 1).subarray(0, 10), VIRTIO_BLK_S_IOERR],
      [VIRTIO_BLK_T_WRITE_ZEROES, Buffer.concat([seg(0, 1), Buffer.alloc(4)]), VIRTIO_BLK_S_IOERR],
      [VIRTIO_BLK_T_WRITE_ZEROES, Buffer.alloc(0), VIRTIO_BLK_S_IOERR],
      [VIRTIO_BLK_T_WRITE_ZEROES, seg(2, 2, 1), VIRTIO_BLK_S_OK],
      [VIRTIO_BLK_T_WRITE_ZEROES, seg(2, 2, 2), VIRTIO_BLK_S_UNSUPP],
      [VIRTIO_BLK_T_DISCARD, seg(2, 2, 0x80000000), VIRTIO_BLK_S_UNSUPP],
      [VIRTIO_BLK_T_DISCARD, seg(2n ** 60n, 1), VIRTIO_BLK_S_IOERR],
      [VIRTIO_BLK_T_WRITE_ZEROES, seg(0, cfg.maxWriteZeroesSectors + 1), VIRTIO_BLK_S_IOERR],
      [VIRTIO_BLK_T_DISCARD, seg(2047, 1), VIRTIO_BLK_S_OK],
      [VIRTIO_BLK_T_DISCARD, seg(2047, 2), VIRTIO_BLK_S_IOERR],
    ];
    const reqs = cases.map(([type, body]) => post(h, q!, type, 0, body.length > 0 ? body : null, 0));
    h.drv.kick(0);
    await complete(q!, cases.length);
    expect(reqs.map((r) => h.mem.readU8(r.status))).toEqual(cases.map((c) => c[2]));
    expect(be.data.subarray(1024, 2048).equals(Buffer.alloc(1024))).toBe(true);
  });

  it("malformed requests: a header shorter than 16 bytes and a read with trailing out-data are IOERR; GET_ID fills only what fits", async () => {
    const blk = new VirtioBlk({ backend: new MemoryBackend(64 * 1024), id: "0123456789abcdefghijKLMN" });
    const h = harness(blk);
    const [q] = h.drv.start(ring | FEATS, [32]);
    const short = post(h, q!, VIRTIO_BLK_T_IN, 0, null, 512, { hdrLen: 8 });
    const trailing = post(h, q!, VIRTIO_BLK_T_IN, 0, Buffer.alloc(4), 512);
    const id8 = post(h, q!, VIRTIO_BLK_T_GET_ID, 0, null, 8);
    const id0 = post(h, q!, VIRTIO_BLK_T_GET_ID, 0, null, 0);
    const id32 = post(h, q!, VIRTIO_BLK_T_GET_ID, 0, null, 32);
    h.drv.kick(0);
    const done = await complete(q!, 5);
    const lenOf = (t: number) => done.find((d) => d.token === t)!.len;
    expect(h.mem.readU8(short.status)).toBe(VIRTIO_BLK_S_IOERR);
    expect(h.mem.readU8(trailing.status)).toBe(VIRTIO_BLK_S_IOERR);
    expect([lenOf(id8.token), lenOf(id0.token), lenOf(id32.token)]).toEqual([9, 1, 21]);
    expect(h.mem.read(id8.data, 8).toString("latin1")).toBe("01234567");
    expect(h.mem.read(id32.data, 20).toString("latin1")).toBe("0123456789abcdefghij");
    expect([id8, id0, id32].map((r) => h.mem.readU8(r.status))).toEqual([VIRTIO_BLK_S_OK, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_OK]);
  });

  it("read-only: FLUSH succeeds without touching the backend, DISCARD is UNSUPP, reads still work", async () => {
    const be = new MemoryBackend(64 * 1024, true);
    const blk = new VirtioBlk({ backend: be });
    const h = harness(blk);
    const [q] = h.drv.start(ring | FEATS, [32]);
    const fl = post(h, q!, VIRTIO_BLK_T_FLUSH, 0, null, 0);
    const dc = post(h, q!, VIRTIO_BLK_T_DISCARD, 0, seg(0, 1), 0);
    const rd = post(h, q!, VIRTIO_BLK_T_IN, 3, null, 1024);
    h.drv.kick(0);
    await complete(q!, 3);
    expect([fl, dc, rd].map((r) => h.mem.readU8(r.status))).toEqual([VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_S_OK]);
    expect(h.mem.read(rd.data, 1024).equals(be.data.subarray(1536, 2560))).toBe(true);
    expect(be.flushes).toBe(0);
    const cfg = VirtioBlkConfigLayout.decode(h.drv.readConfig(0, VirtioBlkConfigLayout.size));
    expect([cfg.maxDiscardSectors, cfg.maxWriteZeroesSectors, cfg.maxDiscardSeg]).toEqual([0, 0, 0]);
  });

  it("a backend that fails or throws fails that request with IOERR, never the device", async () => {
    const be = new MemoryBackend(64 * 1024);
    const blk = new VirtioBlk({ backend: be });
    const h = harness(blk);
    const [q] = h.drv.start(ring | FEATS, [32]);
    be.failWith = new Error("EIO");
    const a = [VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_FLUSH].map((t) => post(h, q!, t, 0, t === VIRTIO_BLK_T_OUT ? Buffer.alloc(512) : null, t === VIRTIO_BLK_T_IN ? 512 : 0));
    h.drv.kick(0);
    await complete(q!, 3);
    expect(a.map((r) => h.mem.readU8(r.status))).toEqual([VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_IOERR]);
    be.failWith = null;
    be.throwOnCall = true;
    const b = [post(h, q!, VIRTIO_BLK_T_IN, 0, null, 512), post(h, q!, VIRTIO_BLK_T_DISCARD, 0, seg(0, 1), 0)];
    h.drv.kick(0);
    await complete(q!, 2);
    expect(b.map((r) => h.mem.readU8(r.status))).toEqual([VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_IOERR]);
    expect(blk.stats.ioerr).toBe(5);
    expect(blk.inFlight).toBe(0);
    expect(h.drv.status & VIRTIO_CONFIG_S_NEEDS_RESET).toBe(0);
    be.throwOnCall = false;
    const c = post(h, q!, VIRTIO_BLK_T_OUT, 4, Buffer.alloc(512, 0x5a), 0);
    h.drv.kick(0);
    await complete(q!, 1);
    expect(h.mem.readU8(c.status)).toBe(VIRTIO_BLK_S_OK);
    expect(be.data.subarray(2048, 2560).equals(Buffer.alloc(512, 0x5a))).toBe(true);
  });

  it("many reads of one size in flight at once, and a 2 MiB read, each land byte for byte", async () => {
    const be = new MemoryBackend(4 << 20);
    const blk = new VirtioBlk({ backend: be });
    const h = harness(blk, {}, 16 << 20);
    const [q] = h.drv.start(ring | FEATS, [128]);
    for (let round = 0; round < 2; round++) {
      const reqs = Array.from({ length: 80 }, (_, i) => ({ sector: (i * 7 + round) % 8000, ...post(h, q!, VIRTIO_BLK_T_IN, (i * 7 + round) % 8000, null, 4096, { indirect: true }) }));
      h.drv.kick(0);
      await complete(q!, reqs.length);
      for (const r of reqs) expect(h.mem.read(r.data, 4096).equals(be.data.subarray(r.sector * 512, r.sector * 512 + 4096))).toBe(true);
      const big = post(h, q!, VIRTIO_BLK_T_IN, 1000, null, 2 << 20);
      h.drv.kick(0);
      expect((await complete(q!, 1))[0]!.len).toBe((2 << 20) + 1);
      expect(h.mem.read(big.data, 2 << 20).equals(be.data.subarray(1000 * 512, 1000 * 512 + (2 << 20)))).toBe(true);
    }
  });
});

describe("virtio-blk draining and state", () => {
  it("a burst of more requests than one drain takes (1024) is completed over later event-loop turns", async () => {
    const blk = new VirtioBlk({ backend: new MemoryBackend(64 * 1024), queueSize: 2048 });
    const h = harness(blk, {}, 16 << 20);
    const [q] = h.drv.start(bit(VIRTIO_RING_F_INDIRECT_DESC), [2048]);
    const n = 1500;
    for (let i = 0; i < n; i++) post(h, q!, VIRTIO_BLK_T_GET_ID, 0, null, 20, { indirect: true });
    h.drv.kick(0);
    expect(q!.takeUsed().length).toBe(1024);
    await complete(q!, n - 1024);
    expect(blk.stats.ok).toBe(n);
  });

  it("a reset between a capped drain and its continuation leaves the rest untouched", async () => {
    const blk = new VirtioBlk({ backend: new MemoryBackend(64 * 1024), queueSize: 2048 });
    const h = harness(blk, {}, 16 << 20);
    const [q] = h.drv.start(bit(VIRTIO_RING_F_INDIRECT_DESC), [2048]);
    const reqs = Array.from({ length: 1100 }, () => post(h, q!, VIRTIO_BLK_T_GET_ID, 0, null, 20, { indirect: true }));
    h.drv.kick(0);
    h.drv.writeReg(0x70, 0);
    await new Promise((r) => setTimeout(r, 20));
    expect(blk.stats.ok).toBe(1024);
    expect(reqs.slice(1024).every((r) => h.mem.readU8(r.status) === 0xee)).toBe(true);
  });

  it("DEVICE_NEEDS_RESET between a capped drain and its continuation stops it too", async () => {
    const blk = new VirtioBlk({ backend: new MemoryBackend(64 * 1024), queueSize: 2048 });
    const h = harness(blk, {}, 16 << 20);
    const [q] = h.drv.start(bit(VIRTIO_RING_F_INDIRECT_DESC), [2048]);
    for (let i = 0; i < 1100; i++) post(h, q!, VIRTIO_BLK_T_GET_ID, 0, null, 20, { indirect: true });
    h.drv.kick(0);
    // The driver re-enables the queue with a ring outside RAM while running: the device needs reset.
    h.drv.writeReg(0x44, 0);
    h.drv.writeReg(0x80, 0);
    h.drv.writeReg(0x44, 1);
    expect(h.drv.status & VIRTIO_CONFIG_S_NEEDS_RESET).toBe(VIRTIO_CONFIG_S_NEEDS_RESET);
    await new Promise((r) => setTimeout(r, 20));
    expect(blk.stats.ok).toBe(1024);
  });

  it("notifications before activation or for a queue blk does not have do nothing", () => {
    const blk = new VirtioBlk({ backend: new MemoryBackend(4096) });
    blk.queueNotify(0);
    const h = harness(blk);
    const [q] = h.drv.start(0n, [8]);
    post(h, q!, VIRTIO_BLK_T_GET_ID, 0, null, 20);
    blk.queueNotify(1);
    expect(blk.stats.ok).toBe(0);
    h.drv.kick(0);
    expect(blk.stats.ok).toBe(1);
  });

  it("restoreState takes only the same disk: capacity and read-only must match", () => {
    const blk = new VirtioBlk({ backend: new MemoryBackend(8192), id: "x" });
    const good = blk.saveState();
    expect(good).toEqual({ id: "x", capacity: 16, readOnly: false });
    blk.restoreState(JSON.parse(JSON.stringify(good)));
    for (const bad of [null, 7, "s", { ...good, capacity: 17 }, { ...good, readOnly: true }, {}]) {
      expect(codeOf(() => blk.restoreState(bad))).toBe("VIRTIO_DEVICE_BAD_STATE");
    }
  });
});
