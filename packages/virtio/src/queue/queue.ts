import type { GuestMemory } from "@tsvmm/abi";
import { VirtqueueError } from "../errors.js";
import { EVENT_SIZE, packedRingSize, splitAvailSize, splitDescTableSize, splitUsedSize } from "../layouts.js";
import { type DescriptorChain, sliceGuest, type UsedToken } from "./chain.js";
import { PackedRing } from "./packed.js";
import { RingMemory } from "./ring-memory.js";
import { SplitRing } from "./split.js";

/** The largest queue either format allows (virtio 1.2 §2.6, §2.8: 2^15). */
export const MAX_QUEUE_SIZE = 32768;

/** Ring features negotiated for the queue's device. */
export interface QueueFeatures {
  /** VIRTIO_F_RING_PACKED */
  readonly packed: boolean;
  /** VIRTIO_RING_F_EVENT_IDX */
  readonly eventIdx: boolean;
  /** VIRTIO_RING_F_INDIRECT_DESC */
  readonly indirect: boolean;
}

/** Where the avail side stood; see {@link Queue.checkpoint}. */
export interface QueueCheckpoint {
  readonly nextAvail: number;
  readonly availWrap: boolean;
  readonly inFlightSlots: number;
}

/** Everything a queue holds, as plain JSON (addresses are numbers: guest RAM ends below 2^53). */
export interface QueueState {
  readonly maxSize: number;
  readonly size: number;
  readonly ready: boolean;
  readonly descTable: number;
  readonly driverArea: number;
  readonly deviceArea: number;
  /** Present once the queue was activated (DRIVER_OK). */
  readonly active: null | {
    readonly features: QueueFeatures;
    readonly nextAvail: number;
    readonly nextUsed: number;
    /** Packed only (true = 1). */
    readonly availWrap: boolean;
    readonly usedWrap: boolean;
    /** Split: used idx at the last notification check. */
    readonly signalledUsed: number;
    /** Packed: slots used since the last notification check, and slots in flight. */
    readonly usedSinceSignal: number;
    readonly inFlightSlots: number;
  };
}

/**
 * One virtqueue, device side, in either format. The transport fills in size and the three
 * addresses from the driver's register writes and calls `activate` at DRIVER_OK; a device model
 * then only needs `pop`, `addUsed`, `needsNotification` and the enable/disable pair:
 *
 *     do {
 *       q.disableNotification();
 *       for (let c = q.pop(); c !== null; c = q.pop()) { ...; q.addUsed(c, written); }
 *     } while (q.enableNotification());
 *     if (q.needsNotification()) interrupt();
 *
 * Every method that reads the rings throws {@link VirtqueueError} on a driver bug and leaves
 * guest memory outside the rings untouched.
 */
export class Queue {
  readonly index: number;
  readonly maxSize: number;
  size: number;
  ready = false;
  descTable = 0;
  driverArea = 0;
  deviceArea = 0;
  private ring: SplitRing | PackedRing | undefined;
  private feats: QueueFeatures | undefined;

  constructor(index: number, maxSize: number) {
    if (!Number.isInteger(maxSize) || maxSize < 1 || maxSize > MAX_QUEUE_SIZE) {
      throw new VirtqueueError("VIRTQ_INVALID_SIZE", `queue ${index}: max size ${maxSize} is not 1..${MAX_QUEUE_SIZE}`, index);
    }
    this.index = index;
    this.maxSize = maxSize;
    this.size = maxSize;
  }

  get active(): boolean {
    return this.ring !== undefined;
  }
  get features(): QueueFeatures | undefined {
    return this.feats;
  }

  private fail(code: ConstructorParameters<typeof VirtqueueError>[0], msg: string): never {
    throw new VirtqueueError(code, `queue ${this.index}: ${msg}`, this.index);
  }

  /**
   * Check the driver's configuration and bind the rings in guest memory. Split rings need a
   * power-of-two size; both formats need the alignments of §2.7.1 / §2.8.10.1 and every ring
   * part wholly inside guest RAM.
   */
  activate(mem: GuestMemory, features: QueueFeatures): void {
    this.ring = undefined;
    this.feats = undefined;
    if (!this.ready) this.fail("VIRTQ_NOT_READY", "not ready");
    const n = this.size;
    if (!Number.isInteger(n) || n < 1 || n > this.maxSize) this.fail("VIRTQ_INVALID_SIZE", `size ${n} is not 1..${this.maxSize}`);
    if (features.packed) {
      if (this.descTable % 16 !== 0 || this.driverArea % 4 !== 0 || this.deviceArea % 4 !== 0) {
        this.fail("VIRTQ_MISALIGNED", "packed ring parts must be 16/4/4-byte aligned");
      }
      const ring = new RingMemory(sliceGuest(mem, this.descTable, packedRingSize(n), this.index, "descriptor ring"));
      const drv = new RingMemory(sliceGuest(mem, this.driverArea, EVENT_SIZE, this.index, "driver event suppression"));
      const dev = new RingMemory(sliceGuest(mem, this.deviceArea, EVENT_SIZE, this.index, "device event suppression"));
      this.ring = new PackedRing(mem, this.index, n, ring, drv, dev, features.eventIdx, features.indirect);
    } else {
      if ((n & (n - 1)) !== 0) this.fail("VIRTQ_INVALID_SIZE", `split queue size ${n} is not a power of two`);
      if (this.descTable % 16 !== 0 || this.driverArea % 2 !== 0 || this.deviceArea % 4 !== 0) {
        this.fail("VIRTQ_MISALIGNED", "split ring parts must be 16/2/4-byte aligned");
      }
      const desc = sliceGuest(mem, this.descTable, splitDescTableSize(n), this.index, "descriptor table");
      const avail = new RingMemory(sliceGuest(mem, this.driverArea, splitAvailSize(n), this.index, "available ring"));
      const used = new RingMemory(sliceGuest(mem, this.deviceArea, splitUsedSize(n), this.index, "used ring"));
      this.ring = new SplitRing(mem, this.index, n, desc, avail, used, features.eventIdx, features.indirect);
    }
    this.feats = { packed: features.packed, eventIdx: features.eventIdx, indirect: features.indirect };
  }

  private get r(): SplitRing | PackedRing {
    const r = this.ring;
    if (r === undefined) this.fail("VIRTQ_NOT_READY", "not activated");
    return r;
  }

  /** Take the next available chain, validated, or null when the driver has offered none. */
  pop(): DescriptorChain | null {
    return this.r.pop();
  }
  hasAvailable(): boolean {
    return this.r.hasAvailable();
  }
  /** Return a chain to the driver with `len` bytes written into its writable part. */
  addUsed(token: UsedToken, len: number): void {
    const r = this.r;
    if (r instanceof SplitRing) r.addUsed(token.id, len);
    else r.addUsed(token.id, len, token.slots);
  }
  /** After one or more addUsed: does the driver want an interrupt now (event idx / NO_INTERRUPT)? */
  needsNotification(): boolean {
    return this.r.needsNotification();
  }
  /** Ask for available-buffer notifications again; true when buffers arrived meanwhile (process them). */
  enableNotification(): boolean {
    return this.r.enableNotification();
  }
  disableNotification(): void {
    this.r.disableNotification();
  }
  /** A mark of the avail side, for a device that pops several chains and may have to put them back. */
  checkpoint(): QueueCheckpoint {
    const r = this.r;
    return r instanceof SplitRing
      ? { nextAvail: r.nextAvail, availWrap: true, inFlightSlots: 0 }
      : { nextAvail: r.nextAvail, availWrap: r.availWrap, inFlightSlots: r.inFlightSlots };
  }
  /** Un-pop every chain taken since `cp` (none of them may have been returned with addUsed). */
  rewind(cp: QueueCheckpoint): void {
    const r = this.r;
    r.nextAvail = cp.nextAvail;
    if (r instanceof PackedRing) {
      r.availWrap = cp.availWrap;
      r.inFlightSlots = cp.inFlightSlots;
    }
  }

  /** Chains taken with pop and not yet returned (split: chains; packed: ring slots). */
  inFlight(): number {
    const r = this.r;
    return r instanceof SplitRing ? r.inFlight() : r.inFlightSlots;
  }

  /** Back to the power-on state (§2.1: a reset clears every queue). */
  reset(): void {
    this.size = this.maxSize;
    this.ready = false;
    this.descTable = 0;
    this.driverArea = 0;
    this.deviceArea = 0;
    this.ring = undefined;
    this.feats = undefined;
  }

  saveState(): QueueState {
    const r = this.ring;
    return {
      maxSize: this.maxSize,
      size: this.size,
      ready: this.ready,
      descTable: this.descTable,
      driverArea: this.driverArea,
      deviceArea: this.deviceArea,
      active:
        r === undefined || this.feats === undefined
          ? null
          : {
              features: { ...this.feats },
              nextAvail: r.nextAvail,
              nextUsed: r.nextUsed,
              availWrap: r instanceof PackedRing ? r.availWrap : true,
              usedWrap: r instanceof PackedRing ? r.usedWrap : true,
              signalledUsed: r instanceof SplitRing ? r.signalledUsed : 0,
              usedSinceSignal: r instanceof PackedRing ? r.usedSinceSignal : 0,
              inFlightSlots: r instanceof PackedRing ? r.inFlightSlots : 0,
            },
    };
  }

  /** Restore a saved state; an active queue is re-bound to `mem` (its rings re-validated). */
  restoreState(s: QueueState, mem: GuestMemory): void {
    if (s.maxSize !== this.maxSize) this.fail("VIRTQ_BAD_STATE", `saved max size ${s.maxSize} != ${this.maxSize}`);
    this.reset();
    this.size = s.size;
    this.ready = s.ready;
    this.descTable = s.descTable;
    this.driverArea = s.driverArea;
    this.deviceArea = s.deviceArea;
    const a = s.active;
    if (a === null) return;
    this.activate(mem, a.features);
    const r = this.r;
    const u16 = (v: number): boolean => Number.isInteger(v) && v >= 0 && v <= 0xffff;
    if (!u16(a.nextAvail) || !u16(a.nextUsed)) this.fail("VIRTQ_BAD_STATE", "saved ring indexes are not u16");
    if (r instanceof SplitRing) {
      r.nextAvail = a.nextAvail;
      r.nextUsed = a.nextUsed;
      if (!u16(a.signalledUsed)) this.fail("VIRTQ_BAD_STATE", "saved signalled index is not u16");
      r.signalledUsed = a.signalledUsed;
      if (r.inFlight() > r.size) this.fail("VIRTQ_BAD_STATE", "saved indexes are further apart than the queue size");
    } else {
      if (a.nextAvail >= r.size || a.nextUsed >= r.size || a.inFlightSlots > r.size) this.fail("VIRTQ_BAD_STATE", "saved packed positions exceed the ring");
      r.nextAvail = a.nextAvail;
      r.nextUsed = a.nextUsed;
      r.availWrap = a.availWrap;
      r.usedWrap = a.usedWrap;
      r.usedSinceSignal = a.usedSinceSignal;
      r.inFlightSlots = a.inFlightSlots;
    }
  }
}
