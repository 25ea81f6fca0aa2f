import type { GuestMemory } from "@tsvmm/abi";

/**
 * Builds IA-32e page tables that map guest-physical addresses 1:1. Injected so this pure package
 * need not depend on `@tsvmm/ept`, whose `identityPageTables()` is the project's one builder;
 * `footprint` lets the loader reserve the tables' real room before anything is written.
 */
export interface PageTableBuilder {
  /** Write tables at `tablesBase` mapping `[0, size)` 1:1; return the CR3 value. */
  buildIdentityMap(memory: GuestMemory, tablesBase: number, size: bigint): bigint;
  /** Bytes the tables for `size` occupy from `tablesBase`, if known. */
  footprint?(size: bigint): number;
}
