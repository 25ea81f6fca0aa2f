import type { GuestMemory } from "@tsvmm/abi";
import {
  VRING_DESC_F_INDIRECT,
  VRING_DESC_F_NEXT,
  VRING_DESC_F_WRITE,
  VRING_PACKED_DESC_F_AVAIL,
  VRING_PACKED_DESC_F_USED,
  VRING_PACKED_EVENT_F_WRAP_CTR,
  VRING_PACKED_EVENT_FLAG_DESC,
  VRING_PACKED_EVENT_FLAG_DISABLE,
  VRING_PACKED_EVENT_FLAG_ENABLE,
} from "../constants.js";
import { VirtqueueError } from "../errors.js";
import { EVENT_FLAGS, EVENT_OFF_WRAP, PDESC_ADDR, PDESC_FLAGS, PDESC_ID, PDESC_LEN, PDESC_SIZE, readAddr } from "../layouts.js";
import { ChainBuilder, type DescriptorChain, RegionCache, sliceGuest } from "./chain.js";
import { fence, type RingMemory } from "./ring-memory.js";
import { MAX_INDIRECT_DESCRIPTORS } from "./split.js";

const F_AVAIL = 1 << VRING_PACKED_DESC_F_AVAIL;
const F_USED = 1 << VRING_PACKED_DESC_F_USED;

/** The device side of a packed virtqueue (virtio 1.2 §2.8). Wrap counters start at 1 (true). */
export class PackedRing {
  nextAvail = 0;
  availWrap = true;
  nextUsed = 0;
  usedWrap = true;
  /** Ring slots used since the last needsNotification. */
  usedSinceSignal = 0;
  /** Ring slots taken by chains not yet returned. */
  inFlightSlots = 0;

  constructor(
    private readonly mem: GuestMemory,
    readonly index: number,
    readonly size: number,
    private readonly ring: RingMemory,
    private readonly driverEvent: RingMemory,
    private readonly deviceEvent: RingMemory,
    private readonly eventIdx: boolean,
    private readonly indirect: boolean,
  ) {
    this.builder = new ChainBuilder(mem, index, new RegionCache(mem));
  }
  private readonly builder: ChainBuilder;

  private err(code: ConstructorParameters<typeof VirtqueueError>[0], msg: string): VirtqueueError {
    return new VirtqueueError(code, `queue ${this.index}: ${msg}`, this.index);
  }

  hasAvailable(): boolean {
    const flags = this.ring.load16(this.nextAvail * PDESC_SIZE + PDESC_FLAGS);
    const avail = (flags & F_AVAIL) !== 0;
    const used = (flags & F_USED) !== 0;
    return avail === this.availWrap && used !== this.availWrap;
  }

  pop(): DescriptorChain | null {
    if (!this.hasAvailable()) return null;
    // More chains than slots in flight means the driver re-offered a slot we still own.
    const b = this.builder.reset();
    const ring = this.ring.buf;
    let pos = this.nextAvail;
    let wrap = this.availWrap;
    let count = 0;
    let id = 0;
    for (;;) {
      const off = pos * PDESC_SIZE;
      const addr = readAddr(ring, off + PDESC_ADDR);
      const len = ring.readUInt32LE(off + PDESC_LEN);
      const flags = ring.readUInt16LE(off + PDESC_FLAGS);
      id = ring.readUInt16LE(off + PDESC_ID);
      count++;
      if (++pos === this.size) {
        pos = 0;
        wrap = !wrap;
      }
      if (flags & VRING_DESC_F_INDIRECT) {
        if (!this.indirect) throw this.err("VIRTQ_INDIRECT_NOT_NEGOTIATED", "indirect descriptor without VIRTIO_F_INDIRECT_DESC");
        if (flags & VRING_DESC_F_NEXT) throw this.err("VIRTQ_INDIRECT_WITH_NEXT", "indirect descriptor with NEXT set");
        // §2.8: a list holds descriptors of one type only, so an indirect one stands alone.
        if (count > 1) throw this.err("VIRTQ_INDIRECT_IN_CHAIN", "indirect descriptor inside a chain");
        if (len === 0 || len % PDESC_SIZE !== 0 || len / PDESC_SIZE > MAX_INDIRECT_DESCRIPTORS) {
          throw this.err("VIRTQ_INDIRECT_BAD_LENGTH", `indirect table of ${len} bytes`);
        }
        const table = sliceGuest(this.mem, addr, len, this.index, "indirect table");
        for (let o = 0; o < len; o += PDESC_SIZE) {
          const f = table.readUInt16LE(o + PDESC_FLAGS);
          // Only WRITE is meaningful in a table (§2.8.7); a table entry claiming INDIRECT is a nested table.
          if (f & VRING_DESC_F_INDIRECT) throw this.err("VIRTQ_NESTED_INDIRECT", "indirect descriptor inside an indirect table");
          b.push(readAddr(table, o + PDESC_ADDR), table.readUInt32LE(o + PDESC_LEN), (f & VRING_DESC_F_WRITE) !== 0);
        }
        break;
      }
      b.push(addr, len, (flags & VRING_DESC_F_WRITE) !== 0);
      if (!(flags & VRING_DESC_F_NEXT)) break;
      if (count >= this.size) throw this.err("VIRTQ_CHAIN_TOO_LONG", `chain longer than the ${this.size}-entry ring`);
    }
    if (this.inFlightSlots + count > this.size) throw this.err("VIRTQ_USED_OVERFLOW", "driver offered slots the device has not returned");
    this.nextAvail = pos;
    this.availWrap = wrap;
    this.inFlightSlots += count;
    // The buffer id is carried by the last descriptor of the list (§2.8.6).
    return b.build(id, count);
  }

  addUsed(id: number, len: number, slots: number): void {
    if (!Number.isInteger(id) || id < 0 || id > 0xffff) throw this.err("VIRTQ_BAD_STATE", `buffer id ${id} is not a u16`);
    if (!Number.isInteger(slots) || slots < 1 || slots > this.inFlightSlots) {
      throw this.err("VIRTQ_USED_OVERFLOW", `returning ${slots} slots with ${this.inFlightSlots} in flight`);
    }
    const off = this.nextUsed * PDESC_SIZE;
    const ring = this.ring.buf;
    ring.writeUInt16LE(id, off + PDESC_ID);
    ring.writeUInt32LE(len >>> 0, off + PDESC_LEN);
    let flags = this.usedWrap ? F_AVAIL | F_USED : 0;
    if (len > 0) flags |= VRING_DESC_F_WRITE;
    // id/len stores are ordered before this flags store on x86 (TSO); the driver polls the flags.
    this.ring.store16(off + PDESC_FLAGS, flags);
    this.nextUsed += slots;
    if (this.nextUsed >= this.size) {
      this.nextUsed -= this.size;
      this.usedWrap = !this.usedWrap;
    }
    this.inFlightSlots -= slots;
    this.usedSinceSignal += slots;
  }

  needsNotification(): boolean {
    fence();
    const count = this.usedSinceSignal;
    this.usedSinceSignal = 0;
    const flags = this.driverEvent.load16(EVENT_FLAGS) & 3;
    if (flags === VRING_PACKED_EVENT_FLAG_DISABLE) return false;
    if (flags !== VRING_PACKED_EVENT_FLAG_DESC || !this.eventIdx) return true;
    if (count >= this.size) return true;
    const offWrap = this.driverEvent.load16(EVENT_OFF_WRAP);
    let event = offWrap & 0x7fff;
    // An event position in the previous lap of the ring counts as `size` slots behind.
    if (offWrap >>> VRING_PACKED_EVENT_F_WRAP_CTR !== (this.usedWrap ? 1 : 0)) event -= this.size;
    const now = this.nextUsed;
    return ((now - event - 1) & 0xffff) < count;
  }

  enableNotification(): boolean {
    if (this.eventIdx) {
      this.deviceEvent.store16(EVENT_OFF_WRAP, this.nextAvail | ((this.availWrap ? 1 : 0) << VRING_PACKED_EVENT_F_WRAP_CTR));
      this.deviceEvent.store16(EVENT_FLAGS, VRING_PACKED_EVENT_FLAG_DESC);
    } else this.deviceEvent.store16(EVENT_FLAGS, VRING_PACKED_EVENT_FLAG_ENABLE);
    fence();
    return this.hasAvailable();
  }

  disableNotification(): void {
    this.deviceEvent.store16(EVENT_FLAGS, VRING_PACKED_EVENT_FLAG_DISABLE);
  }
}
