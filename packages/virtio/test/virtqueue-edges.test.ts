import { GuestMemoryMap } from "@tsvmm/abi";
import {
  DescriptorChain,
  PDESC_ADDR,
  PDESC_FLAGS,
  PDESC_ID,
  PDESC_LEN,
  PDESC_SIZE,
  Queue,
  type QueueFeatures,
  type QueueState,
  VirtqueueError,
  VRING_DESC_F_INDIRECT,
  VRING_DESC_F_NEXT,
  VRING_DESC_F_WRITE,
  VRING_PACKED_DESC_F_AVAIL,
  VRING_PACKED_DESC_F_USED,
} from "@tsvmm/virtio";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { makeQueuePair, queuePairOver, RAM_BASE } from "./helpers/setup.js";

const FORMATS: QueueFeatures[] = [
  { packed: false, eventIdx: false, indirect: true },
  { packed: false, eventIdx: true, indirect: true },
  { packed: true, eventIdx: false, indirect: true },
  { packed: true, eventIdx: true, indirect: true },
];
const label = (f: QueueFeatures): string => `${f.packed ? "packed" : "split"}${f.eventIdx ? "+event-idx" : ""}`;

function code(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return e instanceof VirtqueueError ? e.code : `not a VirtqueueError: ${String(e)}`;
  }
  return "no error";
}


describe("Queue configuration", () => {
  it("a maximum size outside 1..32768 is refused; a queue that is not activated refuses ring work", () => {
    for (const n of [0, -1, 32769, 1.5, Number.NaN]) expect(code(() => new Queue(3, n))).toBe("VIRTQ_INVALID_SIZE");
    expect(new Queue(0, 32768).maxSize).toBe(32768);
    const q = new Queue(1, 8);
    expect(q.active).toBe(false);
    expect(q.features).toBeUndefined();
    for (const f of [() => q.pop(), () => q.hasAvailable(), () => q.needsNotification(), () => q.inFlight(), () => q.checkpoint(), () => q.addUsed({ id: 0, slots: 1 }, 0)]) {
      expect(code(f)).toBe("VIRTQ_NOT_READY");
    }
    const err = (() => {
      try {
        q.pop();
      } catch (e) {
        return e as VirtqueueError;
      }
    })();
    expect(err?.queue).toBe(1);
  });

  it("activation refuses a queue the driver did not enable and a size above the maximum or zero", () => {
    const mem = GuestMemoryMap.allocate([{ base: RAM_BASE, size: 1 << 20 }]);
    const q = new Queue(0, 8);
    expect(code(() => q.activate(mem, FORMATS[0]!))).toBe("VIRTQ_NOT_READY");
    q.ready = true;
    for (const n of [0, 16, 3.5]) {
      q.size = n;
      expect(code(() => q.activate(mem, FORMATS[2]!))).toBe("VIRTQ_INVALID_SIZE");
      expect(q.active).toBe(false);
    }
  });
});

describe.each(FORMATS)("queue %#: in-flight accounting and checkpoints", (features) => {
  it(`${label(features)}: property: inFlight counts chains (split) or ring slots (packed) taken and not returned`, () => {
    fc.assert(
      fc.property(fc.array(fc.record({ n: fc.integer({ min: 1, max: 3 }), indirect: fc.boolean() }), { minLength: 1, maxLength: 5 }), fc.nat(), (chains, cut) => {
        const { heap, drv, dev } = makeQueuePair(16, features, 1 << 20);
        const taken: DescriptorChain[] = [];
        let expected = 0;
        for (const c of chains) {
          const els = Array.from({ length: c.n }, () => ({ addr: heap.alloc(8), len: 8, writable: true }));
          expect(drv.add(els, { indirect: c.indirect })).toBeGreaterThanOrEqual(0);
          const chain = dev.pop()!;
          taken.push(chain);
          expected += features.packed ? (c.indirect ? 1 : c.n) : 1;
          expect(chain.slots).toBe(features.packed && !c.indirect ? c.n : 1);
          expect(dev.inFlight()).toBe(expected);
        }
        const k = cut % (taken.length + 1);
        for (const chain of taken.slice(0, k)) {
          dev.addUsed(chain, 0);
          expected -= features.packed ? chain.slots : 1;
          expect(dev.inFlight()).toBe(expected);
        }
        expect(drv.takeUsed().length).toBe(k);
      }),
      { numRuns: 100 },
    );
  });

  it(`${label(features)}: rewind to a checkpoint makes the same chains available again, in order`, () => {
    const { heap, drv, dev } = makeQueuePair(8, features, 1 << 20);
    const tokens = [2, 1, 3].map((n) => drv.add(Array.from({ length: n }, () => ({ addr: heap.alloc(4), len: 4, writable: true }))));
    const first = dev.pop()!;
    const cp = dev.checkpoint();
    const a = [dev.pop()!, dev.pop()!];
    expect(dev.pop()).toBeNull();
    dev.rewind(cp);
    expect(dev.inFlight()).toBe(features.packed ? 2 : 1);
    const b = [dev.pop()!, dev.pop()!];
    expect(b.map((c) => c.descriptors)).toEqual(a.map((c) => c.descriptors));
    for (const c of [first, ...b]) dev.addUsed(c, 0);
    expect(drv.takeUsed().map((u) => u.token)).toEqual(tokens);
  });

  it(`${label(features)}: a returned chain with nothing in flight, or an id that is not one of ours, is refused`, () => {
    const { heap, drv, dev } = makeQueuePair(4, features, 1 << 20);
    expect(code(() => dev.addUsed({ id: 0, slots: 1 }, 0))).toMatch(/VIRTQ_USED_OVERFLOW|VIRTQ_BAD_STATE/);
    drv.add([{ addr: heap.alloc(4), len: 4, writable: true }]);
    const c = dev.pop()!;
    expect(code(() => dev.addUsed({ id: 70000, slots: 1 }, 0))).toBe("VIRTQ_BAD_STATE");
    expect(code(() => dev.addUsed({ id: -1, slots: 1 }, 0))).toBe("VIRTQ_BAD_STATE");
    if (features.packed) expect(code(() => dev.addUsed({ id: c.id, slots: 2 }, 0))).toBe("VIRTQ_USED_OVERFLOW");
    dev.addUsed(c, 4);
    expect(code(() => dev.addUsed(c, 4))).toBe("VIRTQ_USED_OVERFLOW");
    expect(drv.takeUsed().map((u) => u.len)).toEqual([4]);
  });
});

describe.each(FORMATS)("queue %#: saved state", (features) => {
  it(`${label(features)}: a queue restored mid-run continues exactly where the original was`, () => {
    const { mem, heap, drv, dev } = makeQueuePair(4, features, 1 << 20);
    // Wrap the ring more than once, leave one chain in flight.
    for (let i = 0; i < 9; i++) {
      drv.add([{ addr: heap.alloc(4), len: 4, writable: true }]);
      dev.addUsed(dev.pop()!, 1);
      drv.takeUsed();
    }
    drv.add([{ addr: heap.alloc(4), len: 4, writable: true }]);
    const open = dev.pop()!;
    const s = JSON.parse(JSON.stringify(dev.saveState())) as QueueState;
    expect(s.active?.features).toEqual(features);
    const q2 = new Queue(0, 4);
    q2.restoreState(s, mem);
    expect(q2.saveState()).toEqual(s);
    expect(q2.inFlight()).toBe(1);
    q2.addUsed(open, 2);
    drv.add([{ addr: heap.alloc(4), len: 4, writable: true }]);
    const next = q2.pop()!;
    q2.addUsed(next, 3);
    expect(drv.takeUsed().map((u) => u.len)).toEqual([2, 3]);
  });

  it(`${label(features)}: a state that cannot be this queue's is refused`, () => {
    const { mem, heap, drv, dev } = makeQueuePair(4, features, 1 << 20);
    drv.add([{ addr: heap.alloc(4), len: 4, writable: true }]);
    dev.pop();
    const s = dev.saveState();
    const a = s.active!;
    const bad: QueueState[] = [
      { ...s, maxSize: 8 },
      { ...s, active: { ...a, nextAvail: 0x10000 } },
      { ...s, active: { ...a, nextUsed: -1 } },
      { ...s, active: { ...a, nextAvail: 1.5 } },
    ];
    if (features.packed) {
      bad.push({ ...s, active: { ...a, nextAvail: 4 } }, { ...s, active: { ...a, nextUsed: 7 } }, { ...s, active: { ...a, inFlightSlots: 5 } });
    } else {
      bad.push({ ...s, active: { ...a, signalledUsed: 0x10000 } }, { ...s, active: { ...a, nextAvail: 9, nextUsed: 0 } });
    }
    for (const b of bad) expect(code(() => new Queue(0, 4).restoreState(b, mem)), JSON.stringify(b.active)).toBe("VIRTQ_BAD_STATE");
    // An inactive saved queue restores its registers only.
    const q = new Queue(0, 4);
    q.restoreState({ ...s, active: null, ready: false }, mem);
    expect([q.active, q.descTable]).toEqual([false, s.descTable]);
  });
});

describe("packed ring: hostile descriptors and notification", () => {
  const F = 1 << VRING_PACKED_DESC_F_AVAIL;
  const U = 1 << VRING_PACKED_DESC_F_USED;

  it("an indirect descriptor that is not the first of its list is refused (§2.8.7: a list holds one kind)", () => {
    const { mem, heap, drv, dev } = makeQueuePair(4, FORMATS[2]!, 1 << 20);
    const table = heap.alloc(PDESC_SIZE);
    mem.writeU64(table + PDESC_ADDR, heap.alloc(8));
    mem.writeU32(table + PDESC_LEN, 8);
    mem.writeU16(table + PDESC_FLAGS, VRING_DESC_F_WRITE);
    const put = (slot: number, addr: number, len: number, flags: number) => {
      const o = drv.descTable + slot * PDESC_SIZE;
      mem.writeU64(o + PDESC_ADDR, addr);
      mem.writeU32(o + PDESC_LEN, len);
      mem.writeU16(o + PDESC_ID, 0);
      mem.writeU16(o + PDESC_FLAGS, flags);
    };
    put(0, heap.alloc(8), 8, F | VRING_DESC_F_NEXT);
    put(1, table, PDESC_SIZE, F | VRING_DESC_F_INDIRECT);
    expect(code(() => dev.pop())).toBe("VIRTQ_INDIRECT_IN_CHAIN");
  });

  it("a driver that makes more slots available than the device has returned overflows the ring", () => {
    const { mem, heap, drv, dev } = makeQueuePair(4, FORMATS[2]!, 1 << 20);
    for (let i = 0; i < 4; i++) drv.add([{ addr: heap.alloc(8), len: 8, writable: true }]);
    for (let i = 0; i < 4; i++) expect(dev.pop()).not.toBeNull();
    // Slot 0 again, marked available for the second lap (wrap counter 0: AVAIL clear, USED set), nothing returned yet.
    const o = drv.descTable;
    mem.writeU64(o + PDESC_ADDR, heap.alloc(8));
    mem.writeU32(o + PDESC_LEN, 8);
    mem.writeU16(o + PDESC_FLAGS, U | VRING_DESC_F_WRITE);
    expect(code(() => dev.pop())).toBe("VIRTQ_USED_OVERFLOW");
  });

  it("event idx: after a whole ring of used slots since the last check, the driver is interrupted whatever its event offset", () => {
    const { heap, drv, dev } = makeQueuePair(4, FORMATS[3]!, 1 << 20);
    drv.setInterrupts(true, 3);
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 4; i++) drv.add([{ addr: heap.alloc(8), len: 8, writable: true }]);
      for (let i = 0; i < 4; i++) dev.addUsed(dev.pop()!, 0);
      expect(dev.needsNotification()).toBe(true);
      expect(drv.takeUsed().length).toBe(4);
    }
    // Interrupts off: no notification however many were used.
    drv.setInterrupts(false);
    for (let i = 0; i < 4; i++) drv.add([{ addr: heap.alloc(8), len: 8, writable: true }]);
    for (let i = 0; i < 4; i++) dev.addUsed(dev.pop()!, 0);
    expect(dev.needsNotification()).toBe(false);
  });

  it("event idx, driver side: a whole ring of new slots since the last kick always needs a kick", () => {
    const { heap, drv, dev } = makeQueuePair(4, FORMATS[3]!, 1 << 20);
    dev.enableNotification();
    for (let i = 0; i < 4; i++) drv.add([{ addr: heap.alloc(8), len: 8, writable: true }]);
    expect(drv.kickNeeded()).toBe(true);
    dev.disableNotification();
    for (let i = 0; i < 4; i++) dev.addUsed(dev.pop()!, 0);
    drv.takeUsed();
    drv.add([{ addr: heap.alloc(8), len: 8, writable: true }]);
    expect(drv.kickNeeded()).toBe(false);
  });
});

describe.each(FORMATS)("queue %#: rings in guest memory not 2-byte aligned on the host", (features) => {
  it(`${label(features)}: a region backed at an odd host offset carries chains and suppression the same`, () => {
    const ram = 1 << 20;
    const backing = Buffer.alloc(ram + 1);
    const mem = new GuestMemoryMap([{ base: RAM_BASE, size: ram, buffer: backing.subarray(1), name: "odd" }]);
    const { heap, drv, dev } = queuePairOver(mem, RAM_BASE, ram, 4, features);
    for (let i = 0; i < 10; i++) {
      drv.setInterrupts(true);
      const a = heap.alloc(8);
      mem.write(a, Buffer.from(`msg-${i}`.padEnd(8, ".")));
      drv.add([
        { addr: a, len: 8, writable: false },
        { addr: heap.alloc(8), len: 8, writable: true },
      ]);
      const c = dev.pop()!;
      expect(c.reader().read(8).toString()).toBe(`msg-${i}`.padEnd(8, "."));
      c.writer().write(Buffer.from("answer!!"));
      dev.addUsed(c, 8);
      expect(dev.needsNotification()).toBe(true);
      const [u] = drv.takeUsed();
      expect(mem.read(u!.elements[1]!.addr, 8).toString()).toBe("answer!!");
    }
    expect(dev.enableNotification()).toBe(false);
    drv.add([{ addr: heap.alloc(8), len: 8, writable: true }]);
    expect(drv.kickNeeded()).toBe(true);
    dev.addUsed(dev.pop()!, 0);
    drv.takeUsed();
    dev.disableNotification();
    drv.add([{ addr: heap.alloc(8), len: 8, writable: true }]);
    expect(drv.kickNeeded()).toBe(false);
    expect(dev.enableNotification()).toBe(true);
    drv.setInterrupts(false);
    dev.addUsed(dev.pop()!, 0);
    expect(dev.needsNotification()).toBe(false);
  });
});

describe("DescriptorChain reader and writer", () => {
  it("property: reading in any pieces gives the concatenation of the readable elements; reading past the end is VIRTQ_CHAIN_SHORT", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 24 }), { minLength: 1, maxLength: 5 }), fc.array(fc.integer({ min: 0, max: 30 }), { maxLength: 8 }), (parts, cuts) => {
        const views = parts.map((p) => Buffer.from(p));
        const chain = new DescriptorChain(
          0,
          1,
          views.map((v, i) => ({ addr: 0x1000 * (i + 1), len: v.length, writable: false })),
          views,
        );
        const whole = Buffer.concat(views);
        expect(chain.readableLength).toBe(whole.length);
        expect(chain.writableLength).toBe(0);
        const r = chain.reader();
        let off = 0;
        for (const n of cuts) {
          if (n > r.remaining) {
            expect(code(() => r.read(n))).toBe("VIRTQ_CHAIN_SHORT");
            continue;
          }
          expect(r.read(n).equals(whole.subarray(off, off + n))).toBe(true);
          off += n;
        }
        expect(r.remaining).toBe(whole.length - off);
      }),
      { numRuns: 300 },
    );
  });

  it("property: writeSome fills the writable elements in order and stops at their end", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 16 }), { minLength: 1, maxLength: 5 }), fc.array(fc.uint8Array({ maxLength: 20 }), { maxLength: 6 }), (lens, writes) => {
        const views = lens.map((n) => Buffer.alloc(n));
        const chain = new DescriptorChain(
          0,
          1,
          lens.map((n, i) => ({ addr: 0x1000 * (i + 1), len: n, writable: true })),
          views,
        );
        const cap = lens.reduce((a, b) => a + b, 0);
        const w = chain.writer();
        const model: number[] = [];
        for (const d of writes) {
          const n = w.writeSome(d);
          expect(n).toBe(Math.min(d.length, cap - model.length));
          model.push(...d.subarray(0, n));
        }
        expect(w.written).toBe(model.length);
        expect(w.remaining).toBe(cap - model.length);
        expect(Buffer.concat(views).subarray(0, model.length).equals(Buffer.from(model))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});

// The event-idx formats exercise every u16 index (avail/used idx, used_event, avail_event) and the
// packed wrap counters; the plain split ring shares their index code.
describe.each([FORMATS[1]!, FORMATS[3]!])("queue %#: indexes past 2^16", (features) => {
  it(`${label(features)}: 66000 chains through a 4-entry ring: every one arrives, every interrupt and kick the driver asks for happens`, () => {
    const { mem, heap, drv, dev } = makeQueuePair(4, features, 1 << 20);
    const out = heap.alloc(4);
    const inb = heap.alloc(4);
    for (let i = 0; i < 66000; i++) {
      mem.writeU32(out, i);
      drv.setInterrupts(true);
      dev.enableNotification();
      drv.add([
        { addr: out, len: 4, writable: false },
        { addr: inb, len: 4, writable: true },
      ]);
      if (!drv.kickNeeded()) throw new Error(`no kick asked for chain ${i}`);
      dev.disableNotification();
      const c = dev.pop();
      if (c === null) throw new Error(`chain ${i} not seen`);
      const got = c.reader().read(4).readUInt32LE(0);
      if (got !== i) throw new Error(`chain ${i} carried ${got}`);
      c.writer().write(Buffer.from([i & 0xff, 0, 0, 0]));
      dev.addUsed(c, 4);
      if (!dev.needsNotification()) throw new Error(`no interrupt for chain ${i}`);
      const used = drv.takeUsed();
      if (used.length !== 1 || used[0]!.len !== 4) throw new Error(`used after chain ${i}: ${JSON.stringify(used)}`);
      if (dev.pop() !== null) throw new Error(`phantom chain after ${i}`);
    }
    expect(mem.readU8(inb)).toBe(65999 & 0xff);
    expect(dev.inFlight()).toBe(0);
  });
});
