export { TableAllocator } from "./allocator.js";
export type { Level, PageSize } from "./bits.js";
export {
  decodeEptEntry,
  type EptAccessBits,
  type EptEntry,
  type EptEntryEnv,
  type EptEntryInput,
  type EptEntryProblem,
  EptMemoryType,
  type EptPageEntry,
  type EptTableEntry,
  encodeEptEntry,
  eptEntryProblems,
  eptPageSize,
  isEptLeaf,
  isEptMemoryType,
  isEptPresent,
  LEVEL_NAMES,
} from "./ept/entries.js";
export {
  decodeEptp,
  type Eptp,
  type EptpInput,
  type EptpProblem,
  type EptpProblemCode,
  EptVpidCap,
  encodeEptp,
  validateEptp,
} from "./ept/eptp.js";
export { EptError, type EptErrorCode } from "./errors.js";
export {
  Access,
  EptFormat,
  type EptFormatOptions,
  type EptPageAttributes,
  Ia32eFormat,
  PagingFormat,
  type PagingFormatOptions,
  type PagingPageAttributes,
} from "./format.js";
export { buildIdentityMap, type IdentityMapOptions, identityMapFootprint, identityPageTables } from "./identity.js";
export {
  decodePagingEntry,
  encodePagingEntry,
  isPagingLeaf,
  type PagingCommonBits,
  type PagingEntry,
  type PagingEntryEnv,
  type PagingEntryInput,
  type PagingPageEntry,
  type PagingTableEntry,
  pagingEntryHasReservedBits,
} from "./paging/entries.js";
export { type DerivedSlot, type SlotDerivation, toMemorySlots } from "./slots.js";
export {
  type AccessType,
  EptTables,
  Fault,
  type FaultReason,
  type MapOptions,
  type Mapping,
  PageTables,
  PagingTables,
  type TablePage,
  type Translation,
  type WalkStep,
} from "./tables.js";
