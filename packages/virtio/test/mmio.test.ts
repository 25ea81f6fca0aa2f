import {
  bit,
  MmioTransport,
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_FEATURES_OK,
  VIRTIO_CONFIG_S_NEEDS_RESET,
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
  VIRTIO_ID_RNG,
  VIRTIO_MMIO_DEVICE_ID,
  VIRTIO_MMIO_INT_CONFIG,
  VIRTIO_MMIO_INT_VRING,
  VIRTIO_MMIO_MAGIC_VALUE,
  VIRTIO_MMIO_QUEUE_NOTIFY,
  VIRTIO_MMIO_QUEUE_NUM,
  VIRTIO_MMIO_QUEUE_NUM_MAX,
  VIRTIO_MMIO_QUEUE_READY,
  VIRTIO_MMIO_QUEUE_SEL,
  VIRTIO_MMIO_SHM_LEN_LOW,
  VIRTIO_MMIO_STATUS,
  VIRTIO_MMIO_VENDOR_ID,
  VIRTIO_MMIO_VERSION,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
  VirtioRng,
  VirtioTransportError,
  VirtqueueError,
} from "@tsvmm/virtio";
import { describe, expect, it } from "vitest";
import { harness } from "./helpers/harness.js";

const RING = bit(VIRTIO_RING_F_EVENT_IDX) | bit(VIRTIO_RING_F_INDIRECT_DESC);

describe("virtio-mmio v2 register file", () => {
  it("identifies itself and offers VERSION_1, packed, event idx and indirect but never ACCESS_PLATFORM", () => {
    const { drv } = harness(new VirtioRng());
    expect(drv.readReg(VIRTIO_MMIO_MAGIC_VALUE)).toBe(0x74726976);
    expect(drv.readReg(VIRTIO_MMIO_VERSION)).toBe(2);
    expect(drv.readReg(VIRTIO_MMIO_DEVICE_ID)).toBe(VIRTIO_ID_RNG);
    expect(drv.readReg(VIRTIO_MMIO_VENDOR_ID)).toBe(0);
    const f = drv.deviceFeatures();
    expect(f).toBe(bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_RING_PACKED) | RING);
    expect(f & bit(VIRTIO_F_ACCESS_PLATFORM)).toBe(0n);
    expect(drv.readReg(VIRTIO_MMIO_SHM_LEN_LOW)).toBe(0xffffffff);
    drv.writeReg(VIRTIO_MMIO_QUEUE_SEL, 0);
    expect(drv.readReg(VIRTIO_MMIO_QUEUE_NUM_MAX)).toBe(256);
    drv.writeReg(VIRTIO_MMIO_QUEUE_SEL, 1);
    expect(drv.readReg(VIRTIO_MMIO_QUEUE_NUM_MAX)).toBe(0);
  });

  it("the transport options take ring features off the offer", () => {
    const { drv } = harness(new VirtioRng(), { packed: false, eventIdx: false, indirect: false });
    expect(drv.deviceFeatures()).toBe(bit(VIRTIO_F_VERSION_1));
  });

  it("FEATURES_OK stays clear for a driver without VERSION_1, with ACCESS_PLATFORM, or with an unoffered bit", () => {
    for (const f of [0n, bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_ACCESS_PLATFORM), bit(VIRTIO_F_VERSION_1) | bit(5), bit(VIRTIO_F_VERSION_1) | bit(63)]) {
      const { drv, errors } = harness(new VirtioRng());
      expect(drv.negotiate(f, { force: true })).toBe(false);
      expect(drv.status & VIRTIO_CONFIG_S_FEATURES_OK).toBe(0);
      expect(errors.map((e) => e.code)).toContain("VIRTIO_FEATURES_REFUSED");
    }
    const { drv } = harness(new VirtioRng());
    expect(drv.negotiate(bit(VIRTIO_F_VERSION_1), { force: true })).toBe(true);
  });

  it("bad register accesses are contained and reported, never thrown", () => {
    const { t, errors } = harness(new VirtioRng());
    const b = Buffer.alloc(2);
    t.read(VIRTIO_MMIO_STATUS, b);
    t.write(VIRTIO_MMIO_STATUS, b);
    t.write(VIRTIO_MMIO_MAGIC_VALUE, Buffer.alloc(4));
    t.read(0xffc, Buffer.alloc(4));
    expect(errors.map((e) => e.code)).toEqual(["VIRTIO_BAD_REGISTER_ACCESS", "VIRTIO_BAD_REGISTER_ACCESS", "VIRTIO_BAD_REGISTER_ACCESS"]);
    expect(errors.every((e) => e instanceof VirtioTransportError)).toBe(true);
  });
});

describe.each([
  ["split", 0n],
  ["packed", bit(VIRTIO_F_RING_PACKED)],
])("virtio-rng through the %s ring", (_name, ring) => {
  it("fills buffers with CSPRNG bytes, raises the used-buffer interrupt, ack lowers it", () => {
    const { drv, mem, heap, irq } = harness(new VirtioRng());
    const [q] = drv.start(ring | RING, [16]);
    const a = heap.alloc(64);
    const b = heap.alloc(64);
    q!.add([{ addr: a, len: 64, writable: true }]);
    q!.add([{ addr: b, len: 64, writable: true }]);
    drv.kick(0);
    const used = q!.takeUsed();
    expect(used.map((u) => u.len)).toEqual([64, 64]);
    expect(mem.read(a, 64).equals(Buffer.alloc(64))).toBe(false);
    expect(mem.read(a, 64).equals(mem.read(b, 64))).toBe(false);
    expect(irq.raised).toBeGreaterThan(0);
    expect(drv.ackInterrupts()).toBe(VIRTIO_MMIO_INT_VRING);
    expect(irq.lowered).toBeGreaterThan(0);
  });

  it("a notification before DRIVER_OK is reported, and the queue is looked at when DRIVER_OK comes", () => {
    const { drv, heap, errors } = harness(new VirtioRng());
    expect(drv.negotiate(ring | RING)).toBe(true);
    const q = drv.setupQueue(0, 8);
    q.add([{ addr: heap.alloc(16), len: 16, writable: true }]);
    drv.kick(0);
    expect(errors.map((e) => e.code)).toEqual(["VIRTIO_NOTIFY_BEFORE_DRIVER_OK"]);
    expect(q.takeUsed()).toEqual([]);
    drv.driverOk();
    expect(q.takeUsed().map((u) => u.len)).toEqual([16]);
  });

  it("the ioeventfd path: notifyRegisters names QueueNotify, and notify() from outside does what the register does", () => {
    const { drv, t, heap } = harness(new VirtioRng());
    expect(t.notifyRegisters()).toEqual([{ queue: 0, offset: VIRTIO_MMIO_QUEUE_NOTIFY, size: 4, value: 0 }]);
    const [q] = drv.start(ring, [8]);
    q!.add([{ addr: heap.alloc(8), len: 8, writable: true }]);
    t.notify(0);
    expect(q!.takeUsed().length).toBe(1);
  });

  it("a hostile chain sets DEVICE_NEEDS_RESET with a config interrupt; later kicks do nothing; reset recovers", () => {
    const { drv, heap, errors, t } = harness(new VirtioRng());
    const [q] = drv.start(ring, [8]);
    q!.add([{ addr: 0x100, len: 8, writable: true }]);
    drv.kick(0);
    expect(drv.status & VIRTIO_CONFIG_S_NEEDS_RESET).toBe(VIRTIO_CONFIG_S_NEEDS_RESET);
    expect(drv.ackInterrupts() & VIRTIO_MMIO_INT_CONFIG).toBe(VIRTIO_MMIO_INT_CONFIG);
    expect(errors[0]).toBeInstanceOf(VirtqueueError);
    expect(errors[0]!.code).toBe("VIRTQ_BUFFER_OUT_OF_RANGE");
    q!.add([{ addr: heap.alloc(8), len: 8, writable: true }]);
    drv.kick(0);
    expect(errors.length).toBe(1);
    expect(t.errorCount).toBe(1);
    const [q2] = drv.start(ring, [8]);
    q2!.add([{ addr: heap.alloc(8), len: 8, writable: true }]);
    drv.kick(0);
    expect(q2!.takeUsed().length).toBe(1);
    expect(drv.status).toBe(15);
  });

  it("a split queue size that is not a power of two ends in DEVICE_NEEDS_RESET at DRIVER_OK (packed allows it)", () => {
    const { drv } = harness(new VirtioRng());
    expect(drv.negotiate(ring)).toBe(true);
    drv.setupQueue(0, 8);
    drv.writeReg(VIRTIO_MMIO_QUEUE_READY, 0);
    drv.writeReg(VIRTIO_MMIO_QUEUE_NUM, 6);
    drv.writeReg(VIRTIO_MMIO_QUEUE_READY, 1);
    drv.driverOk();
    expect(drv.status & VIRTIO_CONFIG_S_NEEDS_RESET ? "needs-reset" : "ok").toBe(ring === 0n ? "needs-reset" : "ok");
  });

  it("state saved mid-run restores into a new transport that carries on", () => {
    const h = harness(new VirtioRng());
    const [q] = h.drv.start(ring | RING, [8]);
    for (let i = 0; i < 5; i++) {
      q!.add([{ addr: h.heap.alloc(8), len: 8, writable: true }]);
      h.drv.kick(0);
      q!.takeUsed();
    }
    const s = JSON.parse(JSON.stringify(h.t.saveState()));
    const dev2 = new VirtioRng();
    const t2 = new MmioTransport(dev2, { mem: h.mem, interrupt: { trigger() {} } });
    t2.restoreState(s);
    expect(t2.saveState()).toEqual(s);
    expect(t2.status & VIRTIO_CONFIG_S_DRIVER_OK).toBe(VIRTIO_CONFIG_S_DRIVER_OK);
    q!.add([{ addr: h.heap.alloc(8), len: 8, writable: true }]);
    t2.notify(0);
    expect(q!.takeUsed().map((u) => u.len)).toEqual([8]);
    expect(dev2.bytesServed).toBe(48);
  });
});
