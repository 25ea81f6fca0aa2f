import { randomBytes } from "node:crypto";
import { bit, type DriverQueue, RawFileBackend, VIRTIO_BLK_S_OK, VIRTIO_BLK_T_IN, VIRTIO_CONFIG_S_NEEDS_RESET, VIRTIO_F_RING_PACKED, VIRTIO_RING_F_EVENT_IDX, VirtioBlk, VirtioBlkOuthdrLayout } from "@tsvmm/virtio";
import { describe, expect, it } from "vitest";
import { harness, until } from "./helpers/harness.js";
import { imageDir } from "./helpers/images.js";

// The 4 KiB random-read path (issue #15): reads that do not continue each other go one by one
// through RawFileBackend.read (pooled pread states), land in pooled bounce buffers, and are copied
// into the chain's elements (DescriptorChain.copyIn) only while the activation stands.

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
  it("batch after batch of 32 unmerged reads (some with the data split over two descriptors) give the file's bytes; pooled states and bounce buffers never cross", async () => {
    const content = randomBytes(DISK);
    const blk = new VirtioBlk({ backend: RawFileBackend.open(scratch.image(`batches-${name}`, content), { readOnly: true }) });
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
  });

  it("a reset while 32 random reads are in flight: none of them writes data, status or a used entry", async () => {
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

  it("a hostile chain in the middle of a batch: DEVICE_NEEDS_RESET, the reads taken before it end dropped, the chains after it are never taken", async () => {
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
});
