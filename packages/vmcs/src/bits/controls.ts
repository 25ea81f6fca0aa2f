/** VM-execution, VM-exit and VM-entry control bits (SDM Vol. 3C §24.6–24.8 / §25.6–25.8). */

/** Pin-based VM-execution controls (PIN_BASED_VM_EXEC_CONTROL). */
export const PIN = {
  EXT_INTR_EXITING: 1 << 0,
  NMI_EXITING: 1 << 3,
  VIRTUAL_NMIS: 1 << 5,
  ACTIVATE_PREEMPTION_TIMER: 1 << 6,
  PROCESS_POSTED_INTR: 1 << 7,
} as const;

/** Primary processor-based VM-execution controls (CPU_BASED_VM_EXEC_CONTROL). */
export const PROC = {
  INTR_WINDOW_EXITING: 1 << 2,
  USE_TSC_OFFSETTING: 1 << 3,
  HLT_EXITING: 1 << 7,
  INVLPG_EXITING: 1 << 9,
  MWAIT_EXITING: 1 << 10,
  RDPMC_EXITING: 1 << 11,
  RDTSC_EXITING: 1 << 12,
  CR3_LOAD_EXITING: 1 << 15,
  CR3_STORE_EXITING: 1 << 16,
  ACTIVATE_TERTIARY_CONTROLS: 1 << 17,
  CR8_LOAD_EXITING: 1 << 19,
  CR8_STORE_EXITING: 1 << 20,
  USE_TPR_SHADOW: 1 << 21,
  NMI_WINDOW_EXITING: 1 << 22,
  MOV_DR_EXITING: 1 << 23,
  UNCOND_IO_EXITING: 1 << 24,
  USE_IO_BITMAPS: 1 << 25,
  MONITOR_TRAP_FLAG: 1 << 27,
  USE_MSR_BITMAPS: 1 << 28,
  MONITOR_EXITING: 1 << 29,
  PAUSE_EXITING: 1 << 30,
  ACTIVATE_SECONDARY_CONTROLS: 2 ** 31,
} as const;

/** Secondary processor-based VM-execution controls (SECONDARY_VM_EXEC_CONTROL). */
export const PROC2 = {
  VIRTUALIZE_APIC_ACCESSES: 1 << 0,
  ENABLE_EPT: 1 << 1,
  DESC_TABLE_EXITING: 1 << 2,
  ENABLE_RDTSCP: 1 << 3,
  VIRTUALIZE_X2APIC_MODE: 1 << 4,
  ENABLE_VPID: 1 << 5,
  WBINVD_EXITING: 1 << 6,
  UNRESTRICTED_GUEST: 1 << 7,
  APIC_REGISTER_VIRT: 1 << 8,
  VIRTUAL_INTR_DELIVERY: 1 << 9,
  PAUSE_LOOP_EXITING: 1 << 10,
  RDRAND_EXITING: 1 << 11,
  ENABLE_INVPCID: 1 << 12,
  ENABLE_VMFUNC: 1 << 13,
  VMCS_SHADOWING: 1 << 14,
  ENCLS_EXITING: 1 << 15,
  RDSEED_EXITING: 1 << 16,
  ENABLE_PML: 1 << 17,
  EPT_VIOLATION_VE: 1 << 18,
  CONCEAL_VMX_FROM_PT: 1 << 19,
  ENABLE_XSAVES: 1 << 20,
  PASID_TRANSLATION: 1 << 21,
  MODE_BASED_EPT_EXEC: 1 << 22,
  SUBPAGE_WRITE_PERMISSIONS: 1 << 23,
  PT_USE_GPA: 1 << 24,
  USE_TSC_SCALING: 1 << 25,
  ENABLE_USR_WAIT_PAUSE: 1 << 26,
  ENABLE_PCONFIG: 1 << 27,
  ENCLV_EXITING: 1 << 28,
  BUS_LOCK_DETECTION: 1 << 30,
  NOTIFY_VM_EXITING: 2 ** 31,
} as const;

/** Tertiary processor-based VM-execution controls (TERTIARY_VM_EXEC_CONTROL, 64-bit). */
export const PROC3 = {
  LOADIWKEY_EXITING: 1n << 0n,
  ENABLE_HLAT: 1n << 1n,
  EPT_PAGING_WRITE_CONTROL: 1n << 2n,
  GUEST_PAGING_VERIFICATION: 1n << 3n,
  IPI_VIRTUALIZATION: 1n << 4n,
  VIRTUALIZE_IA32_SPEC_CTRL: 1n << 7n,
} as const;

/** Primary VM-exit controls (VM_EXIT_CONTROLS). */
export const EXIT = {
  SAVE_DEBUG_CONTROLS: 1 << 2,
  HOST_ADDR_SPACE_SIZE: 1 << 9,
  LOAD_IA32_PERF_GLOBAL_CTRL: 1 << 12,
  ACK_INTR_ON_EXIT: 1 << 15,
  SAVE_IA32_PAT: 1 << 18,
  LOAD_IA32_PAT: 1 << 19,
  SAVE_IA32_EFER: 1 << 20,
  LOAD_IA32_EFER: 1 << 21,
  SAVE_VMX_PREEMPTION_TIMER: 1 << 22,
  CLEAR_IA32_BNDCFGS: 1 << 23,
  CONCEAL_VMX_FROM_PT: 1 << 24,
  CLEAR_IA32_RTIT_CTL: 1 << 25,
  CLEAR_IA32_LBR_CTL: 1 << 26,
  CLEAR_UINV: 1 << 27,
  LOAD_CET_STATE: 1 << 28,
  LOAD_PKRS: 1 << 29,
  SAVE_IA32_PERF_GLOBAL_CTRL: 1 << 30,
  ACTIVATE_SECONDARY_CONTROLS: 2 ** 31,
} as const;

/** Secondary VM-exit controls (SECONDARY_VM_EXIT_CONTROLS, 64-bit). */
export const EXIT2 = {
  SAVE_IA32_FRED: 1n << 1n,
  LOAD_IA32_FRED: 1n << 2n,
} as const;

/** VM-entry controls (VM_ENTRY_CONTROLS). */
export const ENTRY = {
  LOAD_DEBUG_CONTROLS: 1 << 2,
  IA32E_MODE_GUEST: 1 << 9,
  ENTRY_TO_SMM: 1 << 10,
  DEACTIVATE_DUAL_MONITOR: 1 << 11,
  LOAD_IA32_PERF_GLOBAL_CTRL: 1 << 13,
  LOAD_IA32_PAT: 1 << 14,
  LOAD_IA32_EFER: 1 << 15,
  LOAD_IA32_BNDCFGS: 1 << 16,
  CONCEAL_VMX_FROM_PT: 1 << 17,
  LOAD_IA32_RTIT_CTL: 1 << 18,
  LOAD_UINV: 1 << 19,
  LOAD_CET_STATE: 1 << 20,
  LOAD_IA32_LBR_CTL: 1 << 21,
  LOAD_PKRS: 1 << 22,
  LOAD_IA32_FRED: 1 << 23,
} as const;

/** VM-function controls (VM_FUNCTION_CONTROL). */
export const VMFUNC = {
  EPTP_SWITCHING: 1n << 0n,
} as const;

/**
 * "Default1" bits: controls that are 1 in the non-TRUE capability MSRs on every CPU (SDM Vol. 3D
 * Appendix A.2–A.5). The TRUE MSRs may allow them to be 0.
 */
export const DEFAULT1 = {
  PIN: 0x0000_0016,
  PROC: 0x0401_e172,
  EXIT: 0x0003_6dff,
  ENTRY: 0x0000_11ff,
} as const;
