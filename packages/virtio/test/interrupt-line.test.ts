import { GuestMemoryMap } from "@tsvmm/abi";
import {
  bit,
  GuestHeap,
  MmioTransport,
  TestDriver,
  VIRTIO_F_RING_PACKED,
  VIRTIO_MMIO_INT_VRING,
  VIRTIO_MMIO_INTERRUPT_ACK,
  VIRTIO_MMIO_INTERRUPT_STATUS,
  VIRTIO_RING_F_EVENT_IDX,
  VirtioRng,
} from "@tsvmm/virtio";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

// The transport's interrupt line as a level-triggered pin sees it: every trigger/lower call in
// order. After an INTERRUPT_ACK that leaves nothing pending the line goes low and stays low until
// the device has a new cause; it is never re-asserted by the ack itself.

function rig(features: bigint) {
  const RAM = 0x10000;
  const mem = GuestMemoryMap.allocate([{ base: RAM, size: 1 << 20, name: "ram" }]);
  const heap = new GuestHeap(RAM, 1 << 20);
  const calls: ("raise" | "lower")[] = [];
  const t = new MmioTransport(new VirtioRng(), { mem, interrupt: { trigger: () => void calls.push("raise"), lower: () => void calls.push("lower") } });
  const drv = new TestDriver(t, mem, heap);
  const [q] = drv.start(features, [8]);
  calls.length = 0; // the reset in negotiation lowers the line once
  const level = (): boolean => calls.lastIndexOf("raise") > calls.lastIndexOf("lower");
  return { mem, heap, drv, q: q!, calls, level };
}

describe("interrupt line after INTERRUPT_ACK", () => {
  it("one cause: raised once, lowered by the ack, and nothing more (reads, empty kicks, a repeated ack)", () => {
    const { heap, drv, q, calls } = rig(0n);
    q.add([{ addr: heap.alloc(16), len: 16, writable: true }]);
    drv.kick(0);
    expect(calls).toEqual(["raise"]);
    expect(drv.readReg(VIRTIO_MMIO_INTERRUPT_STATUS)).toBe(VIRTIO_MMIO_INT_VRING);
    drv.writeReg(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
    expect(calls).toEqual(["raise", "lower"]);
    drv.readReg(VIRTIO_MMIO_INTERRUPT_STATUS);
    drv.kick(0); // nothing new in the ring
    drv.writeReg(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
    expect(calls.filter((c) => c === "raise")).toEqual(["raise"]);
    expect(drv.readReg(VIRTIO_MMIO_INTERRUPT_STATUS)).toBe(0);
    expect(q.takeUsed()).toHaveLength(1);
  });

  it("property: after every driver step the line is high exactly while InterruptStatus is non-zero, and each raise follows a new used buffer", () => {
    type Step = { k: "post"; n: number } | { k: "ack"; mask: number } | { k: "read" } | { k: "kick" } | { k: "take" };
    const step: fc.Arbitrary<Step> = fc.oneof(
      fc.record({ k: fc.constant("post" as const), n: fc.integer({ min: 1, max: 3 }) }),
      fc.record({ k: fc.constant("ack" as const), mask: fc.integer({ min: 0, max: 3 }) }),
      fc.record({ k: fc.constant("read" as const) }),
      fc.record({ k: fc.constant("kick" as const) }),
      fc.record({ k: fc.constant("take" as const) }),
    );
    const feats = fc.constantFrom(0n, bit(VIRTIO_RING_F_EVENT_IDX), bit(VIRTIO_F_RING_PACKED), bit(VIRTIO_F_RING_PACKED) | bit(VIRTIO_RING_F_EVENT_IDX));
    fc.assert(
      fc.property(feats, fc.array(step, { maxLength: 40 }), (f, steps) => {
        const { heap, drv, q, calls, level } = rig(f);
        let outstanding = 0;
        for (const s of steps) {
          const before = calls.length;
          let used = 0;
          if (s.k === "post") {
            for (let i = 0; i < s.n && outstanding < 8; i++, outstanding++) q.add([{ addr: heap.alloc(8), len: 8, writable: true }]);
            drv.kick(0);
          } else if (s.k === "kick") drv.kick(0);
          else if (s.k === "ack") drv.writeReg(VIRTIO_MMIO_INTERRUPT_ACK, s.mask);
          else if (s.k === "read") drv.readReg(VIRTIO_MMIO_INTERRUPT_STATUS);
          else {
            used = q.takeUsed().length;
            outstanding -= used;
            q.setInterrupts(true, 1);
          }
          const status = drv.readReg(VIRTIO_MMIO_INTERRUPT_STATUS);
          expect(level()).toBe(status !== 0);
          // Only a kick that returned buffers may raise; an ack, a read or taking used buffers never does.
          if (s.k !== "post" && s.k !== "kick") expect(calls.slice(before)).not.toContain("raise");
          if (s.k === "ack" && (s.mask & VIRTIO_MMIO_INT_VRING) !== 0) expect(status & VIRTIO_MMIO_INT_VRING).toBe(0);
        }
      }),
      { numRuns: 300 },
    );
  });
});
