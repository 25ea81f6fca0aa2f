// Hostile-queue fuzzing: random queue memory, random avail indexes, random ring features and
// sizes, valid chains with random corruption — per device. Every case must leave the VMM
// standing: no exception out of the transport, every contained error one of this package's typed
// errors (never VIRTIO_DEVICE_INTERNAL, which marks a bug), and each case bounded in time.
// TSVMM_FUZZ_SCALE multiplies the case count (`npm run fuzz` uses 10: 10^6 cases).
import { randomFillSync } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GuestMemoryMap, TsvmmError } from "@tsvmm/abi";
import {
  bit,
  GuestHeap,
  MmioTransport,
  RawFileBackend,
  TestDriver,
  VIRTIO_F_RING_PACKED,
  VIRTIO_MMIO_QUEUE_AVAIL_LOW,
  VIRTIO_MMIO_QUEUE_DESC_LOW,
  VIRTIO_MMIO_QUEUE_NUM,
  VIRTIO_MMIO_QUEUE_READY,
  VIRTIO_MMIO_QUEUE_SEL,
  VIRTIO_MMIO_QUEUE_USED_LOW,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
  VirtioBlk,
  VirtioConsole,
  type VirtioDevice,
  VirtioNet,
  VirtioRng,
  VirtioVsock,
} from "@tsvmm/virtio";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const SCALE = Number(process.env.TSVMM_FUZZ_SCALE ?? "1");
const TOTAL = 100_000 * SCALE;
const CASE_LIMIT_MS = 1000;
const RAM_BASE = 0x10000;
const RAM_SIZE = 64 * 1024;

/** xorshift32: reproducible from the seed printed on failure. */
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  const next = (): number => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
  return { next, below: (n: number) => next() % n, chance: (p: number) => next() / 2 ** 32 < p };
}

let dir = "";
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "tsvmm-virtio-fuzz-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const devices: [string, () => VirtioDevice][] = [
  ["rng", () => new VirtioRng({ queueSize: 64 })],
  ["console", () => new VirtioConsole({ output: () => {}, queueSize: 64 })],
  [
    "blk",
    () => {
      const p = join(dir, "disk.img");
      writeFileSync(p, Buffer.alloc(1 << 20));
      return new VirtioBlk({ backend: RawFileBackend.open(p), queueSize: 64 });
    },
  ],
  ["net", () => new VirtioNet({ backend: { write() {}, onFrame() {} }, queueSize: 64 })],
  ["vsock", () => new VirtioVsock({ guestCid: 3, udsPath: join(dir, "vsock.sock"), queueSize: 64 })],
];

describe("hostile queues never hurt the VMM", () => {
  it.each(devices)("%s", async (name, make) => {
    const cases = Math.floor(TOTAL / devices.length);
    const mem = GuestMemoryMap.allocate([{ base: RAM_BASE, size: RAM_SIZE, name: "ram" }]);
    const ram = mem.regions[0]!.buffer;
    const heap = new GuestHeap(RAM_BASE, RAM_SIZE);
    const device = make();
    const seen = new Map<string, number>();
    let untyped = 0;
    let internal = 0;
    let thrown = 0;
    let slow = 0;
    const t = new MmioTransport(device, {
      mem,
      interrupt: { trigger() {} },
      onError: (e) => {
        if (!(e instanceof TsvmmError)) untyped++;
        if (e.code === "VIRTIO_DEVICE_INTERNAL") internal++;
        seen.set(e.code, (seen.get(e.code) ?? 0) + 1);
      },
    });
    const drv = new TestDriver(t, mem, heap);
    const seed0 = (Date.now() ^ name.length * 0x9e3779b9) >>> 0;
    let needsReset = 0;
    for (let i = 0; i < cases; i++) {
      const r = rng(seed0 + i);
      const start = performance.now();
      try {
        heap.clear();
        const features =
          (r.chance(0.5) ? bit(VIRTIO_F_RING_PACKED) : 0n) | (r.chance(0.5) ? bit(VIRTIO_RING_F_EVENT_IDX) : 0n) | (r.chance(0.7) ? bit(VIRTIO_RING_F_INDIRECT_DESC) : 0n);
        drv.negotiate(features);
        const nq = device.queueMaxSizes.length;
        for (let q = 0; q < nq; q++) {
          const size = r.chance(0.8) ? 1 << r.below(7) : 1 + r.below(80);
          drv.setupQueue(q, Math.min(size, 64));
          if (r.chance(0.1)) {
            // Re-program with hostile numbers: odd sizes, addresses off the end or misaligned.
            drv.writeReg(VIRTIO_MMIO_QUEUE_SEL, q);
            drv.writeReg(VIRTIO_MMIO_QUEUE_READY, 0);
            drv.writeReg(VIRTIO_MMIO_QUEUE_NUM, r.below(200));
            const reg = [VIRTIO_MMIO_QUEUE_DESC_LOW, VIRTIO_MMIO_QUEUE_AVAIL_LOW, VIRTIO_MMIO_QUEUE_USED_LOW][r.below(3)]!;
            drv.writeReg(reg, r.chance(0.5) ? r.next() : RAM_BASE + r.below(RAM_SIZE + 64));
            drv.writeReg(VIRTIO_MMIO_QUEUE_READY, 1);
          }
        }
        if (r.chance(0.05)) drv.kick(r.below(nq + 1)); // before DRIVER_OK
        // Either pure noise, or well-formed chains that are then corrupted.
        if (r.chance(0.5)) randomFillSync(ram);
        else {
          for (let q = 0; q < nq; q++) {
            const dq = drv.queues[q];
            if (dq === undefined) continue;
            for (let k = r.below(4); k > 0; k--) {
              const els = [];
              for (let e = 1 + r.below(3); e > 0; e--) {
                const len = r.below(600);
                els.push({ addr: heap.alloc(len + 1), len, writable: r.chance(0.5) });
              }
              els.sort((a, b) => Number(a.writable) - Number(b.writable));
              try {
                dq.add(els, { indirect: r.chance(0.3) });
              } catch {
                break; // heap exhausted: enough chains
              }
            }
          }
          for (let m = r.below(8); m > 0; m--) ram[r.below(RAM_SIZE)] = r.below(256);
        }
        drv.driverOk();
        for (let k = r.below(4); k >= 0; k--) {
          if (r.chance(0.3)) {
            const q = drv.queues[r.below(nq)];
            if (q !== undefined) mem.writeU16(q.driverArea + 2, r.next() & 0xffff); // random avail idx
          }
          t.notify(r.below(nq));
          drv.kick(r.below(nq + 2)); // including queues that do not exist
        }
        if (drv.status & 0x40) needsReset++;
      } catch (e) {
        thrown++;
        throw new Error(`${name} case ${i} (seed ${seed0 + i}) threw out of the transport: ${(e as Error).stack}`);
      }
      if (performance.now() - start > CASE_LIMIT_MS) slow++;
    }
    drv.writeReg(0x70, 0);
    if (device instanceof VirtioBlk) {
      await device.idle();
      await device.backend.close();
    }
    if (device instanceof VirtioVsock) await device.close();
    expect({ thrown, untyped, internal, slow }).toEqual({ thrown: 0, untyped: 0, internal: 0, slow: 0 });
    // The fuzz reached the device and the checks, not just the front door.
    expect(needsReset).toBeGreaterThan(cases / 10);
    expect(seen.size).toBeGreaterThan(5);
  });
});
