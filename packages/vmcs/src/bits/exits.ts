/** VM-exit reasons, exit-qualification formats and VM-instruction errors (SDM Vol. 3C ch. 27/28, §31.4, App. C). */

/** Basic exit reasons (bits 15:0 of the exit-reason field), SDM Appendix C. */
export const EXIT_REASON = {
  EXCEPTION_NMI: 0,
  EXTERNAL_INTERRUPT: 1,
  TRIPLE_FAULT: 2,
  INIT_SIGNAL: 3,
  SIPI_SIGNAL: 4,
  IO_SMI: 5,
  OTHER_SMI: 6,
  INTERRUPT_WINDOW: 7,
  NMI_WINDOW: 8,
  TASK_SWITCH: 9,
  CPUID: 10,
  GETSEC: 11,
  HLT: 12,
  INVD: 13,
  INVLPG: 14,
  RDPMC: 15,
  RDTSC: 16,
  RSM: 17,
  VMCALL: 18,
  VMCLEAR: 19,
  VMLAUNCH: 20,
  VMPTRLD: 21,
  VMPTRST: 22,
  VMREAD: 23,
  VMRESUME: 24,
  VMWRITE: 25,
  VMOFF: 26,
  VMON: 27,
  CR_ACCESS: 28,
  DR_ACCESS: 29,
  IO_INSTRUCTION: 30,
  MSR_READ: 31,
  MSR_WRITE: 32,
  INVALID_STATE: 33,
  MSR_LOAD_FAIL: 34,
  MWAIT_INSTRUCTION: 36,
  MONITOR_TRAP_FLAG: 37,
  MONITOR_INSTRUCTION: 39,
  PAUSE_INSTRUCTION: 40,
  MCE_DURING_VMENTRY: 41,
  TPR_BELOW_THRESHOLD: 43,
  APIC_ACCESS: 44,
  EOI_INDUCED: 45,
  GDTR_IDTR: 46,
  LDTR_TR: 47,
  EPT_VIOLATION: 48,
  EPT_MISCONFIG: 49,
  INVEPT: 50,
  RDTSCP: 51,
  PREEMPTION_TIMER: 52,
  INVVPID: 53,
  WBINVD: 54,
  XSETBV: 55,
  APIC_WRITE: 56,
  RDRAND: 57,
  INVPCID: 58,
  VMFUNC: 59,
  ENCLS: 60,
  RDSEED: 61,
  PML_FULL: 62,
  XSAVES: 63,
  XRSTORS: 64,
  SPP: 66,
  UMWAIT: 67,
  TPAUSE: 68,
  LOADIWKEY: 69,
  ENCLV: 70,
  ENQCMD_PASID_FAIL: 72,
  ENQCMDS_PASID_FAIL: 73,
  BUS_LOCK: 74,
  NOTIFY: 75,
  SEAMCALL: 76,
  TDCALL: 77,
} as const;

/** Flags in the upper bits of the exit-reason field. */
export const EXIT_REASON_FLAGS = {
  ENCLAVE_MODE: 1 << 27,
  PENDING_MTF: 1 << 28,
  FROM_VMX_ROOT: 1 << 29,
  VM_ENTRY_FAILURE: 2 ** 31,
} as const;

/** Exit qualification for I/O instructions (SDM Table 27-5 / 28-5). */
export const IO_QUAL = {
  SIZE_MASK: 0x7,
  DIRECTION_IN: 1 << 3,
  STRING: 1 << 4,
  REP: 1 << 5,
  OPERAND_IMMEDIATE: 1 << 6,
  PORT_SHIFT: 16,
} as const;

export interface IoQualification {
  port: number;
  /** 1, 2 or 4 bytes. */
  size: 1 | 2 | 4;
  direction: "in" | "out";
  string: boolean;
  rep: boolean;
  immediate: boolean;
}

/** Encode an I/O exit qualification. */
export function encodeIoQualification(q: IoQualification): bigint {
  const v =
    (q.size - 1) |
    (q.direction === "in" ? IO_QUAL.DIRECTION_IN : 0) |
    (q.string ? IO_QUAL.STRING : 0) |
    (q.rep ? IO_QUAL.REP : 0) |
    (q.immediate ? IO_QUAL.OPERAND_IMMEDIATE : 0);
  return BigInt(v) | (BigInt(q.port & 0xffff) << 16n);
}

/** Decode an I/O exit qualification (size field 0/1/3 → 1/2/4 bytes; other values decode as 1). */
export function decodeIoQualification(qual: bigint): IoQualification {
  const lo = Number(qual & 0xffffn);
  const s = lo & 7;
  return {
    port: Number((qual >> 16n) & 0xffffn),
    size: s === 1 ? 2 : s === 3 ? 4 : 1,
    direction: lo & IO_QUAL.DIRECTION_IN ? "in" : "out",
    string: (lo & IO_QUAL.STRING) !== 0,
    rep: (lo & IO_QUAL.REP) !== 0,
    immediate: (lo & IO_QUAL.OPERAND_IMMEDIATE) !== 0,
  };
}

/** Exit qualification for control-register accesses (SDM Table 27-3 / 28-3). */
export const CR_QUAL = {
  CR_MASK: 0xf,
  ACCESS_SHIFT: 4,
  ACCESS_MASK: 3 << 4,
  LMSW_MEMORY_OPERAND: 1 << 6,
  GPR_SHIFT: 8,
  GPR_MASK: 0xf << 8,
  LMSW_SOURCE_SHIFT: 16,
} as const;

export const CR_ACCESS_TYPE = {
  MOV_TO_CR: 0,
  MOV_FROM_CR: 1,
  CLTS: 2,
  LMSW: 3,
} as const;

export interface CrAccessQualification {
  cr: number;
  accessType: number;
  lmswMemoryOperand: boolean;
  gpr: number;
  lmswSource: number;
}

export function encodeCrAccessQualification(q: CrAccessQualification): bigint {
  const v =
    (q.cr & 0xf) |
    ((q.accessType & 3) << 4) |
    (q.lmswMemoryOperand ? CR_QUAL.LMSW_MEMORY_OPERAND : 0) |
    ((q.gpr & 0xf) << 8);
  return BigInt(v >>> 0) | (BigInt(q.lmswSource & 0xffff) << 16n);
}

export function decodeCrAccessQualification(qual: bigint): CrAccessQualification {
  const lo = Number(qual & 0xffffn);
  return {
    cr: lo & 0xf,
    accessType: (lo >>> 4) & 3,
    lmswMemoryOperand: (lo & CR_QUAL.LMSW_MEMORY_OPERAND) !== 0,
    gpr: (lo >>> 8) & 0xf,
    lmswSource: Number((qual >> 16n) & 0xffffn),
  };
}

/** Exit qualification for EPT violations (SDM Table 27-7 / 28-7). */
export const EPT_VIOLATION_QUAL = {
  READ: 1n << 0n,
  WRITE: 1n << 1n,
  INSTRUCTION_FETCH: 1n << 2n,
  READABLE: 1n << 3n,
  WRITABLE: 1n << 4n,
  EXECUTABLE: 1n << 5n,
  USER_EXECUTABLE: 1n << 6n,
  GLA_VALID: 1n << 7n,
  GLA_TRANSLATED: 1n << 8n,
  USER_MODE_LINEAR: 1n << 9n,
  READ_WRITE_PAGE: 1n << 10n,
  EXECUTE_DISABLE_PAGE: 1n << 11n,
  NMI_UNBLOCKING: 1n << 12n,
  SHADOW_STACK: 1n << 13n,
  SUPERVISOR_SHADOW_STACK: 1n << 14n,
  GUEST_PAGING_VERIFICATION: 1n << 15n,
  ASYNCHRONOUS: 1n << 16n,
} as const;

/** Exit qualification of a VM-entry failure (exit reason 33/34), SDM §26.8 / §27.8. */
export const ENTRY_FAILURE_QUAL = {
  DEFAULT: 0,
  PDPTE_LOAD: 2,
  NMI_INJECTION_STI_BLOCKING: 3,
  INVALID_VMCS_LINK_POINTER: 4,
} as const;

/** VM-instruction error numbers (SDM §31.4 "VM Instruction Error Numbers"). */
export const VM_INSTRUCTION_ERROR = {
  VMCALL_IN_VMX_ROOT: 1,
  VMCLEAR_INVALID_ADDRESS: 2,
  VMCLEAR_VMXON_POINTER: 3,
  VMLAUNCH_NONCLEAR_VMCS: 4,
  VMRESUME_NONLAUNCHED_VMCS: 5,
  VMRESUME_AFTER_VMXOFF: 6,
  ENTRY_INVALID_CONTROL_FIELD: 7,
  ENTRY_INVALID_HOST_STATE_FIELD: 8,
  VMPTRLD_INVALID_ADDRESS: 9,
  VMPTRLD_VMXON_POINTER: 10,
  VMPTRLD_INCORRECT_REVISION: 11,
  UNSUPPORTED_VMCS_COMPONENT: 12,
  VMWRITE_READ_ONLY_COMPONENT: 13,
  VMXON_IN_VMX_ROOT: 15,
  ENTRY_INVALID_EXECUTIVE_VMCS_POINTER: 16,
  ENTRY_NONLAUNCHED_EXECUTIVE_VMCS: 17,
  ENTRY_EXECUTIVE_VMCS_POINTER_NOT_VMXON: 18,
  VMCALL_NONCLEAR_VMCS: 19,
  VMCALL_INVALID_VM_EXIT_CONTROL: 20,
  VMCALL_INCORRECT_MSEG_REVISION: 22,
  VMXOFF_UNDER_DUAL_MONITOR: 23,
  VMCALL_INVALID_SMM_MONITOR_FEATURES: 24,
  ENTRY_INVALID_VM_EXECUTION_CONTROL_IN_EXECUTIVE_VMCS: 25,
  ENTRY_EVENTS_BLOCKED_BY_MOV_SS: 26,
  INVALID_OPERAND_TO_INVEPT_INVVPID: 28,
} as const;
