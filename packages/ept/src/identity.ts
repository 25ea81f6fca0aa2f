import type { GuestMemory } from "@tsvmm/abi";
import { TableAllocator } from "./allocator.js";
import { type PageSize, toBigAddress } from "./bits.js";
import { EptError } from "./errors.js";
import { PagingTables } from "./tables.js";

export interface IdentityMapOptions {
  /** Bytes of guest-physical memory to map from 0 (a multiple of 4 KiB). */
  size: number | bigint;
  /** A canonical virtual address where [0, size) is mapped a second time (e.g. 0xffff800000000000n). */
  highAlias?: number | bigint;
  /** 4 (default) or 5 (the guest must set CR4.LA57). */
  levels?: 4 | 5;
  /** Largest page to use; default 2 MiB, so the guest needs no 1 GiB-page support. */
  pageSize?: PageSize;
  /** Map the pages user-accessible (U/S = 1), for guests that run code at CPL3. Default false. */
  user?: boolean;
  /** Bytes the allocator may use from `allocatorBase`; default: exactly what the map needs. */
  allocatorSize?: number;
}

/** Table pages needed to map [0, size) once with pages no larger than `page`, for `levels`. */
function tablesNeeded(size: number, page: number, levels: number): number {
  let n = 0;
  let span = page * 512;
  for (let level = page === 4096 ? 1 : page === 0x200000 ? 2 : 3; level < levels; level++) {
    n += Math.ceil(size / span);
    span *= 512;
  }
  return n;
}

/**
 * Build IA-32e tables that identity-map [0, size) (writable, executable, supervisor unless
 * `user`) and optionally alias it at `highAlias`; the tables are taken from the pages at
 * `allocatorBase`. Returns the CR3 value (PWT = PCD = 0) to load with CR0.PG, CR4.PAE and EFER.LME.
 */
export function buildIdentityMap(memory: GuestMemory, allocatorBase: number | bigint, options: IdentityMapOptions): bigint {
  const size = Number(toBigAddress("size", options.size));
  const levels = options.levels ?? 4;
  const pageSize = options.pageSize ?? 0x200000;
  if (pageSize !== 4096 && pageSize !== 0x200000 && pageSize !== 0x40000000) {
    throw new EptError("EPT_PAGE_SIZE_UNSUPPORTED", `page size ${String(pageSize)} is not 4 KiB, 2 MiB or 1 GiB`);
  }
  // Each copy may straddle one extra table per level, plus the shared root.
  const allocator = new TableAllocator(memory, allocatorBase, identityMapFootprint(options));
  const tables = new PagingTables(memory, allocator, { levels, pages1G: pageSize === 0x40000000 });
  const attrs = { write: true, user: options.user ?? false, execute: true };
  tables.map(0, 0, size, attrs);
  if (options.highAlias !== undefined) tables.map(options.highAlias, 0, size, attrs);
  return tables.cr3();
}

/**
 * Bytes `buildIdentityMap` will write from its allocator base for these options: a loader can
 * reserve the real footprint before anything is written.
 */
export function identityMapFootprint(options: Pick<IdentityMapOptions, "size" | "highAlias" | "levels" | "pageSize" | "allocatorSize">): number {
  if (options.allocatorSize !== undefined) return options.allocatorSize;
  const size = Number(toBigAddress("size", options.size));
  const levels = options.levels ?? 4;
  const pageSize = options.pageSize ?? 0x200000;
  const copies = options.highAlias === undefined ? 1 : 2;
  return (1 + copies * (tablesNeeded(size, pageSize, levels) + levels)) * 4096;
}

/**
 * The identity map as a loader's page-table builder (elf-loader's `PageTableBuilder` shape, kept
 * structural so neither package depends on the other): what bootLinux and the vmm use, so there
 * is one identity-map builder in the project.
 */
export function identityPageTables(options: { user?: boolean } = {}): {
  buildIdentityMap(memory: GuestMemory, tablesBase: number, size: bigint): bigint;
  footprint(size: bigint): number;
} {
  const user = options.user ?? false;
  return {
    buildIdentityMap: (memory, tablesBase, size) => buildIdentityMap(memory, tablesBase, { size, user }),
    footprint: (size) => identityMapFootprint({ size }),
  };
}
