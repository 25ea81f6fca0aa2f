import type { KvmMsrEntry } from "@tsvmm/abi";
import type { Vcpu } from "@tsvmm/kvm-backend";
import type { CpuidRecord } from "../vmm.js";
import type { VcpuState } from "./state.js";

/** IA32_TSC_DEADLINE: KVM ignores a write while the LVT timer is not in TSC-deadline mode. */
const MSR_TSC_DEADLINE = 0x6e0;

/**
 * The MSRs of `list` this vCPU can read. KVM lists what it can save in general; which of them a
 * given vCPU answers depends on its CPUID (a PMU MSR without a PMU refuses). One probe per MSR,
 * done once per VM.
 */
export function readableMsrs(vcpu: Vcpu, list: readonly number[]): number[] {
  const out: number[] = [];
  for (const index of list) {
    try {
      vcpu.getMsrs([index]);
      out.push(index);
    } catch {
      // Not readable on this vCPU: not part of its state.
    }
  }
  return out;
}

/** Everything KVM holds for one vCPU. The vCPU must be out of KVM_RUN with its last exit completed. */
export function saveVcpu(vcpu: Vcpu, cpuid: CpuidRecord, msrs: readonly number[], o: { irqchip: boolean; xsave: boolean; tscKhz: boolean }): VcpuState {
  return {
    id: vcpu.id,
    regs: vcpu.getRegs(),
    sregs: vcpu.getSregs(),
    fpu: vcpu.getFpu(),
    xsave: o.xsave ? vcpu.getXsave() : null,
    xcrs: o.xsave ? vcpu.getXcrs() : null,
    msrs: msrs.length > 0 ? vcpu.getMsrs(msrs) : [],
    lapic: o.irqchip ? vcpu.getLapic() : null,
    events: vcpu.getVcpuEvents(),
    mpState: vcpu.getMpState(),
    debugRegs: vcpu.getDebugRegs(),
    cpuid: { set: cpuid.set, held: cpuid.held },
    tscKhz: o.tscKhz ? vcpu.getTscKhz() : null,
  };
}

/**
 * Put a saved state into a fresh vCPU whose CPUID is already set. The order is QEMU's, for the
 * same reasons: registers before the XSAVE area and XCRs, segment/control state before the MSRs
 * (EFER, APIC base), the LAPIC after the MSRs, pending events and MP state last; the TSC deadline
 * again after the LAPIC because KVM drops it while the timer is not in deadline mode.
 */
export function restoreVcpu(vcpu: Vcpu, s: VcpuState): void {
  if (s.tscKhz !== null && s.tscKhz !== vcpu.getTscKhz()) vcpu.setTscKhz(s.tscKhz);
  vcpu.setRegs(s.regs);
  // Both, XSAVE first: KVM_SET_FPU writes the legacy area without touching XSTATE_BV, so after
  // the pair KVM holds exactly what it held (an XMM value given by KVM_SET_FPU alone is in the
  // legacy area while XSTATE_BV still marks SSE as in its init state).
  if (s.xsave !== null) vcpu.setXsave(s.xsave);
  vcpu.setFpu(s.fpu);
  if (s.xcrs !== null && s.xcrs.length > 0) vcpu.setXcrs(s.xcrs);
  vcpu.setSregs(s.sregs);
  if (s.msrs.length > 0) vcpu.setMsrs(s.msrs);
  if (s.lapic !== null) vcpu.setLapic(s.lapic);
  const deadline = s.msrs.filter((m: KvmMsrEntry) => m.index === MSR_TSC_DEADLINE);
  if (s.lapic !== null && deadline.length > 0) vcpu.setMsrs(deadline);
  vcpu.setMpState(s.mpState);
  vcpu.setVcpuEvents(s.events);
  vcpu.setDebugRegs(s.debugRegs);
}
