import type { GuestMemory } from "@tsvmm/abi";
import {
  bit,
  VIRTIO_CONFIG_S_ACKNOWLEDGE,
  VIRTIO_CONFIG_S_DRIVER,
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_FEATURES_OK,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
  VIRTIO_MMIO_CONFIG,
  VIRTIO_MMIO_DEVICE_FEATURES,
  VIRTIO_MMIO_DEVICE_FEATURES_SEL,
  VIRTIO_MMIO_DRIVER_FEATURES,
  VIRTIO_MMIO_DRIVER_FEATURES_SEL,
  VIRTIO_MMIO_INTERRUPT_ACK,
  VIRTIO_MMIO_INTERRUPT_STATUS,
  VIRTIO_MMIO_QUEUE_AVAIL_HIGH,
  VIRTIO_MMIO_QUEUE_AVAIL_LOW,
  VIRTIO_MMIO_QUEUE_DESC_HIGH,
  VIRTIO_MMIO_QUEUE_DESC_LOW,
  VIRTIO_MMIO_QUEUE_NOTIFY,
  VIRTIO_MMIO_QUEUE_NUM,
  VIRTIO_MMIO_QUEUE_NUM_MAX,
  VIRTIO_MMIO_QUEUE_READY,
  VIRTIO_MMIO_QUEUE_SEL,
  VIRTIO_MMIO_QUEUE_USED_HIGH,
  VIRTIO_MMIO_QUEUE_USED_LOW,
  VIRTIO_MMIO_STATUS,
  VIRTIO_RING_F_EVENT_IDX,
} from "../constants.js";
import { DriverPackedQueue, type DriverQueue, DriverSplitQueue, type GuestHeap } from "./rings.js";

/** Anything with the MMIO bus device shape: an MmioTransport, or a bus window around one. */
export interface MmioWindow {
  read(offset: number, data: Buffer): void;
  write(offset: number, data: Buffer): void;
}

/**
 * A host-side stand-in for a guest's virtio-mmio driver: it negotiates through the registers
 * exactly as virtio 1.2 §3.1.1 and §4.2.3 tell a driver to, builds split or packed rings in
 * guest memory and kicks through QueueNotify. Tests and the benchmarks play the guest with it.
 */
export class TestDriver {
  readonly mem: GuestMemory;
  readonly heap: GuestHeap;
  private readonly win: MmioWindow;
  private readonly reg = Buffer.alloc(4);
  readonly queues: DriverQueue[] = [];
  features = 0n;

  constructor(win: MmioWindow, mem: GuestMemory, heap: GuestHeap) {
    this.win = win;
    this.mem = mem;
    this.heap = heap;
  }

  readReg(offset: number): number {
    this.win.read(offset, this.reg);
    return this.reg.readUInt32LE(0);
  }
  writeReg(offset: number, v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0, 0);
    this.win.write(offset, b);
  }
  get status(): number {
    return this.readReg(VIRTIO_MMIO_STATUS);
  }

  /** Offered features (both 32-bit words). */
  deviceFeatures(): bigint {
    this.writeReg(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    const lo = BigInt(this.readReg(VIRTIO_MMIO_DEVICE_FEATURES));
    this.writeReg(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    const hi = BigInt(this.readReg(VIRTIO_MMIO_DEVICE_FEATURES));
    return (hi << 32n) | lo;
  }

  /**
   * Reset, acknowledge, accept `wanted & offered` (always asking VERSION_1), set FEATURES_OK and
   * check the device kept it. Pass `force` to write features regardless of the offer (tests of refusal).
   */
  negotiate(wanted: bigint, opts: { force?: boolean } = {}): boolean {
    this.writeReg(VIRTIO_MMIO_STATUS, 0);
    this.writeReg(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    this.writeReg(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    const offered = this.deviceFeatures();
    const f = opts.force ? wanted : (wanted | bit(VIRTIO_F_VERSION_1)) & offered;
    this.writeReg(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    this.writeReg(VIRTIO_MMIO_DRIVER_FEATURES, Number(f & 0xffff_ffffn));
    this.writeReg(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    this.writeReg(VIRTIO_MMIO_DRIVER_FEATURES, Number((f >> 32n) & 0xffff_ffffn));
    this.writeReg(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
    this.features = f;
    this.queues.length = 0;
    return (this.status & VIRTIO_CONFIG_S_FEATURES_OK) !== 0;
  }

  /** Build queue `index` (largest size up to `size`) in guest memory and make it ready. */
  setupQueue(index: number, size = 256): DriverQueue {
    this.writeReg(VIRTIO_MMIO_QUEUE_SEL, index);
    const max = this.readReg(VIRTIO_MMIO_QUEUE_NUM_MAX);
    if (max === 0) throw new RangeError(`device has no queue ${index}`);
    const n = Math.min(size, max);
    const eventIdx = (this.features & bit(VIRTIO_RING_F_EVENT_IDX)) !== 0n;
    const q = (this.features & bit(VIRTIO_F_RING_PACKED)) !== 0n ? new DriverPackedQueue(this.mem, this.heap, n, eventIdx) : new DriverSplitQueue(this.mem, this.heap, n, eventIdx);
    this.writeReg(VIRTIO_MMIO_QUEUE_NUM, n);
    const put = (lo: number, hi: number, a: number): void => {
      this.writeReg(lo, a % 2 ** 32);
      this.writeReg(hi, Math.floor(a / 2 ** 32));
    };
    put(VIRTIO_MMIO_QUEUE_DESC_LOW, VIRTIO_MMIO_QUEUE_DESC_HIGH, q.descTable);
    put(VIRTIO_MMIO_QUEUE_AVAIL_LOW, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, q.driverArea);
    put(VIRTIO_MMIO_QUEUE_USED_LOW, VIRTIO_MMIO_QUEUE_USED_HIGH, q.deviceArea);
    this.writeReg(VIRTIO_MMIO_QUEUE_READY, 1);
    this.queues[index] = q;
    return q;
  }

  driverOk(): void {
    this.writeReg(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
  }

  /** negotiate + setupQueue for each size + driverOk. */
  start(wanted: bigint, queueSizes: readonly number[]): DriverQueue[] {
    if (!this.negotiate(wanted)) throw new Error(`device refused features 0x${wanted.toString(16)}`);
    const qs = queueSizes.map((n, i) => this.setupQueue(i, n));
    this.driverOk();
    return qs;
  }

  /** QueueNotify write (unconditional). */
  kick(queue: number): void {
    this.writeReg(VIRTIO_MMIO_QUEUE_NOTIFY, queue);
  }
  /** Kick only when the device's suppression asks for it. */
  kickIfNeeded(queue: number): boolean {
    const q = this.queues[queue];
    if (q === undefined || !q.kickNeeded()) return false;
    this.kick(queue);
    return true;
  }

  /** Read InterruptStatus and acknowledge what was set; returns the bits. */
  ackInterrupts(): number {
    const s = this.readReg(VIRTIO_MMIO_INTERRUPT_STATUS);
    if (s !== 0) this.writeReg(VIRTIO_MMIO_INTERRUPT_ACK, s);
    return s;
  }

  readConfig(offset: number, len: number): Buffer {
    const out = Buffer.alloc(len);
    this.win.read(VIRTIO_MMIO_CONFIG + offset, out);
    return out;
  }
  writeConfig(offset: number, data: Buffer): void {
    this.win.write(VIRTIO_MMIO_CONFIG + offset, data);
  }
}
