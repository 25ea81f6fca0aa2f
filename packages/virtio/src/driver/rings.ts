import type { GuestMemory } from "@tsvmm/abi";
import {
  VRING_AVAIL_F_NO_INTERRUPT,
  VRING_DESC_F_INDIRECT,
  VRING_DESC_F_NEXT,
  VRING_DESC_F_WRITE,
  VRING_PACKED_DESC_F_AVAIL,
  VRING_PACKED_DESC_F_USED,
  VRING_PACKED_EVENT_FLAG_DESC,
  VRING_PACKED_EVENT_FLAG_DISABLE,
  VRING_PACKED_EVENT_FLAG_ENABLE,
  VRING_USED_F_NO_NOTIFY,
} from "../constants.js";
import {
  AVAIL_FLAGS,
  AVAIL_IDX,
  AVAIL_RING,
  DESC_ADDR,
  DESC_FLAGS,
  DESC_LEN,
  DESC_NEXT,
  DESC_SIZE,
  EVENT_FLAGS,
  EVENT_OFF_WRAP,
  EVENT_SIZE,
  PDESC_ADDR,
  PDESC_FLAGS,
  PDESC_ID,
  PDESC_LEN,
  PDESC_SIZE,
  packedRingSize,
  splitAvailSize,
  splitDescTableSize,
  splitUsedSize,
  USED_ELEM_ID,
  USED_ELEM_LEN,
  USED_ELEM_SIZE,
  USED_FLAGS,
  USED_IDX,
  USED_RING,
} from "../layouts.js";

/**
 * The guest's half of a virtqueue, for tests and benchmarks: it plays the driver of virtio 1.2
 * §2.7 / §2.8 (writes descriptors and the available side, reads the used side). It is written
 * from the driver's sections of the spec, independently of the device-side `Queue`, so each
 * checks the other.
 */

/** One buffer element the driver offers: `addr`/`len` in guest memory, device-writable or not. */
export interface DriverElement {
  readonly addr: number;
  readonly len: number;
  readonly writable: boolean;
}

/** A completed buffer as the driver reads it from the used side. */
export interface UsedBuffer {
  /** The value `add` returned for this buffer. */
  readonly token: number;
  readonly len: number;
  readonly elements: readonly DriverElement[];
}

/** A bump allocator over a window of guest memory. */
export class GuestHeap {
  private next: number;
  constructor(
    readonly base: number,
    readonly size: number,
  ) {
    this.next = base;
  }
  alloc(len: number, align = 16): number {
    const a = Math.ceil(this.next / align) * align;
    if (a + len > this.base + this.size) throw new RangeError(`guest heap exhausted (${len} bytes wanted)`);
    this.next = a + len;
    return a;
  }
  /** Forget every allocation (the caller knows none is in use). */
  clear(): void {
    this.next = this.base;
  }
  get used(): number {
    return this.next - this.base;
  }
}

export interface DriverQueue {
  readonly format: "split" | "packed";
  readonly size: number;
  readonly descTable: number;
  readonly driverArea: number;
  readonly deviceArea: number;
  /** Free ring entries (split: descriptors; packed: slots). */
  readonly freeSlots: number;
  /** Offer a buffer; `indirect` puts its elements in a table in `heap`. Returns its token, or -1 when the ring is full. */
  add(elements: readonly DriverElement[], opts?: { indirect?: boolean }): number;
  /** Collect what the device returned since the last call. */
  takeUsed(): UsedBuffer[];
  /** Does the device want a notification for the buffers added since the last call (event idx / NO_NOTIFY)? */
  kickNeeded(): boolean;
  /** Ask for no used-buffer interrupts, or for one (with event idx: when `after` more are used). */
  setInterrupts(on: boolean, after?: number): void;
}

const u16 = (v: number): number => v & 0xffff;

export class DriverSplitQueue implements DriverQueue {
  readonly format = "split" as const;
  readonly descTable: number;
  readonly driverArea: number;
  readonly deviceArea: number;
  private free: number[] = [];
  private availIdx = 0;
  private lastUsed = 0;
  private kickedAt = 0;
  private readonly chains = new Map<number, { descs: number[]; elements: readonly DriverElement[] }>();

  constructor(
    private readonly mem: GuestMemory,
    private readonly heap: GuestHeap,
    readonly size: number,
    private readonly eventIdx = false,
  ) {
    this.descTable = heap.alloc(splitDescTableSize(size), 16);
    this.driverArea = heap.alloc(splitAvailSize(size), 2);
    this.deviceArea = heap.alloc(splitUsedSize(size), 4);
    mem.fill(this.descTable, splitDescTableSize(size), 0);
    mem.fill(this.driverArea, splitAvailSize(size), 0);
    mem.fill(this.deviceArea, splitUsedSize(size), 0);
    for (let i = size - 1; i >= 0; i--) this.free.push(i);
  }

  get freeSlots(): number {
    return this.free.length;
  }

  private writeDesc(base: number, i: number, e: DriverElement, flags: number, next: number): void {
    const o = base + i * DESC_SIZE;
    this.mem.writeU64(o + DESC_ADDR, e.addr);
    this.mem.writeU32(o + DESC_LEN, e.len);
    this.mem.writeU16(o + DESC_FLAGS, flags);
    this.mem.writeU16(o + DESC_NEXT, next);
  }

  add(elements: readonly DriverElement[], opts: { indirect?: boolean } = {}): number {
    const need = opts.indirect ? 1 : elements.length;
    if (need === 0 || this.free.length < need) return -1;
    const descs = this.free.splice(this.free.length - need, need);
    if (opts.indirect) {
      const table = this.heap.alloc(elements.length * DESC_SIZE, 16);
      elements.forEach((e, i) => {
        this.writeDesc(table, i, e, (e.writable ? VRING_DESC_F_WRITE : 0) | (i + 1 < elements.length ? VRING_DESC_F_NEXT : 0), i + 1 < elements.length ? i + 1 : 0);
      });
      this.writeDesc(this.descTable, descs[0]!, { addr: table, len: elements.length * DESC_SIZE, writable: false }, VRING_DESC_F_INDIRECT, 0);
    } else {
      elements.forEach((e, i) => {
        const last = i + 1 === elements.length;
        this.writeDesc(this.descTable, descs[i]!, e, (e.writable ? VRING_DESC_F_WRITE : 0) | (last ? 0 : VRING_DESC_F_NEXT), last ? 0 : descs[i + 1]!);
      });
    }
    const head = descs[0]!;
    this.chains.set(head, { descs, elements });
    this.mem.writeU16(this.driverArea + AVAIL_RING + 2 * (this.availIdx % this.size), head);
    this.availIdx = u16(this.availIdx + 1);
    this.mem.writeU16(this.driverArea + AVAIL_IDX, this.availIdx);
    return head;
  }

  takeUsed(): UsedBuffer[] {
    const out: UsedBuffer[] = [];
    const usedIdx = this.mem.readU16(this.deviceArea + USED_IDX);
    while (this.lastUsed !== usedIdx) {
      const o = this.deviceArea + USED_RING + (this.lastUsed % this.size) * USED_ELEM_SIZE;
      const id = this.mem.readU32(o + USED_ELEM_ID);
      const len = this.mem.readU32(o + USED_ELEM_LEN);
      const c = this.chains.get(id);
      if (c === undefined) throw new Error(`device returned unknown head ${id}`);
      this.chains.delete(id);
      this.free.push(...c.descs);
      out.push({ token: id, len, elements: c.elements });
      this.lastUsed = u16(this.lastUsed + 1);
    }
    return out;
  }

  kickNeeded(): boolean {
    const old = this.kickedAt;
    const now = this.availIdx;
    this.kickedAt = now;
    if (this.eventIdx) {
      const availEvent = this.mem.readU16(this.deviceArea + USED_RING + USED_ELEM_SIZE * this.size);
      return u16(now - availEvent - 1) < u16(now - old);
    }
    return (this.mem.readU16(this.deviceArea + USED_FLAGS) & VRING_USED_F_NO_NOTIFY) === 0;
  }

  setInterrupts(on: boolean, after = 1): void {
    if (this.eventIdx) {
      // used_event = the used idx at which we want to hear; "off" parks it half a ring away.
      this.mem.writeU16(this.driverArea + AVAIL_RING + 2 * this.size, u16(on ? this.lastUsed + after - 1 : this.lastUsed - 0x8000));
    } else this.mem.writeU16(this.driverArea + AVAIL_FLAGS, on ? 0 : VRING_AVAIL_F_NO_INTERRUPT);
  }

  /** The raw avail idx the driver published (for tests that corrupt it). */
  get availIndex(): number {
    return this.availIdx;
  }
}

const F_AVAIL = 1 << VRING_PACKED_DESC_F_AVAIL;
const F_USED = 1 << VRING_PACKED_DESC_F_USED;

export class DriverPackedQueue implements DriverQueue {
  readonly format = "packed" as const;
  readonly descTable: number;
  readonly driverArea: number;
  readonly deviceArea: number;
  private pos = 0;
  private wrap = true;
  private usedPos = 0;
  private usedWrap = true;
  private freeCount: number;
  private ids: number[] = [];
  private kickFrom: { pos: number; wrap: boolean; count: number } = { pos: 0, wrap: true, count: 0 };
  private readonly chains = new Map<number, { slots: number; elements: readonly DriverElement[] }>();

  constructor(
    private readonly mem: GuestMemory,
    private readonly heap: GuestHeap,
    readonly size: number,
    private readonly eventIdx = false,
  ) {
    this.descTable = heap.alloc(packedRingSize(size), 16);
    this.driverArea = heap.alloc(EVENT_SIZE, 4);
    this.deviceArea = heap.alloc(EVENT_SIZE, 4);
    mem.fill(this.descTable, packedRingSize(size), 0);
    mem.fill(this.driverArea, EVENT_SIZE, 0);
    mem.fill(this.deviceArea, EVENT_SIZE, 0);
    this.freeCount = size;
    for (let i = size - 1; i >= 0; i--) this.ids.push(i);
  }

  get freeSlots(): number {
    return this.freeCount;
  }

  private writeDesc(base: number, slot: number, addr: number, len: number, id: number, flags: number): void {
    const o = base + slot * PDESC_SIZE;
    this.mem.writeU64(o + PDESC_ADDR, addr);
    this.mem.writeU32(o + PDESC_LEN, len);
    this.mem.writeU16(o + PDESC_ID, id);
    this.mem.writeU16(o + PDESC_FLAGS, flags);
  }

  private availBits(wrap: boolean): number {
    return wrap ? F_AVAIL : F_USED;
  }

  add(elements: readonly DriverElement[], opts: { indirect?: boolean } = {}): number {
    const slots = opts.indirect ? 1 : elements.length;
    if (slots === 0 || this.freeCount < slots || this.ids.length === 0) return -1;
    const id = this.ids.pop()!;
    const firstPos = this.pos;
    let firstFlags = 0;
    if (opts.indirect) {
      const table = this.heap.alloc(elements.length * PDESC_SIZE, 16);
      elements.forEach((e, i) => {
        this.writeDesc(table, i, e.addr, e.len, 0, e.writable ? VRING_DESC_F_WRITE : 0);
      });
      firstFlags = VRING_DESC_F_INDIRECT | this.availBits(this.wrap);
      this.writeDesc(this.descTable, this.pos, table, elements.length * PDESC_SIZE, id, 0);
      this.advance();
    } else {
      elements.forEach((e, i) => {
        const flags = (e.writable ? VRING_DESC_F_WRITE : 0) | (i + 1 < elements.length ? VRING_DESC_F_NEXT : 0) | this.availBits(this.wrap);
        // The first descriptor's flags are written last (§2.8.6), so the device never sees half a list.
        if (i === 0) firstFlags = flags;
        this.writeDesc(this.descTable, this.pos, e.addr, e.len, id, i === 0 ? (this.wrap ? F_USED : F_AVAIL) : flags);
        this.advance();
      });
    }
    this.mem.writeU16(this.descTable + firstPos * PDESC_SIZE + PDESC_FLAGS, firstFlags);
    this.freeCount -= slots;
    this.kickFrom.count += slots;
    this.chains.set(id, { slots, elements });
    return id;
  }

  private advance(): void {
    if (++this.pos === this.size) {
      this.pos = 0;
      this.wrap = !this.wrap;
    }
  }

  takeUsed(): UsedBuffer[] {
    const out: UsedBuffer[] = [];
    for (;;) {
      const o = this.descTable + this.usedPos * PDESC_SIZE;
      const flags = this.mem.readU16(o + PDESC_FLAGS);
      const a = (flags & F_AVAIL) !== 0;
      const u = (flags & F_USED) !== 0;
      if (a !== this.usedWrap || u !== this.usedWrap) break;
      const id = this.mem.readU16(o + PDESC_ID);
      const len = this.mem.readU32(o + PDESC_LEN);
      const c = this.chains.get(id);
      if (c === undefined) throw new Error(`device returned unknown buffer id ${id}`);
      this.chains.delete(id);
      this.ids.push(id);
      this.freeCount += c.slots;
      this.usedPos += c.slots;
      if (this.usedPos >= this.size) {
        this.usedPos -= this.size;
        this.usedWrap = !this.usedWrap;
      }
      out.push({ token: id, len, elements: c.elements });
    }
    return out;
  }

  kickNeeded(): boolean {
    const from = this.kickFrom;
    this.kickFrom = { pos: this.pos, wrap: this.wrap, count: 0 };
    const flags = this.mem.readU16(this.deviceArea + EVENT_FLAGS) & 3;
    if (flags === VRING_PACKED_EVENT_FLAG_DISABLE) return false;
    if (flags !== VRING_PACKED_EVENT_FLAG_DESC || !this.eventIdx) return true;
    if (from.count >= this.size) return true;
    const offWrap = this.mem.readU16(this.deviceArea + EVENT_OFF_WRAP);
    let ev = offWrap & 0x7fff;
    if (offWrap >>> 15 !== (this.wrap ? 1 : 0)) ev -= this.size;
    return u16(this.pos - ev - 1) < from.count;
  }

  setInterrupts(on: boolean, after = 1): void {
    if (!on) {
      this.mem.writeU16(this.driverArea + EVENT_FLAGS, VRING_PACKED_EVENT_FLAG_DISABLE);
      return;
    }
    if (this.eventIdx) {
      // Walk `after - 1` slots of outstanding buffers is driver bookkeeping we do not keep; use the slot position instead.
      let p = this.usedPos + after - 1;
      let w = this.usedWrap;
      while (p >= this.size) {
        p -= this.size;
        w = !w;
      }
      this.mem.writeU16(this.driverArea + EVENT_OFF_WRAP, p | ((w ? 1 : 0) << 15));
      this.mem.writeU16(this.driverArea + EVENT_FLAGS, VRING_PACKED_EVENT_FLAG_DESC);
    } else this.mem.writeU16(this.driverArea + EVENT_FLAGS, VRING_PACKED_EVENT_FLAG_ENABLE);
  }
}
