import { randomBytes } from "node:crypto";
import { readFileSync, } from "node:fs";
import {
  bit,
  type DriverQueue,
  RawFileBackend,
  VIRTIO_BLK_F_DISCARD,
  VIRTIO_BLK_F_FLUSH,
  VIRTIO_BLK_F_RO,
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

const scratch = imageDir("tsvmm-blk-");
const image = scratch.image;

type H = ReturnType<typeof harness<VirtioBlk>>;

/** Post one request: header, optional out data, `inLen` bytes of in data, a status byte. Returns where the status and data are. */
function post(h: H, q: DriverQueue, type: number, sector: number, out: Buffer | null, inLen: number, opts: { indirect?: boolean } = {}) {
  const hdr = h.heap.alloc(16);
  h.mem.write(hdr, VirtioBlkOuthdrLayout.encode({ type, ioprio: 0, sector: BigInt(sector) }));
  const els = [{ addr: hdr, len: 16, writable: false }];
  if (out !== null) {
    const a = h.heap.alloc(out.length);
    h.mem.write(a, out);
    els.push({ addr: a, len: out.length, writable: false });
  }
  const data = h.heap.alloc(Math.max(inLen, 1));
  if (inLen > 0) els.push({ addr: data, len: inLen, writable: true });
  const status = h.heap.alloc(1);
  h.mem.writeU8(status, 0xee);
  els.push({ addr: status, len: 1, writable: true });
  const token = q.add(els, opts);
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

describe.each([
  ["split", 0n],
  ["packed", bit(VIRTIO_F_RING_PACKED)],
])("virtio-blk on a raw file, %s ring", (_n, ring) => {
  const FEATS = ring | bit(VIRTIO_RING_F_EVENT_IDX) | bit(VIRTIO_RING_F_INDIRECT_DESC) | bit(VIRTIO_BLK_F_FLUSH) | bit(VIRTIO_BLK_F_DISCARD) | bit(VIRTIO_BLK_F_WRITE_ZEROES);

  it("config space: capacity in 512-byte sectors, blk_size, seg_max; features", () => {
    const blk = new VirtioBlk({ backend: RawFileBackend.open(image(`cfg${ring}`, Buffer.alloc(1 << 20 | 100))) });
    const h = harness(blk);
    const cfg = VirtioBlkConfigLayout.decode(h.drv.readConfig(0, VirtioBlkConfigLayout.size));
    expect(cfg.capacity).toBe(2048n);
    expect(cfg.blkSize).toBe(512);
    expect(cfg.segMax).toBe(254);
    expect(cfg.maxDiscardSeg).toBe(1);
    const f = h.drv.deviceFeatures();
    expect(f & bit(VIRTIO_BLK_F_RO)).toBe(0n);
    expect(f & bit(VIRTIO_BLK_F_FLUSH)).toBe(bit(VIRTIO_BLK_F_FLUSH));
  });

  it("reads and writes byte for byte against the host file, flush, get-id, write-zeroes, discard", async () => {
    const content = randomBytes(64 * 1024);
    const path = image(`rw${ring}`, content);
    const blk = new VirtioBlk({ backend: RawFileBackend.open(path), id: "disk-serial-0123456789" });
    const h = harness(blk);
    const [q] = h.drv.start(FEATS, [64]);
    // Read sectors 8..15 (indirect) and 100..101.
    const r1 = post(h, q!, VIRTIO_BLK_T_IN, 8, null, 4096, { indirect: true });
    const r2 = post(h, q!, VIRTIO_BLK_T_IN, 100, null, 1024);
    h.drv.kick(0);
    const done = await complete(q!, 2);
    expect(done.map((d) => d.len).sort()).toEqual([1025, 4097]);
    expect(h.mem.readU8(r1.status)).toBe(VIRTIO_BLK_S_OK);
    expect(h.mem.read(r1.data, 4096).equals(content.subarray(8 * 512, 16 * 512))).toBe(true);
    expect(h.mem.read(r2.data, 1024).equals(content.subarray(100 * 512, 102 * 512))).toBe(true);

    // Write sectors 3..4, then flush; the host file has them once the guest sees completion.
    const pattern = randomBytes(1024);
    const w = post(h, q!, VIRTIO_BLK_T_OUT, 3, pattern, 0);
    h.drv.kick(0);
    expect((await complete(q!, 1))[0]!.len).toBe(1);
    expect(h.mem.readU8(w.status)).toBe(VIRTIO_BLK_S_OK);
    const onDisk = readFileSync(path);
    expect(onDisk.subarray(3 * 512, 5 * 512).equals(pattern)).toBe(true);
    expect(onDisk.subarray(0, 3 * 512).equals(content.subarray(0, 3 * 512))).toBe(true);
    expect(onDisk.subarray(5 * 512).equals(content.subarray(5 * 512))).toBe(true);
    const fl = post(h, q!, VIRTIO_BLK_T_FLUSH, 0, null, 0);
    h.drv.kick(0);
    await complete(q!, 1);
    expect(h.mem.readU8(fl.status)).toBe(VIRTIO_BLK_S_OK);

    const id = post(h, q!, VIRTIO_BLK_T_GET_ID, 0, null, 20);
    h.drv.kick(0);
    expect((await complete(q!, 1))[0]!.len).toBe(21);
    expect(h.mem.read(id.data, 20).toString("latin1")).toBe("disk-serial-01234567");

    const seg = (sector: number, n: number, flags = 0) => VirtioBlkDiscardWriteZeroesLayout.encode({ sector: BigInt(sector), numSectors: n, flags });
    const wz = post(h, q!, VIRTIO_BLK_T_WRITE_ZEROES, 0, seg(20, 4), 0);
    const dc = post(h, q!, VIRTIO_BLK_T_DISCARD, 0, seg(40, 2), 0);
    const dcUnmap = post(h, q!, VIRTIO_BLK_T_DISCARD, 0, seg(40, 2, 1), 0);
    const wzPastEnd = post(h, q!, VIRTIO_BLK_T_WRITE_ZEROES, 0, seg(127, 2), 0);
    h.drv.kick(0);
    await complete(q!, 4);
    expect([wz, dc, dcUnmap, wzPastEnd].map((r) => h.mem.readU8(r.status))).toEqual([VIRTIO_BLK_S_OK, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_S_IOERR]);
    expect(readFileSync(path).subarray(20 * 512, 24 * 512).equals(Buffer.alloc(2048))).toBe(true);
    expect(blk.stats.ioerr).toBe(1);
    await blk.backend.close();
  });

  it("requests the spec fails: past the end, not a sector multiple, unknown type, write with in-data", async () => {
    const blk = new VirtioBlk({ backend: RawFileBackend.open(image(`bad${ring}`, Buffer.alloc(8192))) });
    const h = harness(blk);
    const [q] = h.drv.start(FEATS, [16]);
    const reqs = [
      post(h, q!, VIRTIO_BLK_T_IN, 15, null, 1024),
      post(h, q!, VIRTIO_BLK_T_IN, 0, null, 100),
      post(h, q!, 99, 0, null, 0),
      post(h, q!, VIRTIO_BLK_T_OUT, 0, Buffer.alloc(512), 512),
      post(h, q!, VIRTIO_BLK_T_IN, 2 ** 52, null, 512),
    ];
    h.drv.kick(0);
    await complete(q!, 5);
    expect(reqs.map((r) => h.mem.readU8(r.status))).toEqual([VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_IOERR]);
    expect(h.drv.status & VIRTIO_CONFIG_S_NEEDS_RESET).toBe(0);
  });

  it("read-only: offers VIRTIO_BLK_F_RO, fails writes with IOERR and leaves the file alone", async () => {
    const content = randomBytes(8192);
    const path = image(`ro${ring}`, content);
    const blk = new VirtioBlk({ backend: RawFileBackend.open(path, { readOnly: true }) });
    const h = harness(blk);
    expect(h.drv.deviceFeatures() & bit(VIRTIO_BLK_F_RO)).toBe(bit(VIRTIO_BLK_F_RO));
    expect(h.drv.deviceFeatures() & bit(VIRTIO_BLK_F_DISCARD)).toBe(0n);
    const [q] = h.drv.start(ring | bit(VIRTIO_BLK_F_RO), [16]);
    const w = post(h, q!, VIRTIO_BLK_T_OUT, 0, Buffer.alloc(512, 0x55), 0);
    const wz = post(h, q!, VIRTIO_BLK_T_WRITE_ZEROES, 0, VirtioBlkDiscardWriteZeroesLayout.encode({ sector: 0n, numSectors: 1, flags: 0 }), 0);
    const r = post(h, q!, VIRTIO_BLK_T_IN, 0, null, 512);
    h.drv.kick(0);
    await complete(q!, 3);
    expect(h.mem.readU8(w.status)).toBe(VIRTIO_BLK_S_IOERR);
    expect(h.mem.readU8(wz.status)).toBe(VIRTIO_BLK_S_UNSUPP);
    expect(h.mem.readU8(r.status)).toBe(VIRTIO_BLK_S_OK);
    expect(readFileSync(path).equals(content)).toBe(true);
  });

  it("a reset mid-request never writes the late completion into guest memory", async () => {
    const blk = new VirtioBlk({ backend: RawFileBackend.open(image(`reset${ring}`, randomBytes(1 << 20))) });
    const h = harness(blk);
    const [q] = h.drv.start(FEATS, [16]);
    const reqs = [0, 512, 1024].map((s) => post(h, q!, VIRTIO_BLK_T_IN, s, null, 64 * 1024));
    h.drv.kick(0);
    expect(blk.inFlight).toBe(3);
    // The guest resets and reuses the buffers at once.
    h.drv.writeReg(0x70, 0);
    for (const r of reqs) h.mem.fill(r.data, 64 * 1024, 0xab);
    await blk.idle();
    for (const r of reqs) {
      expect(h.mem.read(r.data, 64 * 1024).equals(Buffer.alloc(64 * 1024, 0xab))).toBe(true);
      expect(h.mem.readU8(r.status)).toBe(0xee);
    }
    expect(blk.stats.dropped).toBe(3);
    expect(q!.takeUsed()).toEqual([]);
  });

  it("a request without a status byte is a driver bug: DEVICE_NEEDS_RESET", () => {
    const blk = new VirtioBlk({ backend: RawFileBackend.open(image(`nostatus${ring}`, Buffer.alloc(4096))) });
    const h = harness(blk);
    const [q] = h.drv.start(FEATS, [16]);
    const hdr = h.heap.alloc(16);
    q!.add([{ addr: hdr, len: 16, writable: false }]);
    h.drv.kick(0);
    expect(h.drv.status & VIRTIO_CONFIG_S_NEEDS_RESET).toBe(VIRTIO_CONFIG_S_NEEDS_RESET);
    expect(h.errors[0]!.code).toBe("VIRTQ_CHAIN_SHORT");
  });
});
