import type { GuestMemory } from "@tsvmm/abi";
import { hex } from "./bits.js";
import { EptError } from "./errors.js";

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
// Off-heap like every real view, so the walker sees one kind of typed array.
const EMPTY = new Uint32Array(new ArrayBuffer(4096), 0, 0);

/**
 * 32-bit word access to paging-structure pages. Each guest-memory region is sliced once through
 * GuestMemory (so bounds are checked there) and viewed as a Uint32Array, which keeps the table
 * walk free of BigInt and of per-access bounds lookups. An entry is two words: low, then high.
 */
export class TableMemory {
  /** Words of the region holding the page last passed to {@link page}. */
  words: Uint32Array = EMPTY;
  /** Bounds of the region {@link words} views; read by the walker to skip a call per level. */
  curBase = 0;
  curEnd = 0;
  // Word offsets are computed with >>> 2 (keeping them small integers for the JIT) unless the
  // region is larger than 4 GiB.
  curSmall = true;
  /**
   * For `walkQuick` (walk-fast.ts): the largest page offset in the current region when the whole region
   * lies below 4 GiB (so table addresses stay 32-bit integers), else -1.
   */
  quickSpan = -1;
  private readonly views = new Map<number, Uint32Array>();

  constructor(readonly memory: GuestMemory) {}

  /**
   * Index in {@link words} of the first word of the 4 KiB page at `addr`, or -1 when that page
   * is not wholly inside one guest-memory region.
   */
  page(addr: number): number {
    if (addr >= this.curBase && addr + 4096 <= this.curEnd) {
      return this.curSmall ? (addr - this.curBase) >>> 2 : (addr - this.curBase) / 4;
    }
    return this.switchTo(addr);
  }

  private switchTo(addr: number): number {
    if (!Number.isSafeInteger(addr) || addr < 0) return -1;
    for (const r of this.memory.regions) {
      if (addr >= r.base && addr + 4096 <= r.base + r.size) {
        let words = this.views.get(r.base);
        if (words === undefined) {
          const buf = this.memory.slice(r.base, r.size);
          if (!LITTLE_ENDIAN || buf.byteOffset % 4 !== 0) {
            throw new EptError(
              "EPT_INVALID_ARGUMENT",
              `guest-memory region at ${hex(r.base)} cannot hold page tables here: its buffer is not 4-byte aligned or the host is big-endian`,
            );
          }
          words = new Uint32Array(buf.buffer, buf.byteOffset, Math.floor(buf.length / 4));
          this.views.set(r.base, words);
        }
        this.words = words;
        this.curBase = r.base;
        this.curEnd = r.base + r.size;
        this.curSmall = r.size <= 2 ** 32;
        this.quickSpan = r.base + r.size <= 2 ** 32 ? r.size - 4096 : -1;
        return (addr - r.base) / 4;
      }
    }
    return -1;
  }
}
