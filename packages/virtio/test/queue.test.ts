import { GuestMemoryMap } from "@tsvmm/abi";
import { type DescriptorChain, type DriverElement, GuestHeap, Queue, type QueueFeatures, VirtqueueError } from "@tsvmm/virtio";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { buffers, makeQueuePair, RAM_BASE } from "./helpers/setup.js";

const FORMATS: QueueFeatures[] = [
  { packed: false, eventIdx: false, indirect: true },
  { packed: false, eventIdx: true, indirect: true },
  { packed: true, eventIdx: false, indirect: true },
  { packed: true, eventIdx: true, indirect: true },
];
const label = (f: QueueFeatures): string => `${f.packed ? "packed" : "split"}${f.eventIdx ? "+event-idx" : ""}`;

describe.each(FORMATS)("queue %#", (features) => {
  it(`${label(features)}: one chain travels driver -> device -> driver with its bytes`, () => {
    const { mem, heap, drv, dev } = makeQueuePair(8, features);
    const els = buffers(mem, heap, [Buffer.from("hello "), Buffer.from("world")], [4, 8]);
    const token = drv.add(els);
    const chain = dev.pop()!;
    expect(chain).not.toBeNull();
    expect(chain.readableLength).toBe(11);
    expect(chain.writableLength).toBe(12);
    expect(chain.reader().read(11).toString()).toBe("hello world");
    const w = chain.writer();
    w.write(Buffer.from("0123456789"));
    dev.addUsed(chain, w.written);
    expect(dev.pop()).toBeNull();
    const used = drv.takeUsed();
    expect(used).toEqual([{ token, len: 10, elements: els }]);
    expect(mem.read(els[2]!.addr, 4).toString()).toBe("0123");
    expect(mem.read(els[3]!.addr, 6).toString()).toBe("456789");
  });

  it(`${label(features)}: indirect chains read the same as direct ones`, () => {
    const { mem, heap, drv, dev } = makeQueuePair(4, features);
    const els = buffers(mem, heap, [Buffer.from("abc"), Buffer.from("de")], [3]);
    drv.add(els, { indirect: true });
    const c = dev.pop()!;
    expect(c.slots).toBe(1);
    expect(c.descriptors).toEqual(els);
  });

  it(`${label(features)}: property: the device sees exactly what the driver offered, the driver gets back exactly what the device returned`, () => {
    type Op =
      | { k: "add"; out: number[]; ins: number[]; indirect: boolean }
      | { k: "pop"; n: number }
      | { k: "complete"; pick: number; frac: number }
      | { k: "collect" }
      | { k: "snapshot" };
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ k: fc.constant("add" as const), out: fc.array(fc.integer({ min: 0, max: 40 }), { maxLength: 3 }), ins: fc.array(fc.integer({ min: 0, max: 40 }), { maxLength: 3 }), indirect: fc.boolean() }),
      fc.record({ k: fc.constant("pop" as const), n: fc.integer({ min: 1, max: 4 }) }),
      fc.record({ k: fc.constant("complete" as const), pick: fc.nat(), frac: fc.double({ min: 0, max: 1, noNaN: true }) }),
      fc.constant({ k: "collect" as const }),
      fc.constant({ k: "snapshot" as const }),
    );
    fc.assert(
      fc.property(fc.constantFrom(1, 2, 4, 8, 16), fc.array(op, { maxLength: 60 }), (size, ops) => {
        const p = makeQueuePair(size, features, 1 << 20);
        let dev = p.dev;
        const { mem, heap, drv } = p;
        const pending: { token: number; els: DriverElement[] }[] = [];
        const inflight: DescriptorChain[] = [];
        const returned: { token: number; len: number }[] = [];
        for (const o of ops) {
          if (o.k === "add") {
            if (o.out.length + o.ins.length === 0) continue;
            if (heap.used > (1 << 20) - 4096) continue;
            const els = buffers(mem, heap, o.out.map((n) => Buffer.alloc(n, n)), o.ins);
            const t = drv.add(els, { indirect: o.indirect });
            if (t >= 0) pending.push({ token: t, els });
          } else if (o.k === "pop") {
            for (let i = 0; i < o.n; i++) {
              const c = dev.pop();
              const want = pending.shift();
              if (want === undefined) {
                expect(c).toBeNull();
                break;
              }
              expect(c).not.toBeNull();
              expect(c!.id).toBe(want.token);
              expect(c!.descriptors).toEqual(want.els);
              inflight.push(c!);
            }
          } else if (o.k === "complete") {
            if (inflight.length === 0) continue;
            const [c] = inflight.splice(o.pick % inflight.length, 1);
            const len = Math.floor(c!.writableLength * o.frac);
            dev.addUsed(c!, len);
            returned.push({ token: c!.id, len });
          } else if (o.k === "collect") {
            expect(drv.takeUsed().map((u) => ({ token: u.token, len: u.len }))).toEqual(returned.splice(0));
          } else {
            const s = JSON.parse(JSON.stringify(dev.saveState()));
            dev = new Queue(0, size);
            dev.restoreState(s, mem);
            expect(dev.saveState()).toEqual(s);
          }
        }
        expect(drv.takeUsed().map((u) => ({ token: u.token, len: u.len }))).toEqual(returned);
      }),
      { numRuns: 300 },
    );
  });

  it(`${label(features)}: property: used-buffer interrupts follow the driver's suppression`, () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 0, max: 40 }), fc.boolean(), (after, warmup, enabled) => {
        const size = 8;
        const { mem, heap, drv, dev } = makeQueuePair(size, features, 1 << 18);
        const cycle = (): DescriptorChain => {
          drv.add(buffers(mem, heap, [], [1]));
          const c = dev.pop()!;
          return c;
        };
        // Move the rings somewhere past the start so the wrap counters are exercised.
        for (let i = 0; i < warmup; i++) {
          dev.addUsed(cycle(), 1);
          dev.needsNotification();
          drv.takeUsed();
          heap.clear();
          heap.alloc(1 << 16);
        }
        drv.setInterrupts(enabled, after);
        const seen: boolean[] = [];
        for (let i = 0; i < after + 2; i++) {
          dev.addUsed(cycle(), 1);
          seen.push(dev.needsNotification());
          drv.takeUsed();
        }
        if (!enabled) expect(seen.every((s) => !s)).toBe(true);
        else if (!features.eventIdx) expect(seen.every((s) => s)).toBe(true);
        else {
          // Exactly the completion that makes `after` new used buffers interrupts; none before it.
          expect(seen.slice(0, after).map((s, i) => s === (i === after - 1))).toEqual(new Array(after).fill(true));
          expect(seen.slice(after)).toEqual([false, false]);
        }
      }),
      { numRuns: 200 },
    );
  });

  it(`${label(features)}: property: available-buffer kicks follow the device's suppression`, () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 30 }), fc.integer({ min: 1, max: 5 }), (warmup, adds) => {
        const { mem, heap, drv, dev } = makeQueuePair(8, features, 1 << 18);
        for (let i = 0; i < warmup; i++) {
          drv.add(buffers(mem, heap, [Buffer.from("x")], []));
          dev.addUsed(dev.pop()!, 0);
          drv.takeUsed();
          drv.kickNeeded();
          heap.clear();
          heap.alloc(1 << 16);
        }
        dev.disableNotification();
        drv.add(buffers(mem, heap, [Buffer.from("x")], []));
        const disabledKick = drv.kickNeeded();
        while (dev.pop() !== null);
        expect(dev.enableNotification()).toBe(false);
        const kicks: boolean[] = [];
        for (let i = 0; i < adds; i++) {
          drv.add(buffers(mem, heap, [Buffer.from("y")], []));
          kicks.push(drv.kickNeeded());
        }
        // Without event idx the flag stays up; with it, only the first add after enabling kicks.
        if (features.eventIdx) {
          expect(kicks).toEqual(kicks.map((_, i) => i === 0));
        } else {
          expect(disabledKick).toBe(false);
          expect(kicks.every((k) => k)).toBe(true);
        }
        expect(dev.enableNotification()).toBe(true);
      }),
      { numRuns: 200 },
    );
  });
});

describe("hostile queues end in a typed VirtqueueError", () => {
  const code = (f: () => unknown): string => {
    try {
      f();
    } catch (e) {
      expect(e).toBeInstanceOf(VirtqueueError);
      return (e as VirtqueueError).code;
    }
    return "no error";
  };

  it("split: a descriptor loop, a chain longer than the queue, a head out of range, an avail jump", () => {
    const { mem, dev, drv } = makeQueuePair(4, FORMATS[0]!);
    // Loop: descriptor 0 -> 1 -> 0.
    for (const [i, next] of [
      [0, 1],
      [1, 0],
    ] as const) {
      mem.writeU64(drv.descTable + i * 16, RAM_BASE + 0x8000);
      mem.writeU32(drv.descTable + i * 16 + 8, 16);
      mem.writeU16(drv.descTable + i * 16 + 12, 1);
      mem.writeU16(drv.descTable + i * 16 + 14, next);
    }
    mem.writeU16(drv.driverArea + 4, 0);
    mem.writeU16(drv.driverArea + 2, 1);
    expect(code(() => dev.pop())).toBe("VIRTQ_CHAIN_TOO_LONG");
    mem.writeU16(drv.driverArea + 4, 9);
    expect(code(() => dev.pop())).toBe("VIRTQ_HEAD_OUT_OF_RANGE");
    mem.writeU16(drv.driverArea + 2, 6);
    expect(code(() => dev.pop())).toBe("VIRTQ_AVAIL_INDEX_JUMP");
    mem.writeU16(drv.driverArea + 2, 1);
    mem.writeU16(drv.driverArea + 4, 1);
    mem.writeU16(drv.descTable + 1 * 16 + 14, 7);
    expect(code(() => dev.pop())).toBe("VIRTQ_NEXT_OUT_OF_RANGE");
  });

  it("buffers outside RAM, straddling its end, above 2^53; readable after writable; nested and malformed indirect", () => {
    for (const features of FORMATS) {
      const end = RAM_BASE + (1 << 16);
      const cases: [DriverElement[], { indirect?: boolean }, string][] = [
        [[{ addr: 0x1000, len: 16, writable: false }], {}, "VIRTQ_BUFFER_OUT_OF_RANGE"],
        [[{ addr: end - 8, len: 16, writable: true }], {}, "VIRTQ_BUFFER_OUT_OF_RANGE"],
        [[{ addr: 2 ** 60, len: 1, writable: true }], {}, "VIRTQ_BUFFER_OUT_OF_RANGE"],
        [
          [
            { addr: RAM_BASE + 0x8000, len: 4, writable: true },
            { addr: RAM_BASE + 0x9000, len: 4, writable: false },
          ],
          {},
          "VIRTQ_READABLE_AFTER_WRITABLE",
        ],
        [[{ addr: end - 8, len: 16, writable: true }], { indirect: true }, "VIRTQ_BUFFER_OUT_OF_RANGE"],
      ];
      for (const [els, opts, want] of cases) {
        const { drv, dev } = makeQueuePair(4, features, 1 << 16);
        drv.add(els, opts);
        expect(code(() => dev.pop()), `${label(features)} ${want}`).toBe(want);
      }
    }
  });

  it("indirect tables: nested, with NEXT, bad length, not negotiated", () => {
    for (const features of FORMATS) {
      const { mem, drv, dev } = makeQueuePair(4, features, 1 << 16);
      drv.add([{ addr: RAM_BASE + 0x8000, len: 4, writable: true }], { indirect: true });
      const slot = drv.descTable;
      const table = Number(mem.readU64(slot));
      // Make the table's entry itself indirect.
      const flagsOff = features.packed ? 14 : 12;
      mem.writeU16(table + flagsOff, 4);
      expect(code(() => dev.pop()), label(features)).toBe("VIRTQ_NESTED_INDIRECT");

      const b = makeQueuePair(4, features, 1 << 16);
      b.drv.add([{ addr: RAM_BASE + 0x8000, len: 4, writable: true }], { indirect: true });
      b.mem.writeU32(b.drv.descTable + 8, 17);
      expect(code(() => b.dev.pop())).toBe("VIRTQ_INDIRECT_BAD_LENGTH");

      const c = makeQueuePair(4, { ...features, indirect: false }, 1 << 16);
      c.drv.add([{ addr: RAM_BASE + 0x8000, len: 4, writable: true }], { indirect: true });
      expect(code(() => c.dev.pop())).toBe("VIRTQ_INDIRECT_NOT_NEGOTIATED");

      const d = makeQueuePair(4, features, 1 << 16);
      d.drv.add([{ addr: RAM_BASE + 0x8000, len: 4, writable: true }], { indirect: true });
      d.mem.writeU16(d.drv.descTable + flagsOff, d.mem.readU16(d.drv.descTable + flagsOff) | 1);
      expect(code(() => d.dev.pop())).toBe("VIRTQ_INDIRECT_WITH_NEXT");
    }
  });

  it("packed: a chain that never ends is refused", () => {
    const { mem, drv, dev } = makeQueuePair(4, FORMATS[2]!, 1 << 16);
    for (let i = 0; i < 4; i++) {
      mem.writeU64(drv.descTable + i * 16, RAM_BASE + 0x8000);
      mem.writeU32(drv.descTable + i * 16 + 8, 4);
      mem.writeU16(drv.descTable + i * 16 + 14, 0x80 | 1);
    }
    expect(code(() => dev.pop())).toBe("VIRTQ_CHAIN_TOO_LONG");
  });

  it("activation refuses a split size that is not a power of two, misaligned rings and rings outside RAM", () => {
    const mem = GuestMemoryMap.allocate([{ base: 0, size: 1 << 16 }]);
    const q = new Queue(0, 256);
    q.ready = true;
    q.size = 3;
    q.descTable = 0;
    q.driverArea = 0x1000;
    q.deviceArea = 0x2000;
    expect(code(() => q.activate(mem, { packed: false, eventIdx: false, indirect: false }))).toBe("VIRTQ_INVALID_SIZE");
    expect(code(() => q.activate(mem, { packed: true, eventIdx: false, indirect: false }))).toBe("no error");
    q.size = 4;
    q.descTable = 8;
    expect(code(() => q.activate(mem, { packed: false, eventIdx: false, indirect: false }))).toBe("VIRTQ_MISALIGNED");
    q.descTable = 0xfff0;
    expect(code(() => q.activate(mem, { packed: false, eventIdx: false, indirect: false }))).toBe("VIRTQ_RING_OUT_OF_RANGE");
    q.size = 512;
    expect(code(() => q.activate(mem, { packed: false, eventIdx: false, indirect: false }))).toBe("VIRTQ_INVALID_SIZE");
    q.ready = false;
    expect(code(() => q.activate(mem, { packed: false, eventIdx: false, indirect: false }))).toBe("VIRTQ_NOT_READY");
    expect(code(() => q.pop())).toBe("VIRTQ_NOT_READY");
  });

  it("a device returning more than it took is refused", () => {
    for (const f of FORMATS) {
      const { dev } = makeQueuePair(4, f, 1 << 16);
      expect(code(() => dev.addUsed({ id: 0, slots: 1 }, 0))).toBe("VIRTQ_USED_OVERFLOW");
    }
  });

  it("zero-length buffers are carried (the device decides whether a request is short)", () => {
    const mem = GuestMemoryMap.allocate([{ base: RAM_BASE, size: 1 << 16 }]);
    void new GuestHeap(RAM_BASE, 1 << 16);
    for (const f of FORMATS) {
      const { drv, dev } = makeQueuePair(4, f, 1 << 16);
      drv.add([{ addr: RAM_BASE + 0x8000, len: 0, writable: true }]);
      const c = dev.pop()!;
      expect(c.writableLength).toBe(0);
      expect(code(() => c.writer().write(Buffer.from("x")))).toBe("VIRTQ_CHAIN_SHORT");
    }
    void mem;
  });
});
