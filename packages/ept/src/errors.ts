import { TsvmmError } from "@tsvmm/abi";

/** Every error code `@tsvmm/ept` throws. Stable: programs may switch on them. */
export type EptErrorCode =
  /** An argument has the wrong type or is out of its domain (level, MAXPHYADDR, protection key, …). */
  | "EPT_INVALID_ARGUMENT"
  /** An address or size is not a multiple of 4 KiB or of the requested page size. */
  | "EPT_MISALIGNED"
  /** An input address lies outside what the tables translate (non-canonical, or past the walk width). */
  | "EPT_ADDRESS_OUT_OF_RANGE"
  /** A physical address (page frame or table) lies at or past 2^MAXPHYADDR. */
  | "EPT_BEYOND_MAXPHYADDR"
  /** `map` over a range that already holds a mapping. */
  | "EPT_OVERLAP"
  /** `protect`/`split` on a range or address that is not mapped. */
  | "EPT_NOT_MAPPED"
  /** A range cuts through a 2 MiB or 1 GiB page; split it first. */
  | "EPT_PARTIAL_LARGE_PAGE"
  /** The requested page size is not allowed by the format's options (or is not 4K/2M/1G). */
  | "EPT_PAGE_SIZE_UNSUPPORTED"
  /** `split` on an address mapped by a 4 KiB page. */
  | "EPT_NOT_LARGE_PAGE"
  /** `toMemorySlots` on EPT tables that are not an identity map (output address ≠ input). */
  | "EPT_NOT_IDENTITY"
  /** The allocator's region is misaligned, empty, or not wholly inside one guest-memory region. */
  | "EPT_ALLOCATOR_REGION"
  /** The allocator has no free page left. */
  | "EPT_ALLOCATOR_EXHAUSTED"
  /** `free` of a page the allocator did not hand out (or already freed). */
  | "EPT_ALLOCATOR_BAD_FREE"
  /** A table page (the root or one an entry points to) is not backed by guest memory. */
  | "EPT_TABLE_OUTSIDE_MEMORY"
  /** An entry to encode is inconsistent: a leaf at PML4/PML5, a reserved memory type, a bad field. */
  | "EPT_INVALID_ENTRY"
  /** The tables being modified hold an entry with reserved bits set (they were not built by us). */
  | "EPT_CORRUPT_TABLE";

export class EptError extends TsvmmError<EptErrorCode> {}
