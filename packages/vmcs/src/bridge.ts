import { accessFromVmxAr, type KvmMsrEntry, type KvmRegs, type KvmSegment, type KvmSregs, kvmSegmentFromSegment, MSR } from "@tsvmm/abi";
import { ENTRY } from "./bits/controls.js";
import { EPT_VIOLATION_QUAL, EXIT_REASON, encodeIoQualification } from "./bits/exits.js";
import { CR4, EFER } from "./bits/registers.js";
import { VmcsError } from "./errors.js";
import type { VmcsState } from "./state.js";

/** The vCPU state KVM takes (KVM_SET_REGS, KVM_SET_SREGS, KVM_SET_MSRS) for a VMCS guest-state area. */
export interface KvmVcpuState {
  regs: KvmRegs;
  sregs: KvmSregs;
  msrs: KvmMsrEntry[];
}

/** MSR numbers of the state the bridge moves: abi's architectural table. */
export const MSR_INDEX = MSR;

function segment(st: VmcsState, name: string): KvmSegment {
  return kvmSegmentFromSegment({
    ...accessFromVmxAr(Number(st.get(`GUEST_${name}_AR_BYTES`))),
    base: st.get(`GUEST_${name}_BASE`),
    limit: Number(st.get(`GUEST_${name}_LIMIT`)),
    selector: Number(st.get(`GUEST_${name}_SELECTOR`)),
  });
}

/**
 * Turn a VMCS guest-state area into KVM vCPU state. Check it first with checkVmEntry: KVM will
 * refuse (or fix up) state that VM entry would reject. GPRs other than RSP are zero. EFER comes
 * from GUEST_IA32_EFER when "load IA32_EFER" is set, else from "IA-32e mode guest" (LME|LMA).
 * IA32_PAT, SYSENTER and DEBUGCTL (when "load debug controls" is set) are returned as MSRs.
 * CR4.VMXE, which VMX requires in the guest-state area but no guest observes, is cleared.
 */
export function toKvmState(state: VmcsState): KvmVcpuState {
  const entry = Number(state.get("VM_ENTRY_CONTROLS"));
  const z = 0n;
  const regs: KvmRegs = {
    rax: z, rbx: z, rcx: z, rdx: z, rsi: z, rdi: z, rsp: state.get("GUEST_RSP"), rbp: z,
    r8: z, r9: z, r10: z, r11: z, r12: z, r13: z, r14: z, r15: z,
    rip: state.get("GUEST_RIP"),
    rflags: state.get("GUEST_RFLAGS"),
  };
  const efer = entry & ENTRY.LOAD_IA32_EFER ? state.get("GUEST_IA32_EFER") : entry & ENTRY.IA32E_MODE_GUEST ? EFER.LME | EFER.LMA : 0n;
  const sregs: KvmSregs = {
    cs: segment(state, "CS"),
    ds: segment(state, "DS"),
    es: segment(state, "ES"),
    fs: segment(state, "FS"),
    gs: segment(state, "GS"),
    ss: segment(state, "SS"),
    tr: segment(state, "TR"),
    ldt: segment(state, "LDTR"),
    gdt: { base: state.get("GUEST_GDTR_BASE"), limit: Number(state.get("GUEST_GDTR_LIMIT")) & 0xffff },
    idt: { base: state.get("GUEST_IDTR_BASE"), limit: Number(state.get("GUEST_IDTR_LIMIT")) & 0xffff },
    cr0: state.get("GUEST_CR0"),
    cr2: 0n,
    cr3: state.get("GUEST_CR3"),
    // VMX forces CR4.VMXE (IA32_VMX_CR4_FIXED0) in every guest-state area, and a hypervisor hides
    // it behind the CR4 read shadow. KVM's vCPU has no VMX, so KVM_SET_SREGS refuses CR4.VMXE: the
    // guest never sees the bit either way, so it is dropped here.
    cr4: state.get("GUEST_CR4") & ~CR4.VMXE,
    cr8: 0n,
    efer,
    apicBase: 0xfee0_0900n,
    interruptBitmap: [0n, 0n, 0n, 0n],
  };
  const msrs: KvmMsrEntry[] = [
    { index: MSR_INDEX.IA32_SYSENTER_CS, data: state.get("GUEST_SYSENTER_CS") },
    { index: MSR_INDEX.IA32_SYSENTER_ESP, data: state.get("GUEST_SYSENTER_ESP") },
    { index: MSR_INDEX.IA32_SYSENTER_EIP, data: state.get("GUEST_SYSENTER_EIP") },
  ];
  if (state.has("GUEST_IA32_PAT")) msrs.push({ index: MSR_INDEX.IA32_PAT, data: state.get("GUEST_IA32_PAT") });
  if (entry & ENTRY.LOAD_DEBUG_CONTROLS) msrs.push({ index: MSR_INDEX.IA32_DEBUGCTL, data: state.get("GUEST_IA32_DEBUGCTL") });
  return { regs, sregs, msrs };
}

/** A KVM exit, described plainly (as kvm-backend decodes kvm_run). */
export type KvmExitDescription =
  | { kind: "io"; port: number; size: 1 | 2 | 4; direction: "in" | "out"; string?: boolean; rep?: boolean }
  | { kind: "mmio"; gpa: bigint | number; isWrite: boolean; len: number }
  | { kind: "hlt" }
  | { kind: "shutdown" }
  | { kind: "rdmsr" | "wrmsr"; index: number }
  | { kind: "irq-window-open" };

/** A VMX exit: basic exit reason, exit qualification and, for EPT violations, the guest-physical address. */
export interface VmxExit {
  basicExitReason: number;
  exitQualification: bigint;
  guestPhysicalAddress?: bigint;
  /** For MSR exits: the MSR index (VMX reports it in guest RCX, not the qualification). */
  msrIndex?: number;
}

/**
 * Report a KVM exit the way VMX would: port I/O → 30 with the I/O qualification; MMIO (a
 * guest-physical access with no memory behind it) → EPT violation 48 with read/write bits and the
 * GPA (permission bits 3–5 are 0: nothing is mapped); HLT → 12; shutdown → triple fault 2;
 * RDMSR/WRMSR → 31/32; interrupt window → 7. Throws VMCS_BRIDGE_UNKNOWN_EXIT otherwise.
 */
export function exitFromKvm(exit: KvmExitDescription): VmxExit {
  switch (exit?.kind) {
    case "io": {
      if (![1, 2, 4].includes(exit.size) || !Number.isInteger(exit.port) || exit.port < 0 || exit.port > 0xffff) {
        throw new VmcsError("VMCS_BRIDGE_UNKNOWN_EXIT", `I/O exit with port ${exit.port} size ${exit.size} cannot be encoded`);
      }
      const q = encodeIoQualification({
        port: exit.port,
        size: exit.size,
        direction: exit.direction,
        string: exit.string ?? false,
        rep: exit.rep ?? false,
        immediate: false,
      });
      return { basicExitReason: EXIT_REASON.IO_INSTRUCTION, exitQualification: q };
    }
    case "mmio":
      return {
        basicExitReason: EXIT_REASON.EPT_VIOLATION,
        exitQualification: exit.isWrite ? EPT_VIOLATION_QUAL.WRITE : EPT_VIOLATION_QUAL.READ,
        guestPhysicalAddress: BigInt(exit.gpa),
      };
    case "hlt":
      return { basicExitReason: EXIT_REASON.HLT, exitQualification: 0n };
    case "shutdown":
      return { basicExitReason: EXIT_REASON.TRIPLE_FAULT, exitQualification: 0n };
    case "rdmsr":
      return { basicExitReason: EXIT_REASON.MSR_READ, exitQualification: 0n, msrIndex: exit.index };
    case "wrmsr":
      return { basicExitReason: EXIT_REASON.MSR_WRITE, exitQualification: 0n, msrIndex: exit.index };
    case "irq-window-open":
      return { basicExitReason: EXIT_REASON.INTERRUPT_WINDOW, exitQualification: 0n };
    default:
      throw new VmcsError("VMCS_BRIDGE_UNKNOWN_EXIT", `no VMX exit reason for KVM exit ${JSON.stringify((exit as { kind?: unknown })?.kind)}`);
  }
}
