import type { KvmCpuidEntry2 } from "@tsvmm/abi";
import { CpuidError } from "./errors.js";
import { CpuidTable, checkU32, hex, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, type Vendor } from "./table.js";
import { vcpuTable } from "./template.js";
import type { Topology } from "./topology.js";

/** `struct kvm_cpuid_entry2` as a value; @tsvmm/abi's KvmCpuidEntry2Layout encodes it for the ioctl. */
export type { KvmCpuidEntry2 };

/** KVM_MAX_CPUID_ENTRIES in arch/x86/include/asm/kvm_host.h: KVM_SET_CPUID2 refuses more. */
export const KVM_MAX_CPUID_ENTRIES = 256;

/** The entries for KVM_SET_CPUID2, ordered by function then index. Refuses tables KVM would refuse. */
export function toKvmEntries(table: CpuidTable): KvmCpuidEntry2[] {
  const entries = table.entries();
  if (entries.length > KVM_MAX_CPUID_ENTRIES) {
    throw new CpuidError(
      "CPUID_INVALID_KVM_ENTRY",
      `${entries.length} CPUID entries; KVM_SET_CPUID2 takes at most ${KVM_MAX_CPUID_ENTRIES}`,
    );
  }
  return entries.map((e) => ({
    function: e.leaf,
    index: e.subleaf,
    flags: e.flags,
    eax: e.eax,
    ebx: e.ebx,
    ecx: e.ecx,
    edx: e.edx,
  }));
}

/**
 * A table from KVM's entries (KVM_GET_SUPPORTED_CPUID, KVM_GET_CPUID2). Each leaf keeps KVM's
 * flags; an entry with a non-zero index on a leaf that is not subleaf-significant, a duplicate, or a
 * value that is not a u32 is refused with CPUID_INVALID_KVM_ENTRY.
 */
export function fromKvmEntries(entries: readonly KvmCpuidEntry2[]): CpuidTable {
  const table = new CpuidTable();
  const seen = new Set<string>();
  entries.forEach((e, i) => {
    try {
      for (const k of ["function", "index", "flags", "eax", "ebx", "ecx", "edx"] as const) checkU32(e[k], k);
    } catch (cause) {
      throw new CpuidError("CPUID_INVALID_KVM_ENTRY", `entry ${i}: ${(cause as Error).message}`, { cause });
    }
    const significant = (e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) !== 0;
    if (!significant && e.index !== 0) {
      throw new CpuidError(
        "CPUID_INVALID_KVM_ENTRY",
        `entry ${i}: leaf ${hex(e.function)} index ${e.index} without KVM_CPUID_FLAG_SIGNIFCANT_INDEX`,
      );
    }
    const id = `${e.function}:${e.index}`;
    if (seen.has(id)) throw new CpuidError("CPUID_INVALID_KVM_ENTRY", `entry ${i}: duplicate leaf ${hex(e.function)} index ${e.index}`);
    const prev = table.flagsOf(e.function);
    if (prev !== undefined && (prev & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) !== (e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX)) {
      throw new CpuidError("CPUID_INVALID_KVM_ENTRY", `entry ${i}: leaf ${hex(e.function)} mixes significant and not`);
    }
    seen.add(id);
    table.set(e.function, e.index, e, { flags: e.flags });
  });
  return table;
}

/** KVM_SET_CPUID2 entries for vCPU `index`: the normalized table plus that vCPU's APIC ids. */
export function kvmCpuidForVcpu(normalized: CpuidTable, topology: Topology, index: number, vendor?: Vendor): KvmCpuidEntry2[] {
  return toKvmEntries(vcpuTable(normalized, topology, index, vendor));
}

/** KVM_SET_CPUID2 entries for every vCPU of the topology, indexed by vCPU. */
export function kvmCpuidForVcpus(normalized: CpuidTable, topology: Topology, vendor?: Vendor): KvmCpuidEntry2[][] {
  return Array.from({ length: topology.vcpus }, (_, i) => kvmCpuidForVcpu(normalized, topology, i, vendor));
}
