import { randomBytes } from "node:crypto";
import { readSync } from "node:fs";
import {
  bit,
  type DriverQueue,
  INLINE_MISS_STREAK,
  INLINE_SKIP_MAX,
  INLINE_SKIP_MIN,
  RawFileBackend,
  type ReadNoWait, VIRTIO_BLK_S_OK, VIRTIO_BLK_T_IN, VIRTIO_CONFIG_S_NEEDS_RESET, VIRTIO_F_RING_PACKED, VIRTIO_RING_F_EVENT_IDX, VirtioBlk, VirtioBlkOuthdrLayout } from "@tsvmm/virtio";
import { describe, expect, it } from "vitest";
import { harness, until } from "./helpers/harness.js";
import { imageDir } from "./helpers/images.js";

// The 4 KiB random-read path (issue #15): reads that do not continue each other go one by one
// either inline (RawFileBackend.readInline with the injected readNoWait, completed before the
// drain goes on) or through RawFileBackend.read (pooled pread states on the libuv pool), land in
// pooled bounce buffers, and are copied into the chain's elements (DescriptorChain.copyIn) only
// while the activation stands. The readNoWait here reads the real file with readSync and answers
// "again" (or short, or throws) where a test says the data is not at hand; what the kernel's
// preadv2(RWF_NOWAIT) answers is tested in kvm-backend (test/read-nowait.test.ts), with this
// device over it.

type Answer = "data" | "again" | "short" | "throw";
/** An injected readNoWait over the real file, answering per position as `answer` says; counts its calls. */
function noWait(answer: (position: number) => Answer = () => "data") {
  const calls = { n: 0 };
  const fn: ReadNoWait = (fd, target, position) => {
    calls.n++;
    const a = answer(position);
    if (a === "again") return "again";
    if (a === "throw") throw new Error("EIO");
    // "short": part of the range at hand, as preadv2(RWF_NOWAIT) may answer when only some pages are cached.
    return readSync(fd, target, 0, a === "short" ? target.length >> 1 : target.length, position);
  };
  return { fn, calls };
}

const scratch = imageDir("tsvmm-blk-random-");
const DISK = 1 << 20;

type H = ReturnType<typeof harness<VirtioBlk>>;

/** A 4 KiB read of `sector`, its data split at `split` bytes into two descriptors when given. */
function postRead(h: H, q: DriverQueue, sector: number, split?: number) {
  const hdr = h.heap.alloc(16);
  h.mem.write(hdr, VirtioBlkOuthdrLayout.encode({ type: VIRTIO_BLK_T_IN, ioprio: 0, sector: BigInt(sector) }));
  const data = h.heap.alloc(4096, 8);
  h.mem.fill(data, 4096, 0xcd);
  const status = h.heap.alloc(1);
  h.mem.writeU8(status, 0xee);
  const parts =
    split === undefined
      ? [{ addr: data, len: 4096, writable: true }]
      : [
          { addr: data, len: split, writable: true },
          { addr: data + split, len: 4096 - split, writable: true },
        ];
  q.add([{ addr: hdr, len: 16, writable: false }, ...parts, { addr: status, len: 1, writable: true }]);
  return { sector, data, status };
}

/** Distinct sectors, none continuing the one before it (so none are merged). */
function randomSectors(n: number): number[] {
  const out: number[] = [];
  while (out.length < n) {
    const s = Math.floor(Math.random() * (DISK / 4096)) * 8;
    if (out.length === 0 || (s !== out[out.length - 1]! + 8 && !out.includes(s))) out.push(s);
  }
  return out;
}

describe.each([
  ["split", 0n],
  ["packed", bit(VIRTIO_F_RING_PACKED)],
])("virtio-blk random 4 KiB reads, %s ring", (name, ring) => {
  it.each([
    ["inline", true],
    ["pool", false],
  ])("%s: batch after batch of 32 unmerged reads (some with the data split over two descriptors) give the file's bytes; pooled states and bounce buffers never cross", async (path, inline) => {
    const content = randomBytes(DISK);
    const nw = noWait();
    const backend = RawFileBackend.open(scratch.image(`batches-${name}-${path}`, content), { readOnly: true, ...(inline ? { readNoWait: nw.fn } : {}) });
    const blk = new VirtioBlk({ backend });
    const h = harness(blk, {}, 16 << 20);
    const [q] = h.drv.start(ring | bit(VIRTIO_RING_F_EVENT_IDX), [256]);
    for (let batch = 0; batch < 4; batch++) {
      const reqs = randomSectors(32).map((s, i) => postRead(h, q!, s, i % 3 === 0 ? 1 + ((i * 977) % 4095) : undefined));
      h.drv.kick(0);
      await blk.idle();
      const used = q!.takeUsed();
      expect(used.map((u) => u.len)).toEqual(new Array(32).fill(4097));
      for (const r of reqs) {
        expect(h.mem.readU8(r.status)).toBe(VIRTIO_BLK_S_OK);
        expect(h.mem.read(r.data, 4096).equals(content.subarray(r.sector * 512, r.sector * 512 + 4096))).toBe(true);
      }
    }
    expect(blk.stats).toMatchObject({ ok: 128, ioerr: 0, dropped: 0 });
    expect(backend.inlineStats.done).toBe(inline ? 128 : 0);
    expect(nw.calls.n).toBe(inline ? 128 : 0);
  });

  it("without readNoWait no read is done on the event loop: 32 reads are all in flight after the kick, and complete from the pool; the same with inlineReadMaxBytes 0", async () => {
    for (const opts of [{}, { readNoWait: noWait().fn, inlineReadMaxBytes: 0 }]) {
      const content = randomBytes(DISK);
      const backend = RawFileBackend.open(scratch.image(`pool-only-${name}-${"readNoWait" in opts}`, content), { readOnly: true, ...opts });
      expect(backend.readInline).toBeUndefined();
      const blk = new VirtioBlk({ backend });
      const h = harness(blk, {}, 16 << 20);
      const [q] = h.drv.start(ring | bit(VIRTIO_RING_F_EVENT_IDX), [256]);
      const reqs = randomSectors(32).map((s) => postRead(h, q!, s));
      h.drv.kick(0);
      expect(blk.inFlight).toBe(32);
      expect(q!.takeUsed()).toEqual([]);
      await blk.idle();
      expect(q!.takeUsed()).toHaveLength(32);
      for (const r of reqs) expect(h.mem.read(r.data, 4096).equals(content.subarray(r.sector * 512, r.sector * 512 + 4096))).toBe(true);
      expect(backend.inlineStats).toEqual({ done: 0, again: 0, failed: 0, skipped: 0 });
    }
  });

  it("pool path: a reset while 32 random reads are in flight: none of them writes data, status or a used entry", async () => {
    const blk = new VirtioBlk({ backend: RawFileBackend.open(scratch.image(`reset-${name}`, randomBytes(DISK)), { readOnly: true }) });
    const h = harness(blk, {}, 16 << 20);
    const [q] = h.drv.start(ring | bit(VIRTIO_RING_F_EVENT_IDX), [256]);
    const reqs = randomSectors(32).map((s) => postRead(h, q!, s));
    h.drv.kick(0);
    expect(blk.inFlight).toBe(32);
    h.drv.writeReg(0x70, 0);
    // The guest reuses the buffers at once.
    for (const r of reqs) h.mem.fill(r.data, 4096, 0xab);
    await blk.idle();
    for (const r of reqs) {
      expect(h.mem.read(r.data, 4096).equals(Buffer.alloc(4096, 0xab))).toBe(true);
      expect(h.mem.readU8(r.status)).toBe(0xee);
    }
    expect(blk.stats.dropped).toBe(32);
    expect(q!.takeUsed()).toEqual([]);
  });

  it("pool path: a hostile chain in the middle of a batch: DEVICE_NEEDS_RESET, the reads taken before it end dropped, the chains after it are never taken", async () => {
    const blk = new VirtioBlk({ backend: RawFileBackend.open(scratch.image(`hostile-${name}`, randomBytes(DISK)), { readOnly: true }) });
    const h = harness(blk, {}, 16 << 20);
    const [q] = h.drv.start(ring | bit(VIRTIO_RING_F_EVENT_IDX), [256]);
    const sectors = randomSectors(32);
    const before = sectors.slice(0, 16).map((s) => postRead(h, q!, s));
    // Its data buffer runs past the end of guest RAM.
    const hdr = h.heap.alloc(16);
    h.mem.write(hdr, VirtioBlkOuthdrLayout.encode({ type: VIRTIO_BLK_T_IN, ioprio: 0, sector: 0n }));
    q!.add([
      { addr: hdr, len: 16, writable: false },
      { addr: 0x10000 + (16 << 20) - 2048, len: 4096, writable: true },
      { addr: h.heap.alloc(1), len: 1, writable: true },
    ]);
    const after = sectors.slice(16).map((s) => postRead(h, q!, s));
    h.drv.kick(0);
    expect(h.errors.map((e) => e.code)).toEqual(["VIRTQ_BUFFER_OUT_OF_RANGE"]);
    expect(h.drv.status & VIRTIO_CONFIG_S_NEEDS_RESET).toBe(VIRTIO_CONFIG_S_NEEDS_RESET);
    expect(blk.inFlight).toBe(16);
    await until(() => blk.inFlight === 0, "reads in flight to end");
    for (const r of [...before, ...after]) {
      expect(h.mem.read(r.data, 4096).equals(Buffer.alloc(4096, 0xcd))).toBe(true);
      expect(h.mem.readU8(r.status)).toBe(0xee);
    }
    expect(blk.stats).toMatchObject({ ok: 0, dropped: 16 });
    expect(q!.takeUsed()).toEqual([]);
  });

  it("inline: 32 random reads complete within the kick, with one interrupt decision for the drain; without event idx one interrupt, not one per read", async () => {
    for (const eventIdx of [true, false]) {
      const content = randomBytes(DISK);
      const backend = RawFileBackend.open(scratch.image(`inline-${name}-${eventIdx}`, content), { readOnly: true, readNoWait: noWait().fn });
      const blk = new VirtioBlk({ backend });
      const h = harness(blk, {}, 16 << 20);
      const [q] = h.drv.start(ring | (eventIdx ? bit(VIRTIO_RING_F_EVENT_IDX) : 0n), [256]);
      const reqs = randomSectors(32).map((s) => postRead(h, q!, s));
      if (eventIdx) q!.setInterrupts(true, 32);
      const irqs = h.irq.raised;
      h.drv.kick(0);
      expect(blk.inFlight).toBe(0);
      expect(h.irq.raised - irqs).toBe(1);
      expect(q!.takeUsed().map((u) => u.len)).toEqual(new Array(32).fill(4097));
      for (const r of reqs) expect(h.mem.read(r.data, 4096).equals(content.subarray(r.sector * 512, r.sector * 512 + 4096))).toBe(true);
      expect(backend.inlineStats).toEqual({ done: 32, again: 0, failed: 0, skipped: 0 });
    }
  });

  it("inline: a hostile chain in the middle of a batch: the reads before it were served (data, status, used entries), DEVICE_NEEDS_RESET, the chains after it are never taken", async () => {
    const content = randomBytes(DISK);
    const blk = new VirtioBlk({ backend: RawFileBackend.open(scratch.image(`inline-hostile-${name}`, content), { readOnly: true, readNoWait: noWait().fn }) });
    const h = harness(blk, {}, 16 << 20);
    const [q] = h.drv.start(ring | bit(VIRTIO_RING_F_EVENT_IDX), [256]);
    const sectors = randomSectors(32);
    const before = sectors.slice(0, 16).map((s) => postRead(h, q!, s));
    const hdr = h.heap.alloc(16);
    h.mem.write(hdr, VirtioBlkOuthdrLayout.encode({ type: VIRTIO_BLK_T_IN, ioprio: 0, sector: 0n }));
    q!.add([
      { addr: hdr, len: 16, writable: false },
      { addr: 0x10000 + (16 << 20) - 2048, len: 4096, writable: true },
      { addr: h.heap.alloc(1), len: 1, writable: true },
    ]);
    const after = sectors.slice(16).map((s) => postRead(h, q!, s));
    h.drv.kick(0);
    expect(h.errors.map((e) => e.code)).toEqual(["VIRTQ_BUFFER_OUT_OF_RANGE"]);
    expect(h.drv.status & VIRTIO_CONFIG_S_NEEDS_RESET).toBe(VIRTIO_CONFIG_S_NEEDS_RESET);
    expect(blk.inFlight).toBe(0);
    for (const r of before) {
      expect(h.mem.readU8(r.status)).toBe(VIRTIO_BLK_S_OK);
      expect(h.mem.read(r.data, 4096).equals(content.subarray(r.sector * 512, r.sector * 512 + 4096))).toBe(true);
    }
    for (const r of after) {
      expect(h.mem.read(r.data, 4096).equals(Buffer.alloc(4096, 0xcd))).toBe(true);
      expect(h.mem.readU8(r.status)).toBe(0xee);
    }
    expect(q!.takeUsed()).toHaveLength(16);
    expect(blk.stats).toMatchObject({ ok: 16, dropped: 0 });
  });

  it.each([
    ["bounce buffers", false],
    ["direct reads", true],
  ])("inline (%s): data not at hand (\"again\", a short read, a throw) goes to the pool and completes with the file's bytes; the rest completes within the kick", async (_, directReads) => {
    const content = randomBytes(DISK);
    const sectors = randomSectors(32);
    const answers: Answer[] = ["data", "again", "short", "throw"];
    const answerOf = new Map(sectors.map((s, i) => [s * 512, answers[i % 4]!]));
    const nw = noWait((pos) => answerOf.get(pos)!);
    const backend = RawFileBackend.open(scratch.image(`inline-again-${name}-${directReads}`, content), { readOnly: true, readNoWait: nw.fn });
    const blk = new VirtioBlk({ backend, directReads });
    const h = harness(blk, {}, 16 << 20);
    const [q] = h.drv.start(ring | bit(VIRTIO_RING_F_EVENT_IDX), [256]);
    // Every third read's data split over two descriptors (inline into the bounce buffer then).
    const reqs = sectors.map((s, i) => postRead(h, q!, s, i % 3 === 0 ? 512 : undefined));
    h.drv.kick(0);
    expect(backend.inlineStats).toEqual({ done: 8, again: 16, failed: 8, skipped: 0 });
    expect(blk.inFlight).toBe(24);
    // The inline ones are complete already: status and data.
    for (const [i, r] of reqs.entries()) {
      if (i % 4 !== 0) continue;
      expect(h.mem.readU8(r.status)).toBe(VIRTIO_BLK_S_OK);
      expect(h.mem.read(r.data, 4096).equals(content.subarray(r.sector * 512, r.sector * 512 + 4096))).toBe(true);
    }
    await blk.idle();
    expect(q!.takeUsed().map((u) => u.len)).toEqual(new Array(32).fill(4097));
    for (const r of reqs) {
      expect(h.mem.readU8(r.status)).toBe(VIRTIO_BLK_S_OK);
      expect(h.mem.read(r.data, 4096).equals(content.subarray(r.sector * 512, r.sector * 512 + 4096))).toBe(true);
    }
    expect(blk.stats).toMatchObject({ ok: 32, ioerr: 0, dropped: 0 });
    expect(nw.calls.n).toBe(32);
  });

  it("inline: a reset after a kick whose reads were partly not at hand: the inline ones completed, the pooled ones write nothing", async () => {
    const content = randomBytes(DISK);
    const sectors = randomSectors(16);
    const cold = new Set(sectors.filter((_, i) => i % 2 === 1).map((s) => s * 512));
    const backend = RawFileBackend.open(scratch.image(`inline-reset-${name}`, content), { readOnly: true, readNoWait: noWait((pos) => (cold.has(pos) ? "again" : "data")).fn });
    const blk = new VirtioBlk({ backend });
    const h = harness(blk, {}, 16 << 20);
    const [q] = h.drv.start(ring | bit(VIRTIO_RING_F_EVENT_IDX), [256]);
    const reqs = sectors.map((s) => postRead(h, q!, s));
    h.drv.kick(0);
    expect(blk.inFlight).toBe(8);
    expect(q!.takeUsed()).toHaveLength(8);
    h.drv.writeReg(0x70, 0);
    for (const r of reqs.filter((r) => cold.has(r.sector * 512))) h.mem.fill(r.data, 4096, 0xab);
    await blk.idle();
    for (const r of reqs) {
      if (cold.has(r.sector * 512)) {
        expect(h.mem.read(r.data, 4096).equals(Buffer.alloc(4096, 0xab))).toBe(true);
        expect(h.mem.readU8(r.status)).toBe(0xee);
      } else {
        expect(h.mem.readU8(r.status)).toBe(VIRTIO_BLK_S_OK);
        expect(h.mem.read(r.data, 4096).equals(content.subarray(r.sector * 512, r.sector * 512 + 4096))).toBe(true);
      }
    }
    expect(blk.stats).toMatchObject({ ok: 8, dropped: 8 });
  });

  it("inline: misses in a row (a cold scan) pause the tries for INLINE_SKIP_MIN reads, doubling while the probe after a pause misses; a hit ends it", async () => {
    const content = randomBytes(DISK);
    let answer: Answer = "again";
    const nw = noWait(() => answer);
    const backend = RawFileBackend.open(scratch.image(`inline-skip-${name}`, content), { readOnly: true, readNoWait: nw.fn });
    const readInline = backend.readInline!.bind(backend);
    const buf = Buffer.alloc(4096);
    const tries = (reads: number) => {
      const before = nw.calls.n;
      for (let i = 0; i < reads; i++) readInline(i * 4096, buf, 0, 4096);
      return nw.calls.n - before;
    };
    // Misses (answered "again" or thrown) up to the streak are all tried; then a pause, a probe, a longer pause...
    answer = "throw";
    expect(tries(INLINE_MISS_STREAK - 1)).toBe(INLINE_MISS_STREAK - 1);
    answer = "again";
    expect(tries(1)).toBe(1);
    expect(tries(INLINE_SKIP_MIN)).toBe(0);
    expect(tries(1 + 2 * INLINE_SKIP_MIN)).toBe(1);
    expect(tries(1 + 4 * INLINE_SKIP_MIN)).toBe(1);
    expect(backend.inlineStats).toEqual({ done: 0, again: 3, failed: INLINE_MISS_STREAK - 1, skipped: 7 * INLINE_SKIP_MIN });
    // The pause stops growing at INLINE_SKIP_MAX (12 more missed probes).
    for (let i = 0; i < 12; i++) while (tries(1) === 0);
    expect(tries(INLINE_SKIP_MAX)).toBe(0);
    expect(tries(1)).toBe(1);
    // Data at hand again: the probe after the pause reads it inline, and every read after it is tried.
    answer = "data";
    expect(tries(INLINE_SKIP_MAX)).toBe(0);
    expect(tries(101)).toBe(101);
    expect(backend.inlineStats.done).toBe(101);
    // A new run of misses starts from the shortest pause.
    answer = "again";
    expect(tries(INLINE_MISS_STREAK + INLINE_SKIP_MIN + 1)).toBe(INLINE_MISS_STREAK + 1);
    await backend.close();
  });

  it("inline: readInline checks its window; reads over inlineReadMaxBytes go to the pool", async () => {
    const content = randomBytes(DISK);
    // The window asked for must lie in the buffer given.
    const fresh = RawFileBackend.open(scratch.image(`inline-range-${name}`, content), { readOnly: true, readNoWait: noWait().fn });
    const readInline = fresh.readInline!.bind(fresh);
    for (const [off, len] of [[-1, 8], [0, 4097], [4090, 8], [0.5, 8]] as const) expect(() => readInline(0, Buffer.alloc(4096), off, len)).toThrow(RangeError);
    const into = Buffer.alloc(64, 0x11);
    expect(readInline(512, into, 8, 16)).toBe(true);
    expect(into.subarray(8, 24).equals(content.subarray(512, 528))).toBe(true);
    expect(into.subarray(0, 8).equals(Buffer.alloc(8, 0x11)) && into.subarray(24).equals(Buffer.alloc(40, 0x11))).toBe(true);
    await fresh.close();

    const bigNw = noWait();
    const big = RawFileBackend.open(scratch.image(`inline-big-${name}`, content), { readOnly: true, readNoWait: bigNw.fn, inlineReadMaxBytes: 2048 });
    const blk2 = new VirtioBlk({ backend: big });
    const h2 = harness(blk2, {}, 16 << 20);
    const [q2] = h2.drv.start(ring | bit(VIRTIO_RING_F_EVENT_IDX), [256]);
    postRead(h2, q2!, 0);
    h2.drv.kick(0);
    expect(blk2.inFlight).toBe(1);
    expect(big.inlineStats.done).toBe(0);
    expect(bigNw.calls.n).toBe(0);
    await blk2.idle();
    expect(q2!.takeUsed()).toHaveLength(1);
  });
});
