import { randomBytes } from "node:crypto";
import { readSync } from "node:fs";
import { bit, type DriverQueue, INLINE_DRAIN_BYTES, type IoDone, RawFileBackend, type ReadNoWait, VIRTIO_BLK_S_OK, VIRTIO_BLK_T_IN, VIRTIO_RING_F_EVENT_IDX, VirtioBlk, VirtioBlkOuthdrLayout } from "@tsvmm/virtio";
import { describe, expect, it } from "vitest";
import { harness } from "./helpers/harness.js";
import { imageDir } from "./helpers/images.js";

// Runs of adjacent reads (a sequential stream) with an inline path: each read of the run is tried
// inline in order while its data is at hand and the drain's INLINE_DRAIN_BYTES last, straight into
// guest memory when its data is one element; the first that is not, and all after it, go to the
// thread pool as one merged readv. The injected readNoWait reads the real file and says "again"
// where a test says the data is not at hand (the kernel's preadv2(RWF_NOWAIT) is tested in
// kvm-backend, and under Linux's own driver in vmm's linux-init test).

const scratch = imageDir("tsvmm-blk-inline-runs-");
const DISK = 8 << 20;
const content = randomBytes(DISK);

type H = ReturnType<typeof harness<VirtioBlk>>;

/** A read of `len` bytes at `sector` (its data in one element, or split at `split` bytes). */
function postRead(h: H, q: DriverQueue, sector: number, len: number, split?: number) {
  const hdr = h.heap.alloc(16);
  h.mem.write(hdr, VirtioBlkOuthdrLayout.encode({ type: VIRTIO_BLK_T_IN, ioprio: 0, sector: BigInt(sector) }));
  const data = h.heap.alloc(len, 8);
  h.mem.fill(data, len, 0xcd);
  const status = h.heap.alloc(1);
  h.mem.writeU8(status, 0xee);
  const parts =
    split === undefined
      ? [{ addr: data, len, writable: true }]
      : [
          { addr: data, len: split, writable: true },
          { addr: data + split, len: len - split, writable: true },
        ];
  q.add([{ addr: hdr, len: 16, writable: false }, ...parts, { addr: status, len: 1, writable: true }]);
  return { sector, len, data, status };
}

/** A disk whose inline reads answer "again" from byte `coldFrom` on, counting what reaches the pool. */
function setup(name: string, coldFrom = Number.POSITIVE_INFINITY) {
  const path = scratch.image(name, content);
  const inline: number[] = [];
  const noWait: ReadNoWait = (fd, target, position) => {
    if (position + target.length > coldFrom) return "again";
    inline.push(position);
    return readSync(fd, target, 0, target.length, position);
  };
  const backend = RawFileBackend.open(path, { readOnly: true, readNoWait: noWait });
  const pool = { reads: [] as number[], readvs: [] as number[][] };
  const read = backend.read.bind(backend);
  const readv = backend.readv.bind(backend);
  backend.read = (position: number, into: Buffer, done: IoDone) => {
    pool.reads.push(position);
    read(position, into, done);
  };
  backend.readv = (position: number, into: readonly Buffer[], done: IoDone) => {
    pool.readvs.push(into.map((b) => b.length));
    readv(position, into, done);
  };
  const blk = new VirtioBlk({ backend });
  const h = harness(blk, {}, 32 << 20);
  const [q] = h.drv.start(bit(VIRTIO_RING_F_EVENT_IDX), [256]);
  return { backend, blk, h, q: q!, inline, pool };
}

function expectData(h: H, reqs: ReturnType<typeof postRead>[]) {
  for (const r of reqs) {
    expect(h.mem.readU8(r.status)).toBe(VIRTIO_BLK_S_OK);
    expect(h.mem.read(r.data, r.len).equals(content.subarray(r.sector * 512, r.sector * 512 + r.len))).toBe(true);
  }
}

describe("virtio-blk: runs of adjacent reads with an inline path", () => {
  it("a cached sequential run is read inline, request by request, before the kick returns (data in one element or split); nothing reaches the pool", async () => {
    const { blk, h, q, inline, pool, backend } = setup("cached");
    const reqs = Array.from({ length: 16 }, (_, i) => postRead(h, q, i * 128, 64 << 10, i % 4 === 1 ? 1000 : undefined));
    h.drv.kick(0);
    expect(blk.inFlight).toBe(0);
    expect(q.takeUsed().map((u) => u.len)).toEqual(new Array(16).fill((64 << 10) + 1));
    expectData(h, reqs);
    expect(inline).toEqual(reqs.map((r) => r.sector * 512));
    expect(pool).toEqual({ reads: [], readvs: [] });
    expect(backend.inlineStats).toMatchObject({ done: 16, again: 0 });
    await blk.idle();
  });

  it("the run is read inline up to the first request whose data is not at hand; that one and the rest go to the pool as one readv", async () => {
    const len = 32 << 10;
    // Requests 0-4 lie below coldFrom; request 5 ends past it.
    const { blk, h, q, inline, pool } = setup("partly-cold", 5 * len + 100);
    const reqs = Array.from({ length: 12 }, (_, i) => postRead(h, q, (i * len) / 512, len));
    h.drv.kick(0);
    expect(inline).toEqual([0, 1, 2, 3, 4].map((i) => i * len));
    expect(blk.inFlight).toBe(7);
    expect(pool.readvs).toEqual([new Array(7).fill(len)]);
    expect(pool.reads).toEqual([]);
    await blk.idle();
    expect(q.takeUsed()).toHaveLength(12);
    expectData(h, reqs);
    expect(blk.stats).toMatchObject({ ok: 12, ioerr: 0, dropped: 0 });
  });

  it("one drain reads at most INLINE_DRAIN_BYTES inline; the reads past it go to the pool, and the next drain has the whole budget again", async () => {
    const len = 256 << 10;
    const fit = INLINE_DRAIN_BYTES / len;
    const { blk, h, q, inline, pool } = setup("budget");
    const first = Array.from({ length: fit + 3 }, (_, i) => postRead(h, q, (i * len) / 512, len));
    h.drv.kick(0);
    expect(inline).toHaveLength(fit);
    expect(pool.readvs).toEqual([[len, len, len]]);
    await blk.idle();
    expectData(h, first);
    inline.length = 0;
    const second = Array.from({ length: fit }, (_, i) => postRead(h, q, ((fit + 3 + i) * len) / 512, len));
    h.drv.kick(0);
    expect(inline).toHaveLength(fit);
    expect(blk.inFlight).toBe(0);
    expectData(h, second);
    expect(pool.readvs).toHaveLength(1);
    expect(q.takeUsed()).toHaveLength(2 * fit + 3);
  });

  it("a single read larger than inlineReadMaxBytes (default 256 KiB) goes to the pool, one at the limit is read inline", async () => {
    const { blk, h, q, inline, pool } = setup("large");
    const big = postRead(h, q, 0, 512 << 10);
    h.drv.kick(0);
    expect(blk.inFlight).toBe(1);
    expect(pool.reads).toEqual([0]);
    await blk.idle();
    const atLimit = postRead(h, q, 4096, 256 << 10);
    h.drv.kick(0);
    expect(blk.inFlight).toBe(0);
    expect(inline).toEqual([4096 * 512]);
    expectData(h, [big, atLimit]);
  });
});
