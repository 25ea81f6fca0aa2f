import { diffTables, fromKvmEntries, kvmCpuidForVcpus, normalize, type TableDifference, type Topology } from "@tsvmm/cpuid";
import type { Kvm } from "@tsvmm/kvm-backend";

/**
 * The CPUID registers this host's KVM replaces: set the VMM's own table for one vCPU with
 * KVM_SET_CPUID2, read it back with KVM_GET_CPUID2 and compare. Hosts differ (see
 * shared/kvm-on-this-machine.md), so this is measured on every call, never written down. The guest
 * sees the held values.
 */
export function measureCpuidOverrides(kvm: Kvm): TableDifference[] {
  const topology: Topology = { vcpus: 1, threadsPerCore: 1, coresPerSocket: 1, sockets: 1 };
  const table = kvmCpuidForVcpus(normalize(fromKvmEntries(kvm.supportedCpuid()), { topology }), topology)[0]!;
  const vm = kvm.createVm();
  try {
    const vcpu = vm.createVcpu(0);
    vcpu.setCpuid2(table);
    return diffTables(fromKvmEntries(table), fromKvmEntries(vcpu.getCpuid2()));
  } finally {
    vm.close();
  }
}

/** One line per overridden register: `0x7.1.eax 0->20 (+avx512_bf16)`. */
export function describeOverrides(diffs: readonly TableDifference[]): string[] {
  return diffs.map((d) => {
    const names = [...d.added.map((n) => `+${n}`), ...d.removed.map((n) => `-${n}`)];
    const hex = (v: number | undefined) => (v === undefined ? "absent" : `0x${(v >>> 0).toString(16)}`);
    return `0x${d.leaf.toString(16)}.${d.subleaf}.${d.register} ${hex(d.a)} -> ${hex(d.b)}${names.length > 0 ? ` (${names.join(",")})` : ""}`;
  });
}
