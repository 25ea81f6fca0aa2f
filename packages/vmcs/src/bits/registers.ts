import { CR0, CR4 as CR4_ARCH, EFER, RFLAGS, RFLAGS_RESERVED } from "@tsvmm/abi";

/**
 * Architectural register bits the checks rely on (SDM Vol. 3A §2.5, §4.1, §2.2.1). The bits Intel
 * and AMD define alike come from @tsvmm/abi and are re-exported here under their old names; CR4
 * adds the bits only Intel defines. RFLAGS_RESERVED: bits 63:22, 15, 5, 3, which must be 0 at VM
 * entry (SDM §26.3.1.4).
 */
export { CR0, EFER, RFLAGS, RFLAGS_RESERVED };

export const CR4 = {
  ...CR4_ARCH,
  VMXE: 1n << 13n,
  SMXE: 1n << 14n,
  KL: 1n << 19n,
  PKS: 1n << 24n,
  UINTR: 1n << 25n,
  LASS: 1n << 27n,
  LAM_SUP: 1n << 28n,
  FRED: 1n << 32n,
} as const;

/** EFER bits Intel CPUs define (all of them architectural); every other bit is reserved on Intel 64. */
export const EFER_DEFINED = EFER.SCE | EFER.LME | EFER.LMA | EFER.NXE;

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
