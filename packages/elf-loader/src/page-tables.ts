import type { GuestMemory } from "@tsvmm/abi";
import { BootError, hex } from "./errors.js";

/**
 * Builds IA-32e page tables that map guest-physical addresses 1:1. Injected so this pure package
 * need not depend on `@tsvmm/ept`; `footprint` lets the loader check the tables' room up front.
 */
export interface PageTableBuilder {
  /** Write tables at `tablesBase` mapping `[0, size)` 1:1; return the CR3 value. */
  buildIdentityMap(memory: GuestMemory, tablesBase: number, size: bigint): bigint;
  /** Bytes the tables for `size` occupy from `tablesBase`, if known. */
  footprint?(size: bigint): number;
}

const GIB = 1n << 30n;
const PAGE = 4096;
const MAX_SIZE = 512n * GIB; // one PML4 entry

/** The built-in builder: one PML4, one PDPT, and one page directory of 2 MiB pages per GiB. */
export const identityMap2M: PageTableBuilder = {
  footprint(size: bigint): number {
    return PAGE * (2 + Number((size + GIB - 1n) / GIB));
  },
  buildIdentityMap(memory: GuestMemory, tablesBase: number, size: bigint): bigint {
    if (size <= 0n || size > MAX_SIZE) throw new BootError("BOOT_BAD_OPTION", `identity map size ${hex(size)} is not in 1..512 GiB`);
    if (tablesBase % PAGE !== 0) throw new BootError("BOOT_BAD_OPTION", `page tables base ${hex(tablesBase)} is not 4 KiB aligned`);
    const gibs = Number((size + GIB - 1n) / GIB);
    const t = Buffer.alloc(PAGE * (2 + gibs));
    // Plain-number arithmetic: entries are below 2^52, and bigint per entry is needlessly slow.
    const put = (off: number, value: number) => {
      t.writeUInt32LE(value % 2 ** 32, off);
      t.writeUInt32LE(Math.floor(value / 2 ** 32), off + 4);
    };
    put(0, tablesBase + PAGE + 0x3); // present, writable
    for (let g = 0; g < gibs; g++) {
      const pd = tablesBase + PAGE * (2 + g);
      put(PAGE + g * 8, pd + 0x3);
      for (let j = 0; j < 512; j++) put(PAGE * (2 + g) + j * 8, g * 2 ** 30 + j * 2 ** 21 + 0x83); // present, writable, 2 MiB page
    }
    memory.write(tablesBase, t);
    return BigInt(tablesBase);
  },
};
