import { accessFromSvmAttrib, CR0, CR4, EFER as EFER_ARCH, EXCEPTION_VECTOR, RFLAGS, type SegmentAccess, SVM_ATTRIB, svmAttribFromAccess } from "@tsvmm/abi";

/**
 * Named bits and enumerations of the VMCB fields (AMD64 APM vol. 2 chapter 15 and appendix B) and
 * AMD's own bits of the architectural registers the VMRUN checks read (APM vol. 2 chapter 3); the
 * bits Intel and AMD share come from @tsvmm/abi and are re-exported here under their old names.
 */

/** Control-area word 00Ch (`control.interceptMisc1`), APM table B-1. */
export const INTERCEPT_MISC1 = {
  INTR: 1 << 0,
  NMI: 1 << 1,
  SMI: 1 << 2,
  INIT: 1 << 3,
  VINTR: 1 << 4,
  /** Writes of CR0 that change bits other than CR0.TS or CR0.MP. */
  CR0_SEL_WRITE: 1 << 5,
  IDTR_READ: 1 << 6,
  GDTR_READ: 1 << 7,
  LDTR_READ: 1 << 8,
  TR_READ: 1 << 9,
  IDTR_WRITE: 1 << 10,
  GDTR_WRITE: 1 << 11,
  LDTR_WRITE: 1 << 12,
  TR_WRITE: 1 << 13,
  RDTSC: 1 << 14,
  RDPMC: 1 << 15,
  PUSHF: 1 << 16,
  POPF: 1 << 17,
  CPUID: 1 << 18,
  RSM: 1 << 19,
  IRET: 1 << 20,
  INTN: 1 << 21,
  INVD: 1 << 22,
  PAUSE: 1 << 23,
  HLT: 1 << 24,
  INVLPG: 1 << 25,
  INVLPGA: 1 << 26,
  /** IN/OUT accesses checked against the I/O permissions map. */
  IOIO_PROT: 1 << 27,
  /** RDMSR/WRMSR checked against the MSR permissions map. */
  MSR_PROT: 1 << 28,
  TASK_SWITCH: 1 << 29,
  FERR_FREEZE: 1 << 30,
  SHUTDOWN: 2 ** 31,
} as const;

/** Control-area word 010h (`control.interceptMisc2`). */
export const INTERCEPT_MISC2 = {
  /** Must be 1: VMRUN fails with VMEXIT_INVALID otherwise (APM §15.5.1). */
  VMRUN: 1 << 0,
  VMMCALL: 1 << 1,
  VMLOAD: 1 << 2,
  VMSAVE: 1 << 3,
  STGI: 1 << 4,
  CLGI: 1 << 5,
  SKINIT: 1 << 6,
  RDTSCP: 1 << 7,
  ICEBP: 1 << 8,
  WBINVD: 1 << 9,
  MONITOR: 1 << 10,
  MWAIT: 1 << 11,
  MWAIT_ARMED: 1 << 12,
  XSETBV: 1 << 13,
  RDPRU: 1 << 14,
  /** Trap after a write of EFER (SEV-ES). */
  EFER_WRITE_TRAP: 1 << 15,
  /** Bits 31:16: trap after a write of CR0–CR15 (SEV-ES); bit 16 + n is CRn. */
  CR_WRITE_TRAP_SHIFT: 16,
} as const;

/** Control-area word 014h (`control.interceptMisc3`), newer processors. */
export const INTERCEPT_MISC3 = {
  INVLPGB: 1 << 0,
  INVLPGB_ILLEGAL: 1 << 1,
  INVPCID: 1 << 2,
  MCOMMIT: 1 << 3,
  TLBSYNC: 1 << 4,
  BUS_LOCK: 1 << 5,
  IDLE_HLT: 1 << 6,
} as const;

/** Bit of CRn / DRn in the read (`interceptCrRead`/`interceptDrRead`) or write words. */
export const crIntercept = (n: number): number => 1 << n;

/** TLB_CONTROL (058h bits 39:32), APM §15.16. Encodings other than these are reserved. */
export const TLB_CONTROL = {
  DO_NOTHING: 0,
  FLUSH_ALL: 1,
  FLUSH_ASID: 3,
  FLUSH_ASID_NON_GLOBAL: 7,
} as const;
export type TlbControl = (typeof TLB_CONTROL)[keyof typeof TLB_CONTROL];

/** `control.intCtl` (060h bits 31:0): virtual interrupt control, APM §15.21 and §15.29. */
export const INT_CTL = {
  V_TPR_MASK: 0xff,
  V_IRQ: 1 << 8,
  /** Virtual GIF value (with V_GIF_ENABLE). */
  VGIF: 1 << 9,
  V_NMI_PENDING: 1 << 11,
  V_NMI_BLOCKING: 1 << 12,
  V_INTR_PRIO_SHIFT: 16,
  V_INTR_PRIO_MASK: 0xf << 16,
  V_IGN_TPR: 1 << 20,
  V_INTR_MASKING: 1 << 24,
  V_GIF_ENABLE: 1 << 25,
  V_NMI_ENABLE: 1 << 26,
  X2AVIC_ENABLE: 1 << 30,
  AVIC_ENABLE: 2 ** 31,
} as const;

/** `control.intState` (068h). */
export const INT_STATE = {
  INTERRUPT_SHADOW: 1n << 0n,
  /** RFLAGS.IF of the guest as seen by the host (SEV-ES guests). */
  GUEST_INTERRUPT_MASK: 1n << 1n,
} as const;

/** `control.nestedCtl` (090h), APM §15.25 and §15.34. */
export const NESTED_CTL = {
  NP_ENABLE: 1n << 0n,
  SEV_ENABLE: 1n << 1n,
  SEV_ES_ENABLE: 1n << 2n,
  /** Guest-mode execute trap. */
  GMET: 1n << 3n,
  /** Supervisor shadow-stack check. */
  SSS_CHECK: 1n << 4n,
  /** Virtual transparent encryption. */
  VTE: 1n << 5n,
  /** Read-only guest page tables. */
  RO_GPT: 1n << 6n,
  /** INVLPGB/TLBSYNC enable. */
  INVLPGB_TLBSYNC: 1n << 7n,
} as const;

/** `control.virtExt` (0B8h). */
export const VIRT_EXT = {
  LBR_VIRTUALIZATION: 1n << 0n,
  VIRTUAL_VMLOAD_VMSAVE: 1n << 1n,
  VIRTUAL_IBS: 1n << 2n,
} as const;

/** VMCB clean bits (0C0h), APM §15.15.3: a set bit tells the CPU it may keep its cached copy. */
export const VMCB_CLEAN = {
  /** Intercepts, TSC offset, pause filter count. */
  I: 1 << 0,
  /** IOPM_BASE, MSRPM_BASE. */
  IOPM: 1 << 1,
  /** ASID. */
  ASID: 1 << 2,
  /** V_TPR, V_IRQ, V_INTR_PRIO, V_IGN_TPR, V_INTR_MASKING, V_INTR_VECTOR. */
  TPR: 1 << 3,
  /** NP_ENABLE, nCR3, gPAT. */
  NP: 1 << 4,
  /** CR0, CR3, CR4, EFER. */
  CRX: 1 << 5,
  /** DR6, DR7. */
  DRX: 1 << 6,
  /** GDT/IDT base and limit. */
  DT: 1 << 7,
  /** CS, DS, SS, ES base, selector, limit, attributes; CPL. */
  SEG: 1 << 8,
  CR2: 1 << 9,
  /** DbgCtlMsr, br_from/to, lastint_from/to. */
  LBR: 1 << 10,
  /** AVIC APIC_BAR, backing page, logical and physical tables. */
  AVIC: 1 << 11,
  /** S_CET, SSP, ISST_ADDR. */
  CET: 1 << 12,
} as const;

/** Event type of EVENTINJ and EXITINTINFO (bits 10:8), APM §15.20. 1 and 5–7 are reserved. */
export const EVENT_TYPE = {
  INTR: 0,
  NMI: 2,
  EXCEPTION: 3,
  SOFTWARE_INT: 4,
} as const;
export type EventType = (typeof EVENT_TYPE)[keyof typeof EVENT_TYPE];

/** EVENTINJ / EXITINTINFO bit layout: vector 7:0, type 10:8, EV 11, V 31, error code 63:32. */
export const EVENT = {
  VECTOR_MASK: 0xffn,
  TYPE_SHIFT: 8n,
  TYPE_MASK: 7n << 8n,
  ERROR_CODE_VALID: 1n << 11n,
  /** Bits 30:12. */
  RESERVED_MASK: 0x7fff_f000n,
  VALID: 1n << 31n,
  ERROR_CODE_SHIFT: 32n,
} as const;

export interface EventInfo {
  vector: number;
  type: number;
  errorCodeValid: boolean;
  valid: boolean;
  errorCode: number;
}

/** Pack an EVENTINJ/EXITINTINFO value. */
export function encodeEvent(e: { vector: number; type: number; errorCode?: number; valid?: boolean }): bigint {
  let v = BigInt(e.vector & 0xff) | (BigInt(e.type & 7) << EVENT.TYPE_SHIFT);
  if (e.errorCode !== undefined) v |= EVENT.ERROR_CODE_VALID | (BigInt(e.errorCode >>> 0) << EVENT.ERROR_CODE_SHIFT);
  if (e.valid !== false) v |= EVENT.VALID;
  return v;
}

/** Unpack an EVENTINJ/EXITINTINFO value. */
export function decodeEvent(v: bigint): EventInfo {
  return {
    vector: Number(v & EVENT.VECTOR_MASK),
    type: Number((v & EVENT.TYPE_MASK) >> EVENT.TYPE_SHIFT),
    errorCodeValid: (v & EVENT.ERROR_CODE_VALID) !== 0n,
    valid: (v & EVENT.VALID) !== 0n,
    errorCode: Number((v >> EVENT.ERROR_CODE_SHIFT) & 0xffff_ffffn),
  };
}

/**
 * Exception vectors (APM vol. 2 table 8-1): the architectural ones from abi, the APM's name #XF
 * for vector 19 (the SDM's #XM) and AMD's own #HV, #VC and #SX.
 */
export const VECTOR = {
  ...EXCEPTION_VECTOR,
  XF: 19,
  HV: 28,
  VC: 29,
  SX: 30,
} as const;

/** Segment attribute field of the save area (12 bits: descriptor bits 47:40 and 55:52), APM §15.5. */
export const ATTRIB = SVM_ATTRIB;

/** The save area's attributes of a segment: abi's SegmentAccess without "unusable", which SVM lacks. */
export type SegmentAttributes = Omit<SegmentAccess, "unusable">;

export function packAttrib(a: SegmentAttributes): number {
  return svmAttribFromAccess({ ...a, unusable: 0 });
}

export function unpackAttrib(v: number): SegmentAttributes {
  const { unusable: _, ...a } = accessFromSvmAttrib(v);
  return a;
}

/** CR0, CR4 and RFLAGS as both vendors define them: AMD has no CR4 bit of its own (APM vol. 2 §3.1). */
export { CR0, CR4, RFLAGS };

/** EFER (MSR C000_0080h), APM vol. 2 §3.1.7: the architectural bits plus AMD's own. */
export const EFER = {
  ...EFER_ARCH,
  SVME: 1n << 12n,
  LMSLE: 1n << 13n,
  FFXSR: 1n << 14n,
  TCE: 1n << 15n,
  MCOMMIT: 1n << 17n,
  INTWB: 1n << 18n,
  UAIE: 1n << 20n,
  AIBRSE: 1n << 21n,
} as const;

/** S_CET (APM vol. 2 §18.x): AMD implements the shadow-stack enables only. */
export const S_CET = {
  SH_STK_EN: 1n << 0n,
  WR_SHSTK_EN: 1n << 1n,
} as const;
