import { GuestMemoryMap } from "@tsvmm/abi";
import {
  bit,
  DriverPackedQueue,
  DriverSplitQueue,
  GuestHeap,
  type MmioWindow,
  PDESC_FLAGS,
  PDESC_ID,
  TestDriver,
  USED_ELEM_ID,
  USED_IDX,
  USED_RING,
  VIRTIO_F_RING_PACKED,
  VIRTIO_MMIO_INTERRUPT_ACK,
  VIRTIO_RING_F_EVENT_IDX,
  VirtioRng,
  VRING_PACKED_DESC_F_AVAIL,
  VRING_PACKED_DESC_F_USED,
} from "@tsvmm/virtio";
import { describe, expect, it } from "vitest";
import { harness, RAM_BASE } from "./helpers/harness.js";

describe("TestDriver (the guest stand-in tests and benchmarks use)", () => {
  it("on a window with no device behind it (reads as zero) start() fails: the device never keeps FEATURES_OK", () => {
    const mem = GuestMemoryMap.allocate([{ base: RAM_BASE, size: 1 << 16 }]);
    const empty: MmioWindow = {
      read: (_o, d) => void d.fill(0),
      write: () => {},
    };
    const drv = new TestDriver(empty, mem, new GuestHeap(RAM_BASE, 1 << 16));
    expect(drv.deviceFeatures()).toBe(0n);
    expect(() => drv.start(0n, [8])).toThrow(/refused features/);
    expect(() => drv.setupQueue(0)).toThrow(RangeError);
  });

  it("setupQueue for a queue the device does not have throws RangeError; the size is capped at QueueNumMax", () => {
    const { drv } = harness(new VirtioRng({ queueSize: 16 }));
    drv.negotiate(0n);
    expect(() => drv.setupQueue(1)).toThrow(RangeError);
    expect(drv.setupQueue(0, 1024).size).toBe(16);
  });

  it("kickIfNeeded kicks only when the device asks for it, and never for a queue it has not set up", () => {
    for (const ring of [0n, bit(VIRTIO_F_RING_PACKED)]) {
      for (const ev of [0n, bit(VIRTIO_RING_F_EVENT_IDX)]) {
        const { drv, heap, t } = harness(new VirtioRng());
        const [q] = drv.start(ring | ev, [8]);
        expect(drv.kickIfNeeded(3)).toBe(false);
        q!.add([{ addr: heap.alloc(8), len: 8, writable: true }]);
        expect(drv.kickIfNeeded(0)).toBe(true);
        expect(q!.takeUsed().length).toBe(1);
        // The device suppresses notifications while it is processing. A split ring with event idx
        // has no "off" (§2.7.10): avail_event still names the next buffer, so that one is kicked.
        t.queues[0]!.disableNotification();
        q!.add([{ addr: heap.alloc(8), len: 8, writable: true }]);
        const splitEvent = ring === 0n && ev !== 0n;
        expect(drv.kickIfNeeded(0)).toBe(splitEvent);
        expect(q!.takeUsed().length).toBe(splitEvent ? 1 : 0);
        if (splitEvent) {
          t.queues[0]!.disableNotification();
          q!.add([{ addr: heap.alloc(8), len: 8, writable: true }]);
          q!.add([{ addr: heap.alloc(8), len: 8, writable: true }]);
          expect(drv.kickIfNeeded(0)).toBe(true);
          expect(drv.kickIfNeeded(0)).toBe(false);
        }
      }
    }
  });

  it("ackInterrupts with nothing pending returns 0 and writes no InterruptACK", () => {
    const mem = GuestMemoryMap.allocate([{ base: RAM_BASE, size: 1 << 16 }]);
    const writes: number[] = [];
    const win: MmioWindow = { read: (_o, d) => void d.fill(0), write: (o) => void writes.push(o) };
    const drv = new TestDriver(win, mem, new GuestHeap(RAM_BASE, 1 << 16));
    expect(drv.ackInterrupts()).toBe(0);
    expect(writes).not.toContain(VIRTIO_MMIO_INTERRUPT_ACK);
  });
});

describe("driver-side rings and heap", () => {
  it("GuestHeap: aligned bump allocation, exhaustion is a RangeError, clear starts over", () => {
    const heap = new GuestHeap(0x1001, 64);
    const a = heap.alloc(10);
    expect(a % 16).toBe(0);
    expect(heap.used).toBe(a + 10 - 0x1001);
    expect(() => heap.alloc(64)).toThrow(RangeError);
    heap.clear();
    expect(heap.used).toBe(0);
    expect(heap.alloc(8, 1)).toBe(0x1001);
  });

  it("add refuses an empty buffer list and a full ring with -1", () => {
    const mem = GuestMemoryMap.allocate([{ base: RAM_BASE, size: 1 << 16 }]);
    for (const Q of [DriverSplitQueue, DriverPackedQueue]) {
      const heap = new GuestHeap(RAM_BASE, 1 << 16);
      const q = new Q(mem, heap, 2);
      expect(q.add([])).toBe(-1);
      const el = { addr: heap.alloc(4), len: 4, writable: true };
      expect(q.add([el, el, el])).toBe(-1);
      expect(q.add([el, el])).toBeGreaterThanOrEqual(0);
      expect(q.freeSlots).toBe(0);
      expect(q.add([el])).toBe(-1);
      expect(q.add([el], { indirect: true })).toBe(-1);
    }
  });

  it("a device that returns a buffer the driver never offered is caught by takeUsed", () => {
    const mem = GuestMemoryMap.allocate([{ base: RAM_BASE, size: 1 << 16 }]);
    const heap = new GuestHeap(RAM_BASE, 1 << 16);
    const s = new DriverSplitQueue(mem, heap, 4);
    mem.writeU32(s.deviceArea + USED_RING + USED_ELEM_ID, 3);
    mem.writeU16(s.deviceArea + USED_IDX, 1);
    expect(() => s.takeUsed()).toThrow(/unknown head 3/);
    const p = new DriverPackedQueue(mem, heap, 4);
    mem.writeU16(p.descTable + PDESC_ID, 2);
    mem.writeU16(p.descTable + PDESC_FLAGS, (1 << VRING_PACKED_DESC_F_AVAIL) | (1 << VRING_PACKED_DESC_F_USED));
    expect(() => p.takeUsed()).toThrow(/unknown buffer id 2/);
  });
});
