import type { GuestMemory } from "@tsvmm/abi";
import { TsvmmError } from "@tsvmm/abi";
import {
  bit,
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
  VIRTIO_MMIO_DEVICE_ID,
  VIRTIO_MMIO_DRIVER_FEATURES,
  VIRTIO_MMIO_DRIVER_FEATURES_SEL,
  VIRTIO_MMIO_INT_CONFIG,
  VIRTIO_MMIO_INT_VRING,
  VIRTIO_MMIO_INTERRUPT_ACK,
  VIRTIO_MMIO_INTERRUPT_STATUS,
  VIRTIO_MMIO_MAGIC,
  VIRTIO_MMIO_MAGIC_VALUE,
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
  VIRTIO_MMIO_SHM_BASE_HIGH,
  VIRTIO_MMIO_SHM_BASE_LOW,
  VIRTIO_MMIO_SHM_LEN_HIGH,
  VIRTIO_MMIO_SHM_LEN_LOW,
  VIRTIO_MMIO_SHM_SEL,
  VIRTIO_MMIO_STATUS,
  VIRTIO_MMIO_VENDOR_ID,
  VIRTIO_MMIO_VERSION,
  VIRTIO_MMIO_WINDOW_SIZE,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
} from "./constants.js";
import type { DeviceContext, VirtioDevice } from "./device.js";
import { VirtioDeviceError, VirtioTransportError } from "./errors.js";
import { Queue, type QueueState } from "./queue/queue.js";

/**
 * Where the transport's interrupt goes: the VMM wires `trigger` to an irqfd (or KVM_IRQ_LINE
 * pulse). `lower`, when given, is called once the driver has acknowledged every pending cause,
 * for a level-triggered line.
 */
export interface InterruptLine {
  trigger(): void;
  lower?(): void;
}

export interface MmioTransportOptions {
  /** Guest memory the queues live in. */
  mem: GuestMemory;
  interrupt: InterruptLine;
  /** Bus name; default `virtio-mmio-<device name>`. */
  name?: string;
  /** Vendor id register; default 0 ("none"), as Firecracker. */
  vendorId?: number;
  /** Offer VIRTIO_F_RING_PACKED (default true). */
  packed?: boolean;
  /** Offer VIRTIO_RING_F_EVENT_IDX (default true). */
  eventIdx?: boolean;
  /** Offer VIRTIO_RING_F_INDIRECT_DESC (default true). */
  indirect?: boolean;
  /** Sees every error the transport contained (driver bugs, device faults). */
  onError?: (error: TsvmmError) => void;
}

/** A queue doorbell for ioeventfd registration: a 4-byte write of `value` at `offset` in the window. */
export interface NotifyRegister {
  readonly queue: number;
  readonly offset: number;
  readonly size: 4;
  readonly value: number;
}

/** Transport state as plain JSON; feature masks are hex strings (u64). */
export interface MmioTransportState {
  readonly status: number;
  readonly deviceFeaturesSel: number;
  readonly driverFeaturesSel: number;
  readonly driverFeatures: string;
  readonly queueSel: number;
  readonly interruptStatus: number;
  readonly configGeneration: number;
  readonly queues: readonly QueueState[];
  readonly device: unknown;
}

/** The access context a bus hands devices (vCPU index); unused here, accepted for the bus's shape. */
export interface AccessContext {
  readonly vcpu: number;
}

/**
 * virtio-mmio version 2 (virtio 1.2 §4.2.2): the register file, feature negotiation, the device
 * status machine, interrupt status/ack and config generation. It has the shape of a device on
 * tsvmm's MMIO bus (`name`, `read`, `write`); register it at its window base with length
 * {@link VIRTIO_MMIO_WINDOW_SIZE}. Nothing the driver writes makes `read`, `write` or `notify`
 * throw: every error is contained, reported to `onError`, and — when it is the driver's or the
 * device's fault past DRIVER_OK — turns into DEVICE_NEEDS_RESET plus a config interrupt.
 */
export class MmioTransport {
  readonly name: string;
  readonly device: VirtioDevice;
  readonly queues: readonly Queue[];
  /** Offset of QueueNotify in the window. */
  readonly notifyOffset = VIRTIO_MMIO_QUEUE_NOTIFY;
  readonly windowSize = VIRTIO_MMIO_WINDOW_SIZE;
  /** Features offered to the driver (device bits + transport bits). */
  readonly offeredFeatures: bigint;
  private readonly mem: GuestMemory;
  private readonly irq: InterruptLine;
  private readonly vendorId: number;
  private readonly onError: ((e: TsvmmError) => void) | undefined;

  private statusReg = 0;
  private deviceFeaturesSel = 0;
  private driverFeaturesSel = 0;
  private driverFeatures = 0n;
  private queueSel = 0;
  private interruptStatusReg = 0;
  private configGen = 0;
  /** Bumped by every reset and activation; a context is current only while it matches. */
  private generation = 0;
  private ctx: DeviceContext | undefined;
  private paused = false;
  /** Errors contained so far (driver bugs and device faults). */
  errorCount = 0;
  lastError: TsvmmError | undefined;

  constructor(device: VirtioDevice, opts: MmioTransportOptions) {
    this.device = device;
    this.mem = opts.mem;
    this.irq = opts.interrupt;
    this.name = opts.name ?? `virtio-mmio-${device.name}`;
    this.vendorId = opts.vendorId ?? 0;
    this.onError = opts.onError;
    this.queues = device.queueMaxSizes.map((n, i) => new Queue(i, n));
    let f = device.features | bit(VIRTIO_F_VERSION_1);
    if (opts.packed ?? true) f |= bit(VIRTIO_F_RING_PACKED);
    if (opts.eventIdx ?? true) f |= bit(VIRTIO_RING_F_EVENT_IDX);
    if (opts.indirect ?? true) f |= bit(VIRTIO_RING_F_INDIRECT_DESC);
    // The device reads guest-physical addresses directly: there is no IOMMU to honour.
    this.offeredFeatures = f & ~bit(VIRTIO_F_ACCESS_PLATFORM);
  }

  get status(): number {
    return this.statusReg;
  }
  get interruptStatus(): number {
    return this.interruptStatusReg;
  }
  get configGeneration(): number {
    return this.configGen;
  }
  /** Features the driver accepted (meaningful once FEATURES_OK is set). */
  get negotiatedFeatures(): bigint {
    return this.driverFeatures;
  }

  /** One doorbell per queue: the VMM registers an ioeventfd for each and calls `notify(queue)` when it fires. */
  notifyRegisters(): NotifyRegister[] {
    return this.queues.map((q) => ({ queue: q.index, offset: VIRTIO_MMIO_QUEUE_NOTIFY, size: 4 as const, value: q.index }));
  }

  // ---- error containment ----

  private contain(e: unknown, needsReset: boolean): void {
    const err =
      e instanceof TsvmmError
        ? e
        : new VirtioDeviceError("VIRTIO_DEVICE_INTERNAL", `${this.name}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    this.errorCount++;
    this.lastError = err;
    if (needsReset && this.statusReg !== 0 && !(this.statusReg & VIRTIO_CONFIG_S_NEEDS_RESET)) {
      this.statusReg |= VIRTIO_CONFIG_S_NEEDS_RESET;
      this.generation++; // the activation is over: late completions must drop their results
      this.raise(VIRTIO_MMIO_INT_CONFIG);
    }
    try {
      this.onError?.(err);
    } catch {
      // An observer that throws must not undo containment.
    }
  }

  private raise(cause: number): void {
    this.interruptStatusReg |= cause;
    try {
      this.irq.trigger();
    } catch (e) {
      this.errorCount++;
      this.lastError = new VirtioDeviceError("VIRTIO_DEVICE_BACKEND", `${this.name}: interrupt trigger failed`, { cause: e });
    }
  }

  private running(): boolean {
    const s = this.statusReg;
    return (s & VIRTIO_CONFIG_S_DRIVER_OK) !== 0 && (s & (VIRTIO_CONFIG_S_NEEDS_RESET | VIRTIO_CONFIG_S_FAILED)) === 0;
  }

  // ---- queue notification ----

  /**
   * A driver notification for `queue`: from a QueueNotify write, or from an ioeventfd the VMM
   * watches. Before DRIVER_OK it is ignored (reported as VIRTIO_NOTIFY_BEFORE_DRIVER_OK) and the
   * queue is polled at DRIVER_OK instead, since some drivers kick while setting up.
   */
  notify(queue: number): void {
    if (!Number.isInteger(queue) || queue < 0 || queue >= this.queues.length) {
      this.contain(new VirtioTransportError("VIRTIO_NOTIFY_BAD_QUEUE", `${this.name}: notify for queue ${queue} of ${this.queues.length}`), false);
      return;
    }
    if (!this.running()) {
      if (!(this.statusReg & VIRTIO_CONFIG_S_NEEDS_RESET)) {
        this.contain(new VirtioTransportError("VIRTIO_NOTIFY_BEFORE_DRIVER_OK", `${this.name}: queue ${queue} notified before DRIVER_OK`), false);
      }
      return;
    }
    // Held while paused: resume() looks at every queue, so a doorbell rung meanwhile is not lost.
    if (!this.queues[queue]!.active || this.paused) return;
    try {
      this.device.queueNotify(queue);
    } catch (e) {
      this.contain(e, true);
    }
  }

  // ---- pause ----

  /** True between pause() and resume(). */
  get isPaused(): boolean {
    return this.paused;
  }

  /**
   * Quiesce for a VM pause or snapshot: queue notifications are held, the device stops touching
   * guest memory (see {@link VirtioDevice.pause}), and the promise resolves once the I/O it had
   * started has completed into guest memory. Never rejects: a device fault is contained.
   */
  async pause(): Promise<void> {
    this.paused = true;
    try {
      await this.device.pause?.();
    } catch (e) {
      this.contain(e, true);
    }
  }

  /** Undo pause(): the device delivers what it held, then every active queue is looked at once. */
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    try {
      this.device.resume?.();
    } catch (e) {
      this.contain(e, true);
    }
    for (const q of this.queues) if (q.active && this.running()) this.notify(q.index);
  }

  // ---- status machine ----

  private resetDevice(): void {
    this.generation++;
    this.ctx = undefined;
    this.statusReg = 0;
    this.deviceFeaturesSel = 0;
    this.driverFeaturesSel = 0;
    this.driverFeatures = 0n;
    this.queueSel = 0;
    this.interruptStatusReg = 0;
    for (const q of this.queues) q.reset();
    try {
      this.device.reset();
    } catch (e) {
      this.contain(e, false);
    }
    this.irq.lower?.();
  }

  private writeStatus(written: number): void {
    if (written === 0) {
      this.resetDevice();
      return;
    }
    // §4.2.2: only a write of zero resets; bits above the status byte are reserved and dropped.
    const v = written & 0xff;
    const old = this.statusReg;
    const keep = old & VIRTIO_CONFIG_S_NEEDS_RESET;
    // §3.1.1: the driver only ever adds bits; anything else is ignored (bar reset).
    if ((v & old & ~VIRTIO_CONFIG_S_NEEDS_RESET) !== (old & ~VIRTIO_CONFIG_S_NEEDS_RESET)) {
      this.contain(new VirtioTransportError("VIRTIO_BAD_STATE", `${this.name}: status 0x${v.toString(16)} clears bits of 0x${old.toString(16)}`), false);
      return;
    }
    let next = (v & ~VIRTIO_CONFIG_S_NEEDS_RESET) | keep;
    const added = next & ~old;
    if (added & VIRTIO_CONFIG_S_FEATURES_OK) {
      const f = this.driverFeatures;
      const unoffered = f & ~this.offeredFeatures;
      if (unoffered !== 0n || (f & bit(VIRTIO_F_VERSION_1)) === 0n || !(old & VIRTIO_CONFIG_S_DRIVER) || !(old & VIRTIO_CONFIG_S_ACKNOWLEDGE)) {
        // §3.1.1 step 6: the device refuses by leaving FEATURES_OK clear.
        next &= ~VIRTIO_CONFIG_S_FEATURES_OK;
        next &= ~VIRTIO_CONFIG_S_DRIVER_OK;
        this.contain(
          new VirtioTransportError("VIRTIO_FEATURES_REFUSED", `${this.name}: features 0x${f.toString(16)} refused (offered 0x${this.offeredFeatures.toString(16)}, VERSION_1 required)`),
          false,
        );
      }
    }
    this.statusReg = next;
    if (added & VIRTIO_CONFIG_S_DRIVER_OK && next & VIRTIO_CONFIG_S_DRIVER_OK) {
      if (!(next & VIRTIO_CONFIG_S_FEATURES_OK)) {
        this.contain(new VirtioTransportError("VIRTIO_BAD_STATE", `${this.name}: DRIVER_OK without FEATURES_OK`), true);
        return;
      }
      this.activate();
    }
  }

  private queueFeatures(): { packed: boolean; eventIdx: boolean; indirect: boolean } {
    const f = this.driverFeatures;
    return {
      packed: (f & bit(VIRTIO_F_RING_PACKED)) !== 0n,
      eventIdx: (f & bit(VIRTIO_RING_F_EVENT_IDX)) !== 0n,
      indirect: (f & bit(VIRTIO_RING_F_INDIRECT_DESC)) !== 0n,
    };
  }

  private makeContext(): DeviceContext {
    const gen = ++this.generation;
    const t = this;
    const live = (): boolean => t.generation === gen && t.running();
    return {
      mem: this.mem,
      queues: this.queues,
      features: this.driverFeatures,
      get current() {
        return live();
      },
      signalUsed(queue: number): void {
        if (!live()) return;
        try {
          if (t.queues[queue]!.needsNotification()) t.raise(VIRTIO_MMIO_INT_VRING);
        } catch (e) {
          t.contain(e, true);
        }
      },
      configChanged(): void {
        if (t.generation !== gen) return;
        t.configGen = (t.configGen + 1) >>> 0;
        t.raise(VIRTIO_MMIO_INT_CONFIG);
      },
      fail(error: unknown): void {
        if (t.generation === gen) t.contain(error, true);
      },
    };
  }

  private activate(): void {
    try {
      const qf = this.queueFeatures();
      for (const q of this.queues) if (q.ready) q.activate(this.mem, qf);
      this.ctx = this.makeContext();
      this.device.activate(this.ctx);
    } catch (e) {
      this.contain(e, true);
      return;
    }
    // Drivers may have queued buffers (and kicked) before DRIVER_OK: look at every ready queue once.
    for (const q of this.queues) if (q.active && this.running()) this.notify(q.index);
  }

  // ---- register file ----

  private get selected(): Queue | undefined {
    return this.queues[this.queueSel];
  }

  read(offset: number, data: Buffer, _ctx?: AccessContext): void {
    try {
      this.readInner(offset, data);
    } catch (e) {
      data.fill(0);
      this.contain(e, false);
    }
  }

  write(offset: number, data: Buffer, _ctx?: AccessContext): void {
    try {
      this.writeInner(offset, data);
    } catch (e) {
      this.contain(e, this.running());
    }
  }

  private readInner(offset: number, data: Buffer): void {
    if (offset >= VIRTIO_MMIO_CONFIG) {
      this.device.readConfig(offset - VIRTIO_MMIO_CONFIG, data);
      return;
    }
    data.fill(0);
    if (data.length !== 4 || offset % 4 !== 0) {
      this.contain(new VirtioTransportError("VIRTIO_BAD_REGISTER_ACCESS", `${this.name}: ${data.length}-byte read at 0x${offset.toString(16)}`), false);
      return;
    }
    const q = this.selected;
    let v = 0;
    switch (offset) {
      case VIRTIO_MMIO_MAGIC_VALUE:
        v = VIRTIO_MMIO_MAGIC;
        break;
      case VIRTIO_MMIO_VERSION:
        v = 2;
        break;
      case VIRTIO_MMIO_DEVICE_ID:
        v = this.device.deviceId;
        break;
      case VIRTIO_MMIO_VENDOR_ID:
        v = this.vendorId;
        break;
      case VIRTIO_MMIO_DEVICE_FEATURES:
        v = this.deviceFeaturesSel < 2 ? Number((this.offeredFeatures >> BigInt(32 * this.deviceFeaturesSel)) & 0xffff_ffffn) : 0;
        break;
      case VIRTIO_MMIO_QUEUE_NUM_MAX:
        v = q?.maxSize ?? 0;
        break;
      case VIRTIO_MMIO_QUEUE_READY:
        v = q?.ready ? 1 : 0;
        break;
      case VIRTIO_MMIO_INTERRUPT_STATUS:
        v = this.interruptStatusReg;
        break;
      case VIRTIO_MMIO_STATUS:
        v = this.statusReg;
        break;
      case VIRTIO_MMIO_CONFIG_GENERATION:
        v = this.configGen;
        break;
      case VIRTIO_MMIO_SHM_LEN_LOW:
      case VIRTIO_MMIO_SHM_LEN_HIGH:
        // §4.2.2.1: no shared memory regions, so every region reads length -1.
        v = 0xffff_ffff;
        break;
      case VIRTIO_MMIO_SHM_BASE_LOW:
      case VIRTIO_MMIO_SHM_BASE_HIGH:
        v = 0xffff_ffff;
        break;
      case VIRTIO_MMIO_QUEUE_DESC_LOW:
        v = (q?.descTable ?? 0) % 2 ** 32;
        break;
      case VIRTIO_MMIO_QUEUE_DESC_HIGH:
        v = Math.floor((q?.descTable ?? 0) / 2 ** 32);
        break;
      case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
        v = (q?.driverArea ?? 0) % 2 ** 32;
        break;
      case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
        v = Math.floor((q?.driverArea ?? 0) / 2 ** 32);
        break;
      case VIRTIO_MMIO_QUEUE_USED_LOW:
        v = (q?.deviceArea ?? 0) % 2 ** 32;
        break;
      case VIRTIO_MMIO_QUEUE_USED_HIGH:
        v = Math.floor((q?.deviceArea ?? 0) / 2 ** 32);
        break;
      default:
        v = 0;
    }
    data.writeUInt32LE(v >>> 0, 0);
  }

  private writeInner(offset: number, data: Buffer): void {
    if (offset >= VIRTIO_MMIO_CONFIG) {
      // §4.2.2.2: config writes before DRIVER/after failure are the driver's business; the device validates its own fields.
      this.device.writeConfig(offset - VIRTIO_MMIO_CONFIG, data);
      return;
    }
    if (data.length !== 4 || offset % 4 !== 0) {
      this.contain(new VirtioTransportError("VIRTIO_BAD_REGISTER_ACCESS", `${this.name}: ${data.length}-byte write at 0x${offset.toString(16)}`), false);
      return;
    }
    const v = data.readUInt32LE(0);
    const q = this.selected;
    const s = this.statusReg;
    // Queue and feature registers are fixed once the driver moves past them (§4.2.3.2, §3.1.1).
    const queueEditable = q !== undefined && !q.ready && !(s & VIRTIO_CONFIG_S_NEEDS_RESET);
    const setHalf = (cur: number, high: boolean): number => {
      const lo = cur % 2 ** 32;
      const hi = Math.floor(cur / 2 ** 32);
      // Guest RAM ends below 2^53: a higher address is kept as an impossible value that activation refuses.
      const nh = high ? Math.min(v, 0x1fffff + 1) : hi;
      return nh * 2 ** 32 + (high ? lo : v);
    };
    switch (offset) {
      case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
        this.deviceFeaturesSel = v;
        break;
      case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
        this.driverFeaturesSel = v;
        break;
      case VIRTIO_MMIO_DRIVER_FEATURES:
        if (s & VIRTIO_CONFIG_S_FEATURES_OK || !(s & VIRTIO_CONFIG_S_DRIVER)) {
          this.contain(new VirtioTransportError("VIRTIO_BAD_STATE", `${this.name}: driver features written in status 0x${s.toString(16)}`), false);
        } else if (this.driverFeaturesSel < 2) {
          const sh = BigInt(32 * this.driverFeaturesSel);
          this.driverFeatures = (this.driverFeatures & ~(0xffff_ffffn << sh)) | (BigInt(v) << sh);
        } else if (v !== 0) {
          // Bits above 63 were never offered: remember the attempt so FEATURES_OK fails.
          this.driverFeatures |= 1n << 64n;
        }
        break;
      case VIRTIO_MMIO_QUEUE_SEL:
        this.queueSel = v;
        break;
      case VIRTIO_MMIO_QUEUE_NUM:
        if (queueEditable) q.size = v;
        break;
      case VIRTIO_MMIO_QUEUE_READY:
        if (q === undefined) break;
        if (v === 0) {
          q.ready = false;
        } else if (!q.ready) {
          q.ready = true;
          // A queue enabled after DRIVER_OK goes live at once.
          if (this.running()) q.activate(this.mem, this.queueFeatures());
        }
        break;
      case VIRTIO_MMIO_QUEUE_DESC_LOW:
      case VIRTIO_MMIO_QUEUE_DESC_HIGH:
        if (queueEditable) q.descTable = setHalf(q.descTable, offset === VIRTIO_MMIO_QUEUE_DESC_HIGH);
        break;
      case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
      case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
        if (queueEditable) q.driverArea = setHalf(q.driverArea, offset === VIRTIO_MMIO_QUEUE_AVAIL_HIGH);
        break;
      case VIRTIO_MMIO_QUEUE_USED_LOW:
      case VIRTIO_MMIO_QUEUE_USED_HIGH:
        if (queueEditable) q.deviceArea = setHalf(q.deviceArea, offset === VIRTIO_MMIO_QUEUE_USED_HIGH);
        break;
      case VIRTIO_MMIO_QUEUE_NOTIFY:
        this.notify(v);
        break;
      case VIRTIO_MMIO_INTERRUPT_ACK:
        this.interruptStatusReg &= ~v;
        if (this.interruptStatusReg === 0) this.irq.lower?.();
        break;
      case VIRTIO_MMIO_STATUS:
        this.writeStatus(v);
        break;
      case VIRTIO_MMIO_SHM_SEL:
        break;
      default:
        this.contain(new VirtioTransportError("VIRTIO_BAD_REGISTER_ACCESS", `${this.name}: write to read-only or unknown register 0x${offset.toString(16)}`), false);
    }
  }

  // ---- snapshot ----

  saveState(): MmioTransportState {
    return {
      status: this.statusReg,
      deviceFeaturesSel: this.deviceFeaturesSel,
      driverFeaturesSel: this.driverFeaturesSel,
      driverFeatures: this.driverFeatures.toString(16),
      queueSel: this.queueSel,
      interruptStatus: this.interruptStatusReg,
      configGeneration: this.configGen,
      queues: this.queues.map((q) => q.saveState()),
      device: this.device.saveState(),
    };
  }

  /**
   * Restore a saved transport (same device type, same queue count). A running device is
   * re-activated on the restored queues. Throws VirtioTransportError on a state that does not fit.
   */
  restoreState(s: MmioTransportState): void {
    if (s.queues.length !== this.queues.length) {
      throw new VirtioTransportError("VIRTIO_BAD_STATE", `${this.name}: saved ${s.queues.length} queues, device has ${this.queues.length}`);
    }
    this.resetDevice();
    this.device.restoreState(s.device);
    this.statusReg = s.status & 0xff;
    this.deviceFeaturesSel = s.deviceFeaturesSel;
    this.driverFeaturesSel = s.driverFeaturesSel;
    this.driverFeatures = BigInt(`0x${s.driverFeatures || "0"}`);
    this.queueSel = s.queueSel;
    this.interruptStatusReg = s.interruptStatus;
    this.configGen = s.configGeneration >>> 0;
    s.queues.forEach((qs, i) => {
      this.queues[i]!.restoreState(qs, this.mem);
    });
    if (this.running()) {
      this.ctx = this.makeContext();
      this.device.activate(this.ctx);
      // A doorbell rung while the saved VM was paused was held, not saved: look at every queue once.
      for (const q of this.queues) if (q.active && this.running()) this.notify(q.index);
    }
  }
}
