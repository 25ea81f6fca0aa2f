/**
 * Architectural MSR numbers both vendors give the same meaning (SDM Vol. 4 Table 2-2, APM Vol. 2
 * appendix A): the ones a VMM moves between a VMCS or VMCB and KVM, and the ones an instruction
 * emulator reads. Model-specific and vendor-only MSRs (IA32_VMX_*, VM_CR, ...) stay in their packages.
 */
export const MSR = {
  IA32_SYSENTER_CS: 0x174,
  IA32_SYSENTER_ESP: 0x175,
  IA32_SYSENTER_EIP: 0x176,
  IA32_DEBUGCTL: 0x1d9,
  IA32_PAT: 0x277,
  IA32_XSS: 0xda0,
  EFER: 0xc000_0080,
  STAR: 0xc000_0081,
  LSTAR: 0xc000_0082,
  CSTAR: 0xc000_0083,
  SFMASK: 0xc000_0084,
  FS_BASE: 0xc000_0100,
  GS_BASE: 0xc000_0101,
  KERNEL_GS_BASE: 0xc000_0102,
  TSC_AUX: 0xc000_0103,
} as const;
