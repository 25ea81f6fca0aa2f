import type { GuestMemory } from "@tsvmm/abi";
import { hex, toBigAddress } from "./bits.js";
import { EptError } from "./errors.js";

/**
 * Hands out zeroed 4 KiB pages for paging structures from one range of guest-physical memory,
 * and takes them back. Freed pages are reused before untouched ones.
 */
export class TableAllocator {
  readonly memory: GuestMemory;
  readonly base: number;
  readonly size: number;
  readonly capacity: number;
  private bump = 0;
  private readonly freeList: number[] = [];
  private readonly live = new Set<number>();

  constructor(memory: GuestMemory, base: number | bigint, size: number | bigint) {
    const b = toBigAddress("allocator base", base);
    const s = toBigAddress("allocator size", size);
    if (b % 4096n !== 0n || s % 4096n !== 0n || s === 0n) {
      throw new EptError("EPT_ALLOCATOR_REGION", `allocator region ${hex(b)}+${hex(s)} must be non-empty and 4 KiB aligned`);
    }
    if (b + s > BigInt(Number.MAX_SAFE_INTEGER) || !memory.contains(Number(b), Number(s))) {
      throw new EptError("EPT_ALLOCATOR_REGION", `allocator region ${hex(b)}+${hex(s)} is not wholly inside one guest-memory region`);
    }
    this.memory = memory;
    this.base = Number(b);
    this.size = Number(s);
    this.capacity = this.size / 4096;
  }

  /** Pages currently handed out. */
  get used(): number {
    return this.live.size;
  }

  /** Pages that can still be handed out. */
  get available(): number {
    return this.capacity - this.live.size;
  }

  /** A zeroed page's guest-physical address. */
  alloc(): number {
    let page = this.freeList.pop();
    if (page === undefined) {
      if (this.bump >= this.capacity) {
        throw new EptError("EPT_ALLOCATOR_EXHAUSTED", `page-table allocator at ${hex(this.base)} is full (${this.capacity} pages)`);
      }
      page = this.base + this.bump * 4096;
      this.bump++;
    }
    this.memory.fill(page, 4096, 0);
    this.live.add(page);
    return page;
  }

  free(page: number): void {
    if (!this.live.delete(page)) {
      throw new EptError("EPT_ALLOCATOR_BAD_FREE", `page ${hex(page)} was not handed out by this allocator (or is already free)`);
    }
    this.freeList.push(page);
  }

  /** True when `page` is currently handed out by this allocator. */
  owns(page: number): boolean {
    return this.live.has(page);
  }

  /** Every page handed out, ascending. */
  allocatedPages(): number[] {
    return [...this.live].sort((a, b) => a - b);
  }
}
