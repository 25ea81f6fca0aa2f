import { GuestMemoryMap, type TsvmmError } from "@tsvmm/abi";
import {
  bit,
  type DeviceContext,
  drainQueue,
  GuestHeap,
  MmioTransport,
  type MmioTransportState,
  TestDriver,
  VIRTIO_CONFIG_S_ACKNOWLEDGE,
  VIRTIO_CONFIG_S_DRIVER,
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_FAILED,
  VIRTIO_CONFIG_S_FEATURES_OK,
  VIRTIO_CONFIG_S_NEEDS_RESET,
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
  VIRTIO_MMIO_CONFIG,
  VIRTIO_MMIO_CONFIG_GENERATION,
  VIRTIO_MMIO_DEVICE_FEATURES,
  VIRTIO_MMIO_DEVICE_FEATURES_SEL,
  VIRTIO_MMIO_DRIVER_FEATURES,
  VIRTIO_MMIO_DRIVER_FEATURES_SEL,
  VIRTIO_MMIO_INT_CONFIG,
  VIRTIO_MMIO_INT_VRING,
  VIRTIO_MMIO_INTERRUPT_ACK,
  VIRTIO_MMIO_INTERRUPT_STATUS,
  VIRTIO_MMIO_QUEUE_AVAIL_HIGH,
  VIRTIO_MMIO_QUEUE_AVAIL_LOW,
  VIRTIO_MMIO_QUEUE_DESC_HIGH,
  VIRTIO_MMIO_QUEUE_DESC_LOW,
  VIRTIO_MMIO_QUEUE_NUM,
  VIRTIO_MMIO_QUEUE_NUM_MAX,
  VIRTIO_MMIO_QUEUE_READY,
  VIRTIO_MMIO_QUEUE_SEL,
  VIRTIO_MMIO_QUEUE_USED_HIGH,
  VIRTIO_MMIO_QUEUE_USED_LOW,
  VIRTIO_MMIO_SHM_BASE_HIGH,
  VIRTIO_MMIO_SHM_BASE_LOW,
  VIRTIO_MMIO_SHM_LEN_HIGH,
  VIRTIO_MMIO_SHM_LEN_LOW,
  VIRTIO_MMIO_SHM_SEL,
  VIRTIO_MMIO_STATUS,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
  type VirtioDevice,
  VirtioDeviceError,
} from "@tsvmm/virtio";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

const RAM_BASE = 0x10000;
const RAM_SIZE = 1 << 20;
const ACK = VIRTIO_CONFIG_S_ACKNOWLEDGE;
const DRV = VIRTIO_CONFIG_S_DRIVER;
const FOK = VIRTIO_CONFIG_S_FEATURES_OK;
const DOK = VIRTIO_CONFIG_S_DRIVER_OK;
const NR = VIRTIO_CONFIG_S_NEEDS_RESET;
/** Device-specific bits the probe offers: one in each 32-bit word, so both feature windows matter. */
const PROBE_FEATURES = bit(3) | bit(40);

/**
 * A small but complete device model for exercising the transport: an 8-byte writable config
 * space, two queues (8 and 4 entries) whose chains it completes with zero bytes, and switches
 * that make its methods fail the way a buggy model or backend would.
 */
class ProbeDevice implements VirtioDevice {
  readonly deviceId = 0x7e;
  readonly name = "probe";
  readonly queueMaxSizes = [8, 4] as const;
  readonly features = PROBE_FEATURES;
  readonly configSize = 8;
  readonly config = Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]);
  ctx: DeviceContext | undefined;
  notified: number[] = [];
  resets = 0;
  throwOnActivate: unknown;
  throwOnNotify: unknown;
  throwOnReset: unknown;
  drainLimit = 1024;
  lastDrainMore = false;
  throwOnReadConfig: unknown;
  readConfig(offset: number, data: Buffer): void {
    if (this.throwOnReadConfig !== undefined) {
      data.fill(0xaa);
      throw this.throwOnReadConfig;
    }
    data.fill(0);
    if (offset >= 0 && offset < this.config.length) this.config.copy(data, 0, offset, Math.min(this.config.length, offset + data.length));
  }
  writeConfig(offset: number, data: Buffer): void {
    if (offset >= 0 && offset + data.length <= this.config.length) data.copy(this.config, offset);
  }
  activate(ctx: DeviceContext): void {
    if (this.throwOnActivate !== undefined) throw this.throwOnActivate;
    this.ctx = ctx;
  }
  queueNotify(queue: number): void {
    this.notified.push(queue);
    if (this.throwOnNotify !== undefined) throw this.throwOnNotify;
    if (this.ctx !== undefined) this.lastDrainMore = drainQueue(this.ctx, queue, () => 0, this.drainLimit);
  }
  reset(): void {
    this.resets++;
    this.ctx = undefined;
    if (this.throwOnReset !== undefined) throw this.throwOnReset;
  }
  saveState(): unknown {
    return { config: this.config.toString("hex") };
  }
  restoreState(state: unknown): void {
    Buffer.from((state as { config: string }).config, "hex").copy(this.config);
  }
}

function rig(opts: { trigger?: () => void; lower?: boolean; onError?: (e: TsvmmError) => void } = {}) {
  const mem = GuestMemoryMap.allocate([{ base: RAM_BASE, size: RAM_SIZE, name: "ram" }]);
  const heap = new GuestHeap(RAM_BASE, RAM_SIZE);
  const irq = { raised: 0, lowered: 0 };
  const errors: TsvmmError[] = [];
  const dev = new ProbeDevice();
  const t = new MmioTransport(dev, {
    mem,
    interrupt: {
      trigger: opts.trigger ?? (() => void irq.raised++),
      ...(opts.lower === false ? {} : { lower: () => void irq.lowered++ }),
    },
    onError: opts.onError ?? ((e) => void errors.push(e)),
  });
  const drv = new TestDriver(t, mem, heap);
  return { mem, heap, irq, errors, dev, t, drv };
}

const codes = (errors: readonly TsvmmError[]): string[] => errors.map((e) => e.code);

describe("virtio-mmio register reads (virtio 1.2 §4.2.2)", () => {
  it("the offer is both feature windows: device bits plus VERSION_1 and ring bits, ACCESS_PLATFORM never; a window past 1 reads 0", () => {
    const { drv, errors } = rig();
    const offered = drv.deviceFeatures();
    expect(offered).toBe(PROBE_FEATURES | bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_RING_PACKED) | bit(VIRTIO_RING_F_EVENT_IDX) | bit(VIRTIO_RING_F_INDIRECT_DESC));
    expect(offered & bit(VIRTIO_F_ACCESS_PLATFORM)).toBe(0n);
    drv.writeReg(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    expect(drv.readReg(VIRTIO_MMIO_DEVICE_FEATURES)).toBe(Number(offered >> 32n));
    for (const sel of [2, 3, 0xffffffff]) {
      drv.writeReg(VIRTIO_MMIO_DEVICE_FEATURES_SEL, sel);
      expect(drv.readReg(VIRTIO_MMIO_DEVICE_FEATURES)).toBe(0);
    }
    expect(errors).toEqual([]);
  });

  it("no shared memory regions: SHMLen and SHMBase read all ones for every SHMSel (§4.2.2.1); SHMSel writes are accepted", () => {
    const { drv, errors } = rig();
    for (const sel of [0, 1, 255]) {
      drv.writeReg(VIRTIO_MMIO_SHM_SEL, sel);
      for (const r of [VIRTIO_MMIO_SHM_LEN_LOW, VIRTIO_MMIO_SHM_LEN_HIGH, VIRTIO_MMIO_SHM_BASE_LOW, VIRTIO_MMIO_SHM_BASE_HIGH]) expect(drv.readReg(r)).toBe(0xffffffff);
    }
    expect(errors).toEqual([]);
  });

  it("reserved offsets read zero and are not errors; a queue selector past the last queue reads NUM_MAX/READY/addresses as 0", () => {
    const { drv, errors } = rig();
    for (const off of [0x018, 0x028, 0x03c, 0x040, 0x048, 0x0c0, 0x0f8]) expect(drv.readReg(off)).toBe(0);
    drv.writeReg(VIRTIO_MMIO_QUEUE_SEL, 2);
    for (const off of [
      VIRTIO_MMIO_QUEUE_NUM_MAX,
      VIRTIO_MMIO_QUEUE_READY,
      VIRTIO_MMIO_QUEUE_DESC_LOW,
      VIRTIO_MMIO_QUEUE_DESC_HIGH,
      VIRTIO_MMIO_QUEUE_AVAIL_LOW,
      VIRTIO_MMIO_QUEUE_AVAIL_HIGH,
      VIRTIO_MMIO_QUEUE_USED_LOW,
      VIRTIO_MMIO_QUEUE_USED_HIGH,
    ]) {
      expect(drv.readReg(off)).toBe(0);
    }
    // Writes to a queue that does not exist change nothing and break nothing.
    drv.writeReg(VIRTIO_MMIO_QUEUE_NUM, 4);
    drv.writeReg(VIRTIO_MMIO_QUEUE_DESC_LOW, 0x1000);
    drv.writeReg(VIRTIO_MMIO_QUEUE_READY, 1);
    expect(drv.readReg(VIRTIO_MMIO_QUEUE_READY)).toBe(0);
    expect(errors).toEqual([]);
  });

  it("wrong widths and misaligned offsets in the register block are refused, read as zero and leave registers alone", () => {
    const { t, drv, errors } = rig();
    drv.writeReg(VIRTIO_MMIO_STATUS, ACK);
    for (const [off, len] of [
      [VIRTIO_MMIO_STATUS, 1],
      [VIRTIO_MMIO_STATUS, 2],
      [VIRTIO_MMIO_STATUS, 8],
      [VIRTIO_MMIO_STATUS + 1, 4],
      [VIRTIO_MMIO_STATUS + 2, 2],
    ] as const) {
      const b = Buffer.alloc(len, 0xaa);
      t.read(off, b);
      expect(b.equals(Buffer.alloc(len))).toBe(true);
      t.write(off, Buffer.alloc(len, 0xff));
    }
    expect(codes(errors)).toEqual(new Array(10).fill("VIRTIO_BAD_REGISTER_ACCESS"));
    expect(drv.status).toBe(ACK);
  });

  it("writes to read-only registers are refused (MagicValue, Version, DeviceID, VendorID, DeviceFeatures, QueueNumMax, InterruptStatus, ConfigGeneration)", () => {
    const { drv, errors } = rig();
    const ro = [0x000, 0x004, 0x008, 0x00c, VIRTIO_MMIO_DEVICE_FEATURES, VIRTIO_MMIO_QUEUE_NUM_MAX, VIRTIO_MMIO_INTERRUPT_STATUS, VIRTIO_MMIO_CONFIG_GENERATION];
    const before = ro.map((o) => drv.readReg(o));
    for (const o of ro) drv.writeReg(o, 0x12345678);
    expect(ro.map((o) => drv.readReg(o))).toEqual(before);
    expect(codes(errors)).toEqual(new Array(ro.length).fill("VIRTIO_BAD_REGISTER_ACCESS"));
  });

  it("device config space: any width, past its end reads zero, writes reach the device", () => {
    const { drv, t, dev } = rig();
    expect([...drv.readConfig(0, 8)]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect([...drv.readConfig(6, 4)]).toEqual([7, 8, 0, 0]);
    expect([...drv.readConfig(0x200, 4)]).toEqual([0, 0, 0, 0]);
    const one = Buffer.alloc(1);
    t.read(VIRTIO_MMIO_CONFIG + 3, one);
    expect(one[0]).toBe(4);
    drv.writeConfig(2, Buffer.from([0xaa, 0xbb]));
    expect([...dev.config]).toEqual([1, 2, 0xaa, 0xbb, 5, 6, 7, 8]);
  });
});

describe("queue registers (§4.2.3.2)", () => {
  it("property: the device composes DESC/AVAIL/USED from their low and high halves, written in either order (read back through them)", () => {
    const { drv } = rig();
    const pairs = [
      [VIRTIO_MMIO_QUEUE_DESC_LOW, VIRTIO_MMIO_QUEUE_DESC_HIGH],
      [VIRTIO_MMIO_QUEUE_AVAIL_LOW, VIRTIO_MMIO_QUEUE_AVAIL_HIGH],
      [VIRTIO_MMIO_QUEUE_USED_LOW, VIRTIO_MMIO_QUEUE_USED_HIGH],
    ] as const;
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1 }), fc.integer({ min: 0, max: 2 }), fc.maxSafeNat(), fc.boolean(), (qi, which, addr, highFirst) => {
        const [lo, hi] = pairs[which]!;
        drv.writeReg(VIRTIO_MMIO_QUEUE_SEL, qi);
        const l = addr % 2 ** 32;
        const h = Math.floor(addr / 2 ** 32);
        if (highFirst) {
          drv.writeReg(hi, h);
          drv.writeReg(lo, l);
        } else {
          drv.writeReg(lo, l);
          drv.writeReg(hi, h);
        }
        expect(drv.readReg(lo)).toBe(l);
        expect(drv.readReg(hi)).toBe(h);
      }),
      { numRuns: 300 },
    );
  });

  it("QueueNum and the ring addresses are fixed while QueueReady is 1, editable again after the driver writes 0", () => {
    const { drv, t } = rig();
    drv.negotiate(0n);
    const q = drv.setupQueue(0, 8);
    expect(drv.readReg(VIRTIO_MMIO_QUEUE_READY)).toBe(1);
    drv.writeReg(VIRTIO_MMIO_QUEUE_NUM, 2);
    drv.writeReg(VIRTIO_MMIO_QUEUE_DESC_LOW, 0x5000);
    drv.writeReg(VIRTIO_MMIO_QUEUE_AVAIL_LOW, 0x6000);
    drv.writeReg(VIRTIO_MMIO_QUEUE_USED_LOW, 0x7000);
    expect(t.queues[0]!.size).toBe(8);
    expect(drv.readReg(VIRTIO_MMIO_QUEUE_DESC_LOW)).toBe(q.descTable);
    expect(drv.readReg(VIRTIO_MMIO_QUEUE_AVAIL_LOW)).toBe(q.driverArea);
    expect(drv.readReg(VIRTIO_MMIO_QUEUE_USED_LOW)).toBe(q.deviceArea);
    // Writing 1 again to a ready queue changes nothing.
    drv.writeReg(VIRTIO_MMIO_QUEUE_READY, 1);
    drv.writeReg(VIRTIO_MMIO_QUEUE_READY, 0);
    expect(drv.readReg(VIRTIO_MMIO_QUEUE_READY)).toBe(0);
    drv.writeReg(VIRTIO_MMIO_QUEUE_NUM, 2);
    drv.writeReg(VIRTIO_MMIO_QUEUE_DESC_LOW, 0x5000);
    expect(t.queues[0]!.size).toBe(2);
    expect(drv.readReg(VIRTIO_MMIO_QUEUE_DESC_LOW)).toBe(0x5000);
  });

  it("a reset returns every queue to its power-on state (§2.1)", () => {
    const { drv, t } = rig();
    drv.start(0n, [8, 4]);
    drv.writeReg(VIRTIO_MMIO_STATUS, 0);
    for (const i of [0, 1]) {
      drv.writeReg(VIRTIO_MMIO_QUEUE_SEL, i);
      expect(drv.readReg(VIRTIO_MMIO_QUEUE_READY)).toBe(0);
      expect(drv.readReg(VIRTIO_MMIO_QUEUE_DESC_LOW)).toBe(0);
      expect(t.queues[i]!.active).toBe(false);
      expect(t.queues[i]!.size).toBe(t.queues[i]!.maxSize);
    }
    expect(t.negotiatedFeatures).toBe(0n);
  });

  it("a queue made ready after DRIVER_OK goes live at once; with rings outside RAM it is DEVICE_NEEDS_RESET", () => {
    const { drv, heap, dev, errors } = rig();
    drv.start(0n, [8]);
    const q1 = drv.setupQueue(1, 4);
    expect(drv.status & NR).toBe(0);
    q1.add([{ addr: heap.alloc(8), len: 8, writable: true }]);
    drv.kick(1);
    expect(dev.notified).toEqual([0, 1]);
    expect(q1.takeUsed().map((u) => u.len)).toEqual([0]);

    drv.writeReg(VIRTIO_MMIO_QUEUE_SEL, 1);
    drv.writeReg(VIRTIO_MMIO_QUEUE_READY, 0);
    drv.writeReg(VIRTIO_MMIO_QUEUE_DESC_LOW, 0);
    drv.writeReg(VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
    drv.writeReg(VIRTIO_MMIO_QUEUE_READY, 1);
    expect(drv.status & NR).toBe(NR);
    expect(codes(errors)).toEqual(["VIRTQ_RING_OUT_OF_RANGE"]);
    expect(drv.ackInterrupts() & VIRTIO_MMIO_INT_CONFIG).toBe(VIRTIO_MMIO_INT_CONFIG);
  });

  it("a ring address above 2^53 written through the high half is refused at DRIVER_OK", () => {
    const { drv, errors } = rig();
    drv.negotiate(0n);
    drv.setupQueue(0, 8);
    drv.writeReg(VIRTIO_MMIO_QUEUE_READY, 0);
    drv.writeReg(VIRTIO_MMIO_QUEUE_USED_HIGH, 0xffffffff);
    drv.writeReg(VIRTIO_MMIO_QUEUE_READY, 1);
    drv.driverOk();
    expect(drv.status & NR).toBe(NR);
    expect(codes(errors)).toEqual(["VIRTQ_RING_OUT_OF_RANGE"]);
  });

  it("after DEVICE_NEEDS_RESET queue registers are frozen until reset", () => {
    const { drv, t, dev } = rig();
    drv.start(0n, [8]);
    dev.ctx!.fail(new Error("backend lost"));
    expect(drv.status & NR).toBe(NR);
    drv.writeReg(VIRTIO_MMIO_QUEUE_SEL, 1);
    drv.writeReg(VIRTIO_MMIO_QUEUE_NUM, 2);
    expect(t.queues[1]!.size).toBe(4);
  });
});

describe("feature negotiation (§3.1.1, §2.2)", () => {
  it("property: FEATURES_OK sticks iff the driver took a subset of the offer that includes VERSION_1", () => {
    const { drv, t } = rig();
    const offered = t.offeredFeatures;
    const interesting = fc.oneof(
      fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      fc.subarray([3, 28, 29, 32, 33, 34, 40]).map((bits) => bits.reduce((f, b) => f | bit(b), 0n)),
    );
    fc.assert(
      fc.property(interesting, (f) => {
        const ok = drv.negotiate(f, { force: true });
        expect(ok).toBe((f & ~offered) === 0n && (f & bit(VIRTIO_F_VERSION_1)) !== 0n);
        if (ok) expect(t.negotiatedFeatures).toBe(f);
      }),
      { numRuns: 500 },
    );
  });

  it("refused ACCESS_PLATFORM: FEATURES_OK reads back clear, and DRIVER_OK after it is DEVICE_NEEDS_RESET, not a running device", () => {
    const { drv, errors, dev } = rig();
    expect(drv.negotiate(bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_ACCESS_PLATFORM), { force: true })).toBe(false);
    expect(drv.status).toBe(ACK | DRV);
    drv.driverOk();
    expect(drv.status & DOK).toBe(0);
    expect(codes(errors)).toEqual(["VIRTIO_FEATURES_REFUSED", "VIRTIO_FEATURES_REFUSED"]);
    expect(dev.ctx).toBeUndefined();
  });

  it("DriverFeatures is writable only between DRIVER and FEATURES_OK; a window past 1 takes zeroes but refuses any set bit", () => {
    const { drv, t, errors } = rig();
    drv.writeReg(VIRTIO_MMIO_DRIVER_FEATURES, 1);
    expect(codes(errors)).toEqual(["VIRTIO_BAD_STATE"]);
    expect(drv.negotiate(0n)).toBe(true);
    drv.writeReg(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    drv.writeReg(VIRTIO_MMIO_DRIVER_FEATURES, 0);
    expect(codes(errors)).toEqual(["VIRTIO_BAD_STATE", "VIRTIO_BAD_STATE"]);
    expect(t.negotiatedFeatures).toBe(bit(VIRTIO_F_VERSION_1));

    for (const [word2, accepted] of [
      [0, true],
      [1, false],
    ] as const) {
      drv.writeReg(VIRTIO_MMIO_STATUS, 0);
      drv.writeReg(VIRTIO_MMIO_STATUS, ACK);
      drv.writeReg(VIRTIO_MMIO_STATUS, ACK | DRV);
      drv.writeReg(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
      drv.writeReg(VIRTIO_MMIO_DRIVER_FEATURES, 1);
      drv.writeReg(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 2);
      drv.writeReg(VIRTIO_MMIO_DRIVER_FEATURES, word2);
      drv.writeReg(VIRTIO_MMIO_STATUS, ACK | DRV | FOK);
      expect((drv.status & FOK) !== 0).toBe(accepted);
    }
  });

  it("FEATURES_OK is refused unless ACKNOWLEDGE and DRIVER were set before it, even with valid features", () => {
    // Without ACKNOWLEDGE: DRIVER alone lets the driver write its features.
    const a = rig();
    a.drv.writeReg(VIRTIO_MMIO_STATUS, DRV);
    a.drv.writeReg(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    a.drv.writeReg(VIRTIO_MMIO_DRIVER_FEATURES, 1);
    a.drv.writeReg(VIRTIO_MMIO_STATUS, DRV | ACK | FOK);
    expect(a.drv.status).toBe(DRV | ACK);
    expect(codes(a.errors)).toEqual(["VIRTIO_FEATURES_REFUSED"]);
    // Without DRIVER: valid features can only be there through a restored state.
    const b = rig();
    b.t.restoreState({ ...b.t.saveState(), status: ACK, driverFeatures: bit(VIRTIO_F_VERSION_1).toString(16) });
    b.drv.writeReg(VIRTIO_MMIO_STATUS, ACK | DRV | FOK);
    expect(b.drv.status).toBe(ACK | DRV);
    expect(codes(b.errors)).toEqual(["VIRTIO_FEATURES_REFUSED"]);
    // Both set first: the same features are taken.
    const c = rig();
    expect(c.drv.negotiate(bit(VIRTIO_F_VERSION_1), { force: true })).toBe(true);
  });
});

describe("device status machine (§2.1, §3.1.1)", () => {
  it("a write that clears a set bit is ignored and reported; only 0 resets", () => {
    const { drv, errors } = rig();
    drv.writeReg(VIRTIO_MMIO_STATUS, ACK | DRV);
    drv.writeReg(VIRTIO_MMIO_STATUS, ACK);
    drv.writeReg(VIRTIO_MMIO_STATUS, DRV | FOK);
    expect(drv.status).toBe(ACK | DRV);
    expect(codes(errors)).toEqual(["VIRTIO_BAD_STATE", "VIRTIO_BAD_STATE"]);
    drv.writeReg(VIRTIO_MMIO_STATUS, 0);
    expect(drv.status).toBe(0);
  });

  it("only a write of zero resets (§4.2.2); a non-zero write whose status byte is zero is refused like any write that clears bits", () => {
    const { drv, dev, errors } = rig();
    drv.start(0n, [8]);
    const resets = dev.resets;
    drv.writeReg(VIRTIO_MMIO_STATUS, 0x100);
    drv.writeReg(VIRTIO_MMIO_STATUS, 0xffff0000);
    expect(drv.status).toBe(ACK | DRV | FOK | DOK);
    expect(dev.resets).toBe(resets);
    expect(dev.ctx?.current).toBe(true);
    expect(codes(errors)).toEqual(["VIRTIO_BAD_STATE", "VIRTIO_BAD_STATE"]);
    // Reserved bits above the byte are dropped from a write that also sets status bits.
    drv.writeReg(VIRTIO_MMIO_STATUS, 0);
    drv.writeReg(VIRTIO_MMIO_STATUS, 0x100 | ACK);
    expect(drv.status).toBe(ACK);
  });

  it("DRIVER_OK without FEATURES_OK is DEVICE_NEEDS_RESET with a configuration change interrupt", () => {
    const { drv, irq, errors, dev } = rig();
    drv.writeReg(VIRTIO_MMIO_STATUS, ACK | DRV);
    drv.writeReg(VIRTIO_MMIO_STATUS, ACK | DRV | DOK);
    expect(drv.status).toBe(ACK | DRV | DOK | NR);
    expect(codes(errors)).toEqual(["VIRTIO_BAD_STATE"]);
    expect(irq.raised).toBe(1);
    expect(drv.readReg(VIRTIO_MMIO_INTERRUPT_STATUS)).toBe(VIRTIO_MMIO_INT_CONFIG);
    expect(dev.ctx).toBeUndefined();
    // The driver cannot clear NEEDS_RESET by writing status back without it; a write adding FAILED keeps it.
    drv.writeReg(VIRTIO_MMIO_STATUS, ACK | DRV | DOK | VIRTIO_CONFIG_S_FAILED);
    expect(drv.status).toBe(ACK | DRV | DOK | NR | VIRTIO_CONFIG_S_FAILED);
  });

  it("the driver's FAILED bit stops the device: notifications are not passed on", () => {
    const { drv, dev, errors } = rig();
    drv.start(0n, [8]);
    drv.writeReg(VIRTIO_MMIO_STATUS, ACK | DRV | FOK | DOK | VIRTIO_CONFIG_S_FAILED);
    dev.notified.length = 0;
    drv.kick(0);
    expect(dev.notified).toEqual([]);
    expect(codes(errors)).toEqual(["VIRTIO_NOTIFY_BEFORE_DRIVER_OK"]);
    expect(dev.ctx!.current).toBe(false);
  });

  it("property: the status register follows a model of §2.1 over any sequence of driver writes", () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(ACK, ACK | DRV, ACK | DRV | FOK, ACK | DRV | FOK | DOK, 0)), { maxLength: 12 }), (writes) => {
        const { drv } = rig();
        // Features are written once at DRIVER (valid ones), as a driver would.
        let model = 0;
        for (const v of writes) {
          if (v === 0) model = 0;
          else if ((v & model & ~NR) === (model & ~NR)) {
            const old = model;
            let next = (v & ~NR) | (old & NR);
            const added = next & ~old;
            if (added & FOK && !(old & ACK && old & DRV)) next &= ~(FOK | DOK);
            if (added & DOK && next & DOK && !(next & FOK)) next |= NR;
            model = next;
          }
          const before = drv.status;
          drv.writeReg(VIRTIO_MMIO_STATUS, v);
          if ((drv.status & DRV) !== 0 && (before & DRV) === 0 && (drv.status & FOK) === 0) {
            drv.writeReg(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
            drv.writeReg(VIRTIO_MMIO_DRIVER_FEATURES, 1);
          }
          expect(drv.status).toBe(model);
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe("notifications and interrupts", () => {
  it("a notify for a queue that does not exist is reported; for an existing queue the driver has not enabled it is dropped", () => {
    const { drv, t, dev, errors } = rig();
    drv.start(0n, [8]);
    dev.notified.length = 0;
    for (const q of [2, -1, 0.5, Number.NaN, 2 ** 32]) t.notify(q);
    drv.kick(7);
    expect(codes(errors)).toEqual(new Array(6).fill("VIRTIO_NOTIFY_BAD_QUEUE"));
    expect(drv.status & NR).toBe(0);
    drv.kick(1);
    expect(dev.notified).toEqual([]);
    drv.kick(0);
    expect(dev.notified).toEqual([0]);
  });

  it("after DEVICE_NEEDS_RESET notifications are dropped silently until reset", () => {
    const { drv, dev, errors } = rig();
    drv.start(0n, [8]);
    dev.ctx!.fail(new VirtioDeviceError("VIRTIO_DEVICE_BACKEND", "gone"));
    dev.notified.length = 0;
    drv.kick(0);
    expect(dev.notified).toEqual([]);
    expect(codes(errors)).toEqual(["VIRTIO_DEVICE_BACKEND"]);
  });

  it("InterruptACK clears only the bits written; the line is lowered once nothing is pending", () => {
    const { drv, dev, irq, heap } = rig();
    const [q] = drv.start(0n, [8]);
    q!.add([{ addr: heap.alloc(8), len: 8, writable: true }]);
    drv.kick(0);
    dev.ctx!.configChanged();
    expect(drv.readReg(VIRTIO_MMIO_INTERRUPT_STATUS)).toBe(VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG);
    const lowered = irq.lowered;
    drv.writeReg(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
    expect(drv.readReg(VIRTIO_MMIO_INTERRUPT_STATUS)).toBe(VIRTIO_MMIO_INT_CONFIG);
    expect(irq.lowered).toBe(lowered);
    drv.writeReg(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_CONFIG);
    expect(drv.readReg(VIRTIO_MMIO_INTERRUPT_STATUS)).toBe(0);
    expect(irq.lowered).toBe(lowered + 1);
  });

  it("an edge-only interrupt line (no lower) works: ack and reset do not need it", () => {
    const { drv, heap, irq } = rig({ lower: false });
    const [q] = drv.start(0n, [8]);
    q!.add([{ addr: heap.alloc(8), len: 8, writable: true }]);
    drv.kick(0);
    expect(irq.raised).toBe(1);
    expect(drv.ackInterrupts()).toBe(VIRTIO_MMIO_INT_VRING);
    drv.writeReg(VIRTIO_MMIO_STATUS, 0);
    expect(drv.status).toBe(0);
  });

  it("config generation: each configChanged bumps it (wrapping at 2^32) with a config interrupt", () => {
    const { drv, dev, t } = rig();
    drv.start(0n, [8]);
    expect(drv.readReg(VIRTIO_MMIO_CONFIG_GENERATION)).toBe(0);
    dev.ctx!.configChanged();
    dev.ctx!.configChanged();
    expect(drv.readReg(VIRTIO_MMIO_CONFIG_GENERATION)).toBe(2);
    const s = { ...t.saveState(), configGeneration: 0xffffffff };
    t.restoreState(s);
    dev.ctx!.configChanged();
    expect(drv.readReg(VIRTIO_MMIO_CONFIG_GENERATION)).toBe(0);
    expect(drv.ackInterrupts() & VIRTIO_MMIO_INT_CONFIG).toBe(VIRTIO_MMIO_INT_CONFIG);
  });
});

describe("containment of device faults", () => {
  it("a device that throws a plain Error or a non-Error is reported as VIRTIO_DEVICE_INTERNAL and the device needs reset", () => {
    for (const thrown of [new TypeError("oops"), "a string", 42]) {
      const { drv, dev, errors } = rig();
      drv.start(0n, [8]);
      dev.throwOnNotify = thrown;
      drv.kick(0);
      expect(drv.status & NR).toBe(NR);
      expect(errors[0]).toBeInstanceOf(VirtioDeviceError);
      expect(errors[0]!.code).toBe("VIRTIO_DEVICE_INTERNAL");
      expect(errors[0]!.message).toContain(thrown instanceof Error ? thrown.message : String(thrown));
      expect((errors[0] as Error & { cause?: unknown }).cause).toBe(thrown);
    }
  });

  it("activate throwing ends DRIVER_OK in DEVICE_NEEDS_RESET; a reset recovers", () => {
    const { drv, dev, errors } = rig();
    dev.throwOnActivate = new Error("no backend");
    drv.start(0n, [8]);
    expect(drv.status & NR).toBe(NR);
    expect(codes(errors)).toEqual(["VIRTIO_DEVICE_INTERNAL"]);
    dev.throwOnActivate = undefined;
    drv.start(0n, [8]);
    expect(drv.status).toBe(ACK | DRV | FOK | DOK);
    expect(dev.ctx!.current).toBe(true);
  });

  it("a config read the device fails reads as zeros and is reported, without DEVICE_NEEDS_RESET", () => {
    const { drv, dev, errors } = rig();
    drv.start(0n, [8]);
    dev.throwOnReadConfig = new RangeError("config window bug");
    expect([...drv.readConfig(0, 4)]).toEqual([0, 0, 0, 0]);
    expect(codes(errors)).toEqual(["VIRTIO_DEVICE_INTERNAL"]);
    expect(drv.status & NR).toBe(0);
    dev.throwOnReadConfig = undefined;
    expect([...drv.readConfig(0, 4)]).toEqual([1, 2, 3, 4]);
  });

  it("device reset throwing is contained: the transport still resets", () => {
    const { drv, dev, errors } = rig();
    drv.start(0n, [8]);
    dev.throwOnReset = new Error("reset failed");
    drv.writeReg(VIRTIO_MMIO_STATUS, 0);
    expect(drv.status).toBe(0);
    expect(codes(errors)).toContain("VIRTIO_DEVICE_INTERNAL");
  });

  it("an onError observer that throws does not undo containment; an interrupt trigger that throws is counted", () => {
    const h1 = rig({
      onError: () => {
        throw new Error("observer bug");
      },
    });
    h1.drv.start(0n, [8]);
    h1.dev.throwOnNotify = new Error("x");
    h1.drv.kick(0);
    expect(h1.drv.status & NR).toBe(NR);
    expect(h1.t.errorCount).toBe(1);

    const h2 = rig({
      trigger: () => {
        throw new Error("irqfd closed");
      },
    });
    const [q] = h2.drv.start(0n, [8]);
    q!.add([{ addr: h2.heap.alloc(8), len: 8, writable: true }]);
    h2.drv.kick(0);
    expect(q!.takeUsed().length).toBe(1);
    expect(h2.t.errorCount).toBe(1);
    expect(h2.t.lastError?.code).toBe("VIRTIO_DEVICE_BACKEND");
    expect(h2.drv.readReg(VIRTIO_MMIO_INTERRUPT_STATUS)).toBe(VIRTIO_MMIO_INT_VRING);
  });

  it("a stale DeviceContext (after reset) is inert: fail, configChanged and signalUsed do nothing", () => {
    const { drv, dev, t, irq } = rig();
    drv.start(0n, [8]);
    const old = dev.ctx!;
    drv.start(0n, [8]);
    expect(old.current).toBe(false);
    const raised = irq.raised;
    const gen = t.configGeneration;
    old.fail(new Error("late"));
    old.configChanged();
    old.signalUsed(0);
    expect(drv.status).toBe(ACK | DRV | FOK | DOK);
    expect(t.configGeneration).toBe(gen);
    expect(irq.raised).toBe(raised);
    expect(t.errorCount).toBe(0);
  });

  it("signalUsed for a queue the device does not have is a device bug: DEVICE_NEEDS_RESET", () => {
    const { drv, dev, errors } = rig();
    drv.start(0n, [8]);
    dev.ctx!.signalUsed(9);
    expect(drv.status & NR).toBe(NR);
    expect(codes(errors)).toEqual(["VIRTIO_DEVICE_INTERNAL"]);
  });
});

/** The probe with the optional pause/resume hooks, which can be made to fail. */
class PausableProbe extends ProbeDevice {
  pauses = 0;
  resumes = 0;
  throwOnPause: unknown;
  throwOnResume: unknown;
  async pause(): Promise<void> {
    this.pauses++;
    if (this.throwOnPause !== undefined) throw this.throwOnPause;
  }
  resume(): void {
    this.resumes++;
    if (this.throwOnResume !== undefined) throw this.throwOnResume;
  }
}

describe("pause and resume (VM pause / snapshot)", () => {
  it("doorbells rung while paused are held; resume looks at every active queue once; resume without pause does nothing", async () => {
    const { drv, dev, t, heap } = rig();
    const [q0, q1] = drv.start(0n, [8, 4]);
    t.resume();
    dev.notified.length = 0;
    await t.pause();
    expect(t.isPaused).toBe(true);
    q0!.add([{ addr: heap.alloc(8), len: 8, writable: true }]);
    drv.kick(0);
    drv.kick(1);
    expect(dev.notified).toEqual([]);
    expect(q0!.takeUsed()).toEqual([]);
    t.resume();
    expect(t.isPaused).toBe(false);
    expect(dev.notified).toEqual([0, 1]);
    expect(q0!.takeUsed().length).toBe(1);
    expect(q1!.takeUsed()).toEqual([]);
  });

  it("a device's pause and resume hooks are called; a hook that throws is DEVICE_NEEDS_RESET, never a rejected pause", async () => {
    const mem = GuestMemoryMap.allocate([{ base: RAM_BASE, size: RAM_SIZE }]);
    const errors: TsvmmError[] = [];
    const dev = new PausableProbe();
    const t = new MmioTransport(dev, { mem, interrupt: { trigger() {} }, onError: (e) => void errors.push(e) });
    const drv = new TestDriver(t, mem, new GuestHeap(RAM_BASE, RAM_SIZE));
    drv.start(0n, [8]);
    await t.pause();
    t.resume();
    expect([dev.pauses, dev.resumes]).toEqual([1, 1]);
    expect(drv.status & NR).toBe(0);
    dev.throwOnPause = new Error("cannot quiesce");
    await expect(t.pause()).resolves.toBeUndefined();
    expect(drv.status & NR).toBe(NR);
    drv.start(0n, [8]);
    dev.throwOnPause = undefined;
    dev.throwOnResume = "resume failed";
    await t.pause();
    t.resume();
    expect(drv.status & NR).toBe(NR);
    expect(codes(errors)).toEqual(["VIRTIO_DEVICE_INTERNAL", "VIRTIO_DEVICE_INTERNAL"]);
  });
});

describe("drainQueue", () => {
  it("takes at most `limit` chains per call and says whether chains were left", () => {
    const { drv, dev, heap } = rig();
    const [q] = drv.start(0n, [8]);
    dev.drainLimit = 3;
    for (let i = 0; i < 5; i++) q!.add([{ addr: heap.alloc(8), len: 8, writable: true }]);
    drv.kick(0);
    expect(q!.takeUsed().length).toBe(3);
    expect(dev.lastDrainMore).toBe(true);
    drv.kick(0);
    expect(q!.takeUsed().length).toBe(2);
    expect(dev.lastDrainMore).toBe(false);
    // Exactly `limit` chains: nothing left.
    for (let i = 0; i < 3; i++) q!.add([{ addr: heap.alloc(8), len: 8, writable: true }]);
    drv.kick(0);
    expect(q!.takeUsed().length).toBe(3);
    expect(dev.lastDrainMore).toBe(false);
  });

  it("does nothing for a queue that is missing, inactive, or after the context died", () => {
    const { drv, dev, heap } = rig();
    const [q] = drv.start(0n, [8]);
    const ctx = dev.ctx!;
    expect(drainQueue(ctx, 5, () => 0)).toBe(false);
    expect(drainQueue(ctx, 1, () => 0)).toBe(false);
    q!.add([{ addr: heap.alloc(8), len: 8, writable: true }]);
    ctx.fail(new Error("dead"));
    let seen = 0;
    expect(drainQueue(ctx, 0, () => ++seen)).toBe(false);
    expect(seen).toBe(0);
  });
});

describe("snapshot state", () => {
  it("restoreState refuses a state with another queue count, and takes an empty feature string as none", () => {
    const { t, drv } = rig();
    drv.negotiate(0n);
    const s = t.saveState();
    let code = "";
    try {
      t.restoreState({ ...s, queues: s.queues.slice(0, 1) });
    } catch (e) {
      code = (e as TsvmmError).code;
    }
    expect(code).toBe("VIRTIO_BAD_STATE");
    const s2: MmioTransportState = { ...s, driverFeatures: "" };
    t.restoreState(s2);
    expect(t.negotiatedFeatures).toBe(0n);
    expect(drv.status).toBe(ACK | DRV | FOK);
  });

  it("a state saved before DRIVER_OK restores without activating the device; DRIVER_OK then activates it", () => {
    const h = rig();
    h.drv.negotiate(0n);
    const q = h.drv.setupQueue(0, 8);
    const s = JSON.parse(JSON.stringify(h.t.saveState())) as MmioTransportState;
    const h2 = rig();
    h2.t.restoreState(s);
    expect(h2.dev.ctx).toBeUndefined();
    expect(h2.drv.readReg(VIRTIO_MMIO_QUEUE_DESC_LOW)).toBe(q.descTable);
    h2.drv.driverOk();
    expect(h2.dev.ctx?.current).toBe(true);
  });
});
