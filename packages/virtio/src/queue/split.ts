import { endianness } from "node:os";
import type { GuestMemory } from "@tsvmm/abi";
import { VRING_AVAIL_F_NO_INTERRUPT, VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE, VRING_USED_F_NO_NOTIFY } from "../constants.js";
import { VirtqueueError } from "../errors.js";
import {
  AVAIL_FLAGS,
  AVAIL_IDX,
  AVAIL_RING,
  DESC_ADDR,
  DESC_FLAGS,
  DESC_LEN,
  DESC_NEXT,
  DESC_SIZE,
  readAddr,
  USED_ELEM_ID,
  USED_ELEM_LEN,
  USED_ELEM_SIZE,
  USED_FLAGS,
  USED_IDX,
  USED_RING,
} from "../layouts.js";
import { ChainBuilder, type DescriptorChain, RegionCache, sliceGuest } from "./chain.js";
import { fence, type RingMemory } from "./ring-memory.js";

const LITTLE = endianness() === "LE";
const ADDR_LO = DESC_ADDR >>> 2;
const ADDR_HI = ADDR_LO + 1;
const LEN32 = DESC_LEN >>> 2;
const FLAGS16 = DESC_FLAGS >>> 1;
const NEXT16 = DESC_NEXT >>> 1;
const DESC32 = DESC_SIZE >>> 2;
const DESC16 = DESC_SIZE >>> 1;

/** Indirect tables larger than this are refused: 64 KiB of descriptors is more than any driver uses. */
export const MAX_INDIRECT_DESCRIPTORS = 4096;

/** The device side of a split virtqueue (virtio 1.2 §2.7). */
export class SplitRing {
  nextAvail = 0;
  nextUsed = 0;
  /** used idx at the last needsNotification (activation counts as one: nothing was used before it). */
  signalledUsed = 0;

  constructor(
    private readonly mem: GuestMemory,
    readonly index: number,
    readonly size: number,
    private readonly desc: Buffer,
    private readonly avail: RingMemory,
    private readonly used: RingMemory,
    private readonly eventIdx: boolean,
    private readonly indirect: boolean,
  ) {
    // The ring's own table read through typed views (little-endian host, aligned): no per-field Buffer call.
    const fast = LITTLE && desc.byteOffset % 4 === 0;
    this.d32 = fast ? new Uint32Array(desc.buffer, desc.byteOffset, desc.length >>> 2) : undefined;
    this.d16 = fast ? new Uint16Array(desc.buffer, desc.byteOffset, desc.length >>> 1) : undefined;
    const ub = used.buf;
    this.u32 = LITTLE && ub.byteOffset % 4 === 0 ? new Uint32Array(ub.buffer, ub.byteOffset, ub.length >>> 2) : undefined;
    this.builder = new ChainBuilder(mem, index, new RegionCache(mem));
  }
  /** The used ring as u32 words (aligned little-endian host): an element is two word stores. */
  private readonly u32: Uint32Array | undefined;
  private readonly builder: ChainBuilder;
  private readonly d32: Uint32Array | undefined;
  private readonly d16: Uint16Array | undefined;

  private err(code: ConstructorParameters<typeof VirtqueueError>[0], msg: string): VirtqueueError {
    return new VirtqueueError(code, `queue ${this.index}: ${msg}`, this.index);
  }

  /** Driver's avail idx minus ours; a value above the queue size is a driver bug. */
  private pending(): number {
    const n = (this.avail.load16(AVAIL_IDX) - this.nextAvail) & 0xffff;
    if (n > this.size) throw this.err("VIRTQ_AVAIL_INDEX_JUMP", `avail idx is ${n} entries ahead of a ${this.size}-entry queue`);
    return n;
  }

  hasAvailable(): boolean {
    return this.pending() > 0;
  }

  pop(): DescriptorChain | null {
    if (this.pending() === 0) return null;
    const head = this.avail.read16(AVAIL_RING + 2 * (this.nextAvail % this.size));
    if (head >= this.size) throw this.err("VIRTQ_HEAD_OUT_OF_RANGE", `chain head ${head} >= queue size ${this.size}`);
    const chain = this.walk(head);
    this.nextAvail = (this.nextAvail + 1) & 0xffff;
    return chain;
  }

  private walk(head: number): DescriptorChain {
    const b = this.builder.reset();
    let table = this.desc;
    let tableSize = this.size;
    let inIndirect = false;
    let idx = head;
    let count = 0;
    for (;;) {
      if (++count > tableSize) throw this.err("VIRTQ_CHAIN_TOO_LONG", `chain from ${head} has more than ${tableSize} descriptors (a loop?)`);
      let addr: number;
      let len: number;
      let flags: number;
      let next: number;
      const d32 = this.d32;
      const d16 = this.d16;
      if (!inIndirect && d32 !== undefined && d16 !== undefined) {
        const w = idx * DESC32;
        const hi = d32[w + ADDR_HI]!;
        // As readAddr: an address at or above 2^53 is no guest address.
        addr = hi >= 0x200000 ? -1 : hi * 0x1_0000_0000 + d32[w + ADDR_LO]!;
        len = d32[w + LEN32]!;
        const h = idx * DESC16;
        flags = d16[h + FLAGS16]!;
        next = d16[h + NEXT16]!;
      } else {
        const off = idx * DESC_SIZE;
        addr = readAddr(table, off + DESC_ADDR);
        len = table.readUInt32LE(off + DESC_LEN);
        flags = table.readUInt16LE(off + DESC_FLAGS);
        next = table.readUInt16LE(off + DESC_NEXT);
      }
      if (flags & VRING_DESC_F_INDIRECT) {
        // §2.7.5.3: one table per chain, never inside a table, never with NEXT; plain descriptors may precede it.
        if (!this.indirect) throw this.err("VIRTQ_INDIRECT_NOT_NEGOTIATED", "indirect descriptor without VIRTIO_F_INDIRECT_DESC");
        if (inIndirect) throw this.err("VIRTQ_NESTED_INDIRECT", "indirect descriptor inside an indirect table");
        if (flags & VRING_DESC_F_NEXT) throw this.err("VIRTQ_INDIRECT_WITH_NEXT", "indirect descriptor with NEXT set");
        if (len === 0 || len % DESC_SIZE !== 0 || len / DESC_SIZE > MAX_INDIRECT_DESCRIPTORS) {
          throw this.err("VIRTQ_INDIRECT_BAD_LENGTH", `indirect table of ${len} bytes`);
        }
        table = sliceGuest(this.mem, addr, len, this.index, "indirect table");
        tableSize = len / DESC_SIZE;
        inIndirect = true;
        idx = 0;
        count = 0;
        continue;
      }
      b.push(addr, len, (flags & VRING_DESC_F_WRITE) !== 0);
      if (!(flags & VRING_DESC_F_NEXT)) break;
      if (next >= tableSize) throw this.err("VIRTQ_NEXT_OUT_OF_RANGE", `next ${next} >= table size ${tableSize}`);
      idx = next;
    }
    return b.build(head, 1);
  }

  addUsed(id: number, len: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.size) throw this.err("VIRTQ_BAD_STATE", `used id ${id} is not a descriptor index`);
    if (((this.nextAvail - this.nextUsed) & 0xffff) === 0) throw this.err("VIRTQ_USED_OVERFLOW", "more used entries than chains taken");
    const off = USED_RING + (this.nextUsed % this.size) * USED_ELEM_SIZE;
    const u32 = this.u32;
    if (u32 !== undefined) {
      u32[(off + USED_ELEM_ID) >>> 2] = id;
      u32[(off + USED_ELEM_LEN) >>> 2] = len;
    } else {
      this.used.buf.writeUInt32LE(id >>> 0, off + USED_ELEM_ID);
      this.used.buf.writeUInt32LE(len >>> 0, off + USED_ELEM_LEN);
    }
    this.nextUsed = (this.nextUsed + 1) & 0xffff;
    // The element stores above are ordered before this index store on x86 (TSO).
    this.used.store16(USED_IDX, this.nextUsed);
  }

  needsNotification(): boolean {
    fence(); // our used idx store must be visible before we read the driver's used_event/flags
    if (this.eventIdx) {
      const usedEvent = this.avail.load16(AVAIL_RING + 2 * this.size);
      const old = this.signalledUsed;
      const now = this.nextUsed;
      this.signalledUsed = now;
      return ((now - usedEvent - 1) & 0xffff) < ((now - old) & 0xffff);
    }
    return (this.avail.load16(AVAIL_FLAGS) & VRING_AVAIL_F_NO_INTERRUPT) === 0;
  }

  enableNotification(): boolean {
    if (this.eventIdx) this.used.store16(USED_RING + USED_ELEM_SIZE * this.size, this.nextAvail);
    else this.used.store16(USED_FLAGS, 0);
    fence(); // publish, then re-check: a buffer added in between would otherwise sleep unnoticed
    return this.hasAvailable();
  }

  disableNotification(): void {
    if (!this.eventIdx) this.used.store16(USED_FLAGS, VRING_USED_F_NO_NOTIFY);
  }

  inFlight(): number {
    return (this.nextAvail - this.nextUsed) & 0xffff;
  }
}
