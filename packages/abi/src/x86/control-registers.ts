// The control-register and EFER bits that Intel (SDM Vol. 3A §2.5, §2.2.1) and AMD (APM Vol. 2
// §3.1) define alike. A bit only one vendor defines (CR4.VMXE, CR4.FRED, EFER.SVME, ...) is not
// here: it belongs to the package that models that vendor (vmcs, svm), which extends these.

/** CR0: every defined bit is the same on both vendors. */
export const CR0 = {
  PE: 1n << 0n,
  MP: 1n << 1n,
  EM: 1n << 2n,
  TS: 1n << 3n,
  ET: 1n << 4n,
  NE: 1n << 5n,
  WP: 1n << 16n,
  AM: 1n << 18n,
  NW: 1n << 29n,
  CD: 1n << 30n,
  PG: 1n << 31n,
} as const;

/**
 * CR0 bits 63:32 are must-be-zero on both vendors (MOV to CR0 faults, VMRUN and VM entry
 * refuse them). The reserved bits below 32 are not: they are ignored on write, so no mask of
 * them is declared.
 */
export const CR0_MBZ = 0xffff_ffff_0000_0000n;

/** CR3 bits other than the table base. */
export const CR3 = {
  /** Page-level write-through of the top-level table (CR4.PCIDE = 0). */
  PWT: 1n << 3n,
  /** Page-level cache disable of the top-level table (CR4.PCIDE = 0). */
  PCD: 1n << 4n,
  /** Process-context identifier, bits 11:0 (CR4.PCIDE = 1). */
  PCID_MASK: 0xfffn,
  /** Bit 63 of a MOV-to-CR3 source: keep the new PCID's TLB entries. Never held in CR3 itself. */
  PCID_NOFLUSH: 1n << 63n,
} as const;

/** CR4 bits both vendors define. Every other bit is reserved on AMD; Intel defines more. */
export const CR4 = {
  VME: 1n << 0n,
  PVI: 1n << 1n,
  TSD: 1n << 2n,
  DE: 1n << 3n,
  PSE: 1n << 4n,
  PAE: 1n << 5n,
  MCE: 1n << 6n,
  PGE: 1n << 7n,
  PCE: 1n << 8n,
  OSFXSR: 1n << 9n,
  OSXMMEXCPT: 1n << 10n,
  UMIP: 1n << 11n,
  LA57: 1n << 12n,
  FSGSBASE: 1n << 16n,
  PCIDE: 1n << 17n,
  OSXSAVE: 1n << 18n,
  SMEP: 1n << 20n,
  SMAP: 1n << 21n,
  PKE: 1n << 22n,
  CET: 1n << 23n,
} as const;

/** CR8: the task-priority class, bits 3:0; the rest is reserved on both vendors. */
export const CR8_TPR_MASK = 0xfn;

/**
 * EFER (MSR C000_0080h) bits both vendors define. These four are every bit Intel 64 has; AMD
 * adds SVME, LMSLE, FFXSR, TCE and more, which the svm package declares.
 */
export const EFER = {
  SCE: 1n << 0n,
  LME: 1n << 8n,
  LMA: 1n << 10n,
  NXE: 1n << 11n,
} as const;
