import { EXCEPTION_VECTOR } from "@tsvmm/abi";

/** Guest non-register state and event-injection formats (SDM Vol. 3C §24.4.2, §24.8.3). */

/** Guest interruptibility state (GUEST_INTERRUPTIBILITY_INFO). */
export const INTERRUPTIBILITY = {
  STI: 1 << 0,
  MOV_SS: 1 << 1,
  SMI: 1 << 2,
  NMI: 1 << 3,
  ENCLAVE_INTERRUPTION: 1 << 4,
} as const;

/** Guest activity state values (GUEST_ACTIVITY_STATE). */
export const ACTIVITY = {
  ACTIVE: 0,
  HLT: 1,
  SHUTDOWN: 2,
  WAIT_SIPI: 3,
} as const;

/** Interruption-information format (VM-entry, VM-exit and IDT-vectoring). */
export const INTR_INFO = {
  VECTOR_MASK: 0xff,
  TYPE_SHIFT: 8,
  TYPE_MASK: 7 << 8,
  DELIVER_ERROR_CODE: 1 << 11,
  /** VM-exit/IDT-vectoring: NMI unblocking due to IRET. */
  NMI_UNBLOCKING: 1 << 12,
  /** FRED: nested exception (VM-entry: only with type 3). */
  NESTED_EXCEPTION: 1 << 13,
  VALID: 2 ** 31,
} as const;

/** Interruption types (bits 10:8 of the interruption-information field). */
export const INTR_TYPE = {
  EXTERNAL_INTERRUPT: 0,
  RESERVED: 1,
  NMI: 2,
  HARDWARE_EXCEPTION: 3,
  SOFTWARE_INTERRUPT: 4,
  PRIVILEGED_SOFTWARE_EXCEPTION: 5,
  SOFTWARE_EXCEPTION: 6,
  OTHER_EVENT: 7,
} as const;

/** Exception vectors referenced by the checks: the architectural ones from abi and Intel's #VE. */
export const VECTOR = {
  ...EXCEPTION_VECTOR,
  VE: 20,
} as const;

/** Guest pending debug exceptions (GUEST_PENDING_DBG_EXCEPTIONS). */
export const PENDING_DBG = {
  B0_B3: 0xfn,
  ENABLED_BREAKPOINT: 1n << 12n,
  BS: 1n << 14n,
  RTM: 1n << 16n,
} as const;

/** Build a valid VM-entry interruption-information word. */
export function intrInfo(vector: number, type: number, deliverErrorCode = false): number {
  return ((vector & 0xff) | ((type & 7) << 8) | (deliverErrorCode ? INTR_INFO.DELIVER_ERROR_CODE : 0) | INTR_INFO.VALID) >>> 0;
}
