import {
  type BlockBackend,
  bit,
  type IoDone,
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_T_DISCARD,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VIRTIO_BLK_T_WRITE_ZEROES,
  VIRTIO_F_RING_PACKED,
  VIRTIO_RING_F_INDIRECT_DESC,
  VirtioBlk,
  VirtioBlkDiscardWriteZeroesLayout,
  VirtioBlkOuthdrLayout,
} from "@tsvmm/virtio";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { harness, until } from "./helpers/harness.js";

const SECTORS = 128;

/** A disk in host memory; completions come on a later turn, as from a real backend. */
class RamDisk implements BlockBackend {
  readonly readOnly = false;
  constructor(readonly data: Buffer) {}
  get size(): number {
    return this.data.length;
  }
  read(position: number, into: Buffer, done: IoDone): void {
    setImmediate(() => {
      this.data.copy(into, 0, position, position + into.length);
      done(null);
    });
  }
  write(position: number, from: readonly Buffer[], done: IoDone): void {
    // Copy now: the device may hand views of guest memory that are only valid until completion.
    const whole = Buffer.concat(from);
    setImmediate(() => {
      whole.copy(this.data, position);
      done(null);
    });
  }
  flush(done: IoDone): void {
    setImmediate(done, null);
  }
  writeZeroes(position: number, length: number, done: IoDone): void {
    setImmediate(() => {
      this.data.fill(0, position, position + length);
      done(null);
    });
  }
  discard(_p: number, _l: number, done: IoDone): void {
    setImmediate(done, null);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** Cut `total` bytes into pieces at the given points (kept inside, deduplicated); no empty pieces. */
function pieces(total: number, cuts: readonly number[]): number[] {
  const at = [...new Set(cuts.map((c) => c % total).filter((c) => c > 0))].sort((a, b) => a - b);
  const out: number[] = [];
  let prev = 0;
  for (const c of [...at, total]) {
    out.push(c - prev);
    prev = c;
  }
  return out;
}

const request = fc.record({
  write: fc.boolean(),
  sector: fc.integer({ min: 0, max: SECTORS + 2 }),
  sectors: fc.integer({ min: 0, max: 4 }),
  outCuts: fc.array(fc.integer({ min: 1, max: 4096 }), { maxLength: 4 }),
  inCuts: fc.array(fc.integer({ min: 1, max: 4096 }), { maxLength: 4 }),
  indirect: fc.boolean(),
  fill: fc.integer({ min: 0, max: 255 }),
});

describe.each([
  ["split", 0n],
  ["packed", bit(VIRTIO_F_RING_PACKED)],
])("virtio-blk message framing (§2.6.4: the device assumes no descriptor layout), %s ring", (_n, ring) => {
  it("property: a request split across descriptors at arbitrary byte boundaries (header, data and status byte alike) does what the same request in one piece would", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(request, { minLength: 1, maxLength: 5 }), async (reqs) => {
        const model = Buffer.alloc(SECTORS * 512);
        for (let i = 0; i < model.length; i++) model[i] = (i * 7 + (i >> 9)) & 0xff;
        const disk = new RamDisk(Buffer.from(model));
        const h = harness(new VirtioBlk({ backend: disk }), {}, 1 << 20);
        const [q] = h.drv.start(ring | bit(VIRTIO_RING_F_INDIRECT_DESC), [32]);
        for (const r of reqs) {
          const len = r.sectors * 512;
          const payload = Buffer.alloc(r.write ? len : 0, r.fill);
          const readable = Buffer.concat([VirtioBlkOuthdrLayout.encode({ type: r.write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, ioprio: 0, sector: BigInt(r.sector) }), payload]);
          const writableLen = (r.write ? 0 : len) + 1;
          const els: { addr: number; len: number; writable: boolean }[] = [];
          let off = 0;
          for (const n of pieces(readable.length, r.outCuts)) {
            const a = h.heap.alloc(n, 1);
            h.mem.write(a, readable.subarray(off, off + n));
            off += n;
            els.push({ addr: a, len: n, writable: false });
          }
          for (const n of pieces(writableLen, r.inCuts)) {
            const a = h.heap.alloc(n, 1);
            h.mem.fill(a, n, 0xee);
            els.push({ addr: a, len: n, writable: true });
          }
          expect(q!.add(els, { indirect: r.indirect })).toBeGreaterThanOrEqual(0);
          h.drv.kick(0);
          let used: { len: number }[] = [];
          await until(() => {
            used = q!.takeUsed();
            return used.length === 1;
          }, "completion");
          const writable = Buffer.concat(els.filter((e) => e.writable).map((e) => h.mem.read(e.addr, e.len)));
          const status = writable[writable.length - 1];
          const ok = r.sector + r.sectors <= SECTORS;
          expect(status).toBe(ok ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR);
          if (!ok) {
            expect(used[0]!.len).toBe(1);
            continue;
          }
          if (r.write) {
            payload.copy(model, r.sector * 512);
            expect(used[0]!.len).toBe(1);
          } else {
            expect(used[0]!.len).toBe(len + 1);
            expect(writable.subarray(0, len).equals(model.subarray(r.sector * 512, r.sector * 512 + len))).toBe(true);
          }
          expect(disk.data.equals(model)).toBe(true);
        }
      }),
      { numRuns: 50 },
    );
  });

  it("property: GET_ID, FLUSH, WRITE_ZEROES and DISCARD split at arbitrary byte boundaries give the same answers as in one piece", async () => {
    const op = fc.record({
      type: fc.constantFrom(VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_WRITE_ZEROES, VIRTIO_BLK_T_DISCARD),
      idLen: fc.integer({ min: 0, max: 24 }),
      sector: fc.integer({ min: 0, max: SECTORS - 1 }),
      sectors: fc.integer({ min: 1, max: 8 }),
      outCuts: fc.array(fc.integer({ min: 1, max: 64 }), { maxLength: 4 }),
      inCuts: fc.array(fc.integer({ min: 1, max: 64 }), { maxLength: 3 }),
      indirect: fc.boolean(),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 4 }), async (ops) => {
        const model = Buffer.alloc(SECTORS * 512, 0x5c);
        const disk = new RamDisk(Buffer.from(model));
        const h = harness(new VirtioBlk({ backend: disk, id: "serial-0123456789ABCDEF" }), {}, 1 << 20);
        const [q] = h.drv.start(ring | bit(VIRTIO_RING_F_INDIRECT_DESC), [32]);
        for (const r of ops) {
          const seg = r.type === VIRTIO_BLK_T_WRITE_ZEROES || r.type === VIRTIO_BLK_T_DISCARD;
          const body = seg ? VirtioBlkDiscardWriteZeroesLayout.encode({ sector: BigInt(r.sector), numSectors: r.sectors, flags: 0 }) : Buffer.alloc(0);
          const readable = Buffer.concat([VirtioBlkOuthdrLayout.encode({ type: r.type, ioprio: 0, sector: 0n }), body]);
          const dataIn = r.type === VIRTIO_BLK_T_GET_ID ? r.idLen : 0;
          const els: { addr: number; len: number; writable: boolean }[] = [];
          let off = 0;
          for (const n of pieces(readable.length, r.outCuts)) {
            const a = h.heap.alloc(n, 1);
            h.mem.write(a, readable.subarray(off, off + n));
            off += n;
            els.push({ addr: a, len: n, writable: false });
          }
          for (const n of pieces(dataIn + 1, r.inCuts)) {
            const a = h.heap.alloc(n, 1);
            h.mem.fill(a, n, 0xee);
            els.push({ addr: a, len: n, writable: true });
          }
          q!.add(els, { indirect: r.indirect });
          h.drv.kick(0);
          let used: { len: number }[] = [];
          await until(() => {
            used = q!.takeUsed();
            return used.length === 1;
          }, "completion");
          const writable = Buffer.concat(els.filter((e) => e.writable).map((e) => h.mem.read(e.addr, e.len)));
          const inRange = r.sector + r.sectors <= SECTORS;
          const wantStatus = seg && !inRange ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
          expect(writable[writable.length - 1]).toBe(wantStatus);
          if (r.type === VIRTIO_BLK_T_GET_ID) {
            const n = Math.min(r.idLen, 20);
            expect(used[0]!.len).toBe(n + 1);
            expect(writable.subarray(0, n).toString("latin1")).toBe("serial-0123456789ABC".slice(0, n));
          } else expect(used[0]!.len).toBe(1);
          if (r.type === VIRTIO_BLK_T_WRITE_ZEROES && inRange) model.fill(0, r.sector * 512, (r.sector + r.sectors) * 512);
          expect(disk.data.equals(model)).toBe(true);
        }
      }),
      { numRuns: 50 },
    );
  });
});
