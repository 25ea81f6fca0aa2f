// EPT paging-structure entry bits, SDM Vol. 3C §29.3.2 (Tables 29-1 … 29-7 of the 2023+ SDM;
// §28.2.2 in older editions). Low-word bits are plain numbers; high-word bits are numbered
// from bit 32 so the walker can test them without BigInt.
export const EPT_READ = 1 << 0;
export const EPT_WRITE = 1 << 1;
/** Execute; with mode-based execute control (MBEC) it is supervisor-mode execute. */
export const EPT_EXECUTE = 1 << 2;
export const EPT_MEMTYPE_SHIFT = 3;
export const EPT_MEMTYPE_MASK = 7 << 3;
export const EPT_IGNORE_PAT = 1 << 6;
/** Bit 7 of a PDPTE/PDE: the entry maps a 1 GiB/2 MiB page. Reserved in PML4E/PML5E, ignored in a PTE. */
export const EPT_PAGE_SIZE = 1 << 7;
/** Accessed: meaningful only when EPTP bit 6 enables A/D flags. */
export const EPT_ACCESSED = 1 << 8;
/** Dirty (leaves only). */
export const EPT_DIRTY = 1 << 9;
/** User-mode execute (MBEC). */
export const EPT_USER_EXECUTE = 1 << 10;

// High word (bit n of the entry is bit n-32 here); all are leaf-only.
/** Bit 57: verify guest paging (HLAT "guest-paging verification"). */
export const EPT_HI_VERIFY_GUEST_PAGING = 1 << 25;
/** Bit 58: paging-write access. */
export const EPT_HI_PAGING_WRITE = 1 << 26;
/** Bit 60: supervisor shadow stack (with EPTP bit 7). */
export const EPT_HI_SUPERVISOR_SHADOW_STACK = 1 << 28;
/** Bit 61: sub-page write permissions (SPP). */
export const EPT_HI_SUB_PAGE_WRITE = 1 << 29;
/** Bit 63: suppress #VE. */
export const EPT_HI_SUPPRESS_VE = (1 << 31) >>> 0;
