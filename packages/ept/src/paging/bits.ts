// IA-32e paging entry bits, SDM Vol. 3A §4.5 (Tables 4-15 … 4-20).
export const PG_PRESENT = 1 << 0;
export const PG_WRITE = 1 << 1;
export const PG_USER = 1 << 2;
export const PG_PWT = 1 << 3;
export const PG_PCD = 1 << 4;
export const PG_ACCESSED = 1 << 5;
/** Dirty (leaves only; ignored in tables). */
export const PG_DIRTY = 1 << 6;
/** Bit 7 of a PDPTE/PDE: page size. Reserved in PML4E/PML5E; PAT in a PTE. */
export const PG_PAGE_SIZE = 1 << 7;
export const PG_PAT_4K = 1 << 7;
/** Global (leaves only). */
export const PG_GLOBAL = 1 << 8;
/** PAT bit of a 2 MiB / 1 GiB leaf. */
export const PG_PAT_LARGE = 1 << 12;
// High word.
/** Bits 62:59: protection key (leaves only). */
export const PG_HI_PKEY_SHIFT = 27;
/** Bit 63: execute-disable (reserved unless IA32_EFER.NXE). */
export const PG_HI_XD = (1 << 31) >>> 0;
