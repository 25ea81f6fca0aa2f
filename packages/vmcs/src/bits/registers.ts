/** Architectural register bits the checks rely on (SDM Vol. 3A §2.5, §4.1, §2.2.1). */

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
  VMXE: 1n << 13n,
  SMXE: 1n << 14n,
  FSGSBASE: 1n << 16n,
  PCIDE: 1n << 17n,
  OSXSAVE: 1n << 18n,
  KL: 1n << 19n,
  SMEP: 1n << 20n,
  SMAP: 1n << 21n,
  PKE: 1n << 22n,
  CET: 1n << 23n,
  PKS: 1n << 24n,
  UINTR: 1n << 25n,
  LASS: 1n << 27n,
  LAM_SUP: 1n << 28n,
  FRED: 1n << 32n,
} as const;

export const EFER = {
  SCE: 1n << 0n,
  LME: 1n << 8n,
  LMA: 1n << 10n,
  NXE: 1n << 11n,
} as const;

/** EFER bits Intel CPUs define; every other bit is reserved on Intel 64. */
export const EFER_DEFINED = EFER.SCE | EFER.LME | EFER.LMA | EFER.NXE;

export const RFLAGS = {
  CF: 1n << 0n,
  FIXED1: 1n << 1n,
  PF: 1n << 2n,
  AF: 1n << 4n,
  ZF: 1n << 6n,
  SF: 1n << 7n,
  TF: 1n << 8n,
  IF: 1n << 9n,
  DF: 1n << 10n,
  OF: 1n << 11n,
  IOPL_MASK: 3n << 12n,
  NT: 1n << 14n,
  RF: 1n << 16n,
  VM: 1n << 17n,
  AC: 1n << 18n,
  VIF: 1n << 19n,
  VIP: 1n << 20n,
  ID: 1n << 21n,
} as const;

/** RFLAGS bits that must be 0 at VM entry: 63:22, 15, 5, 3 (SDM §26.3.1.4). */
export const RFLAGS_RESERVED = ~((1n << 22n) - 1n) & 0xffff_ffff_ffff_ffffn | (1n << 15n) | (1n << 5n) | (1n << 3n);

export const DEBUGCTL = {
  LBR: 1n << 0n,
  BTF: 1n << 1n,
  BUS_LOCK_DETECT: 1n << 2n,
  TR: 1n << 6n,
  BTS: 1n << 7n,
  BTINT: 1n << 8n,
  BTS_OFF_OS: 1n << 9n,
  BTS_OFF_USR: 1n << 10n,
  FREEZE_LBRS_ON_PMI: 1n << 11n,
  FREEZE_PERFMON_ON_PMI: 1n << 12n,
  ENABLE_UNCORE_PMI: 1n << 13n,
  FREEZE_WHILE_SMM: 1n << 14n,
  RTM_DEBUG: 1n << 15n,
} as const;
