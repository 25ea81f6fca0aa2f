import { KVM_CAP, type KvmCapName, type KvmCpuidEntry2 } from "@tsvmm/abi";
import { featureAt, featureMask, fingerprint, fromKvmEntries, REGISTERS, type Register } from "@tsvmm/cpuid";
import type { Kvm } from "@tsvmm/kvm-backend";
import { sha256 } from "./format.js";
import type { HostInfo, SnapshotState } from "./state.js";

/** The capabilities a restore uses: losing one makes part of the saved state unrestorable. */
export const RESTORE_CAPS: readonly KvmCapName[] = [
  "IRQCHIP", "PIT2", "PIT_STATE2", "MP_STATE", "VCPU_EVENTS", "DEBUGREGS", "XSAVE", "XCRS", "ADJUST_CLOCK", "TSC_CONTROL", "GET_TSC_KHZ",
  "IMMEDIATE_EXIT", "X86_USER_SPACE_MSR", "X86_MSR_FILTER", "READONLY_MEM", "SET_TSS_ADDR", "SET_IDENTITY_MAP_ADDR",
];

// The host does not change under a running process: read it once.
let hostCache: HostInfo | undefined;
let fingerprintCache: { info: HostInfo; hash: string } | undefined;

function vendorOf(entries: readonly KvmCpuidEntry2[]): string {
  const l0 = entries.find((e) => e.function === 0);
  if (l0 === undefined) return "";
  const b = Buffer.alloc(12);
  b.writeUInt32LE(l0.ebx >>> 0, 0);
  b.writeUInt32LE(l0.edx >>> 0, 4);
  b.writeUInt32LE(l0.ecx >>> 0, 8);
  return b.toString("latin1").replace(/\0+$/, "");
}

/** What this host's KVM offers (read once per process). */
export function hostInfo(kvm: Kvm): HostInfo {
  if (hostCache !== undefined) return hostCache;
  const supportedCpuid = kvm.supportedCpuid();
  const caps: Record<string, number> = {};
  for (const c of RESTORE_CAPS) caps[c] = kvm.checkExtension(KVM_CAP[c]);
  const info: HostInfo = { vendor: vendorOf(supportedCpuid), kvmApi: kvm.apiVersion(), supportedCpuid, caps, msrIndexList: kvm.msrIndexList() };
  hostCache = info;
  return info;
}

/** One hash for the header: equal hashes mean the restore needs no closer look. */
export function hostFingerprint(info: HostInfo): string {
  if (fingerprintCache?.info === info) return fingerprintCache.hash;
  const hash = computeFingerprint(info);
  fingerprintCache = { info, hash };
  return hash;
}

function computeFingerprint(info: HostInfo): string {
  const caps = RESTORE_CAPS.map((c) => `${c}=${info.caps[c] ?? 0}`).join(",");
  return sha256(`${fingerprint(fromKvmEntries(info.supportedCpuid))}\n${caps}\n${[...info.msrIndexList].sort((a, b) => a - b).join(",")}\n${info.kvmApi}`);
}

const hex = (n: number) => `0x${(n >>> 0).toString(16)}`;

function lookup(entries: readonly KvmCpuidEntry2[], leaf: number, subleaf: number): KvmCpuidEntry2 | undefined {
  return entries.find((e) => e.function === leaf && (e.index === subleaf || (e.flags & 1) === 0));
}

/**
 * What the saved guest relies on that this host lacks, one line per problem (empty: compatible):
 * - the CPU vendor;
 * - each named CPUID feature bit the guest sees (its held table) that the saving host supported
 *   and this host does not, by leaf, register and feature name;
 * - a KVM capability the restore uses that the saving host had;
 * - an MSR in the saved vCPU state that this host's KVM does not list.
 * Bits the guest does not see, and differences in leaves the guest has no entry for, do not count.
 */
export function compatibilityProblems(state: Pick<SnapshotState, "host" | "vcpus">, now: HostInfo): string[] {
  const out: string[] = [];
  const saved = state.host;
  if (saved.vendor !== now.vendor) out.push(`CPU vendor: saved on "${saved.vendor}", this host is "${now.vendor}"`);
  const seen = new Set<string>();
  for (const v of state.vcpus) {
    for (const e of v.cpuid.held) {
      const was = lookup(saved.supportedCpuid, e.function, e.index);
      if (was === undefined) continue;
      const is = lookup(now.supportedCpuid, e.function, e.index);
      for (const r of REGISTERS as readonly Register[]) {
        const lost = (e[r] & featureMask(e.function, e.index, r) & was[r] & ~(is?.[r] ?? 0)) >>> 0;
        if (lost === 0) continue;
        const key = `${e.function}.${e.index}.${r}`;
        if (seen.has(key)) continue;
        seen.add(key);
        const names: string[] = [];
        for (let bit = 0; bit < 32; bit++) if ((lost >>> bit) & 1) names.push(featureAt(e.function, e.index, r, bit) ?? `bit ${bit}`);
        out.push(`CPUID leaf ${hex(e.function)} subleaf ${e.index} ${r.toUpperCase()}: the guest uses ${names.join(", ")}, which this host does not support`);
      }
    }
  }
  for (const c of RESTORE_CAPS) {
    if ((saved.caps[c] ?? 0) > 0 && (now.caps[c] ?? 0) === 0) out.push(`KVM capability ${c}: the saving host had it, this host does not`);
  }
  const listed = new Set(now.msrIndexList);
  const missing = new Set<number>();
  for (const v of state.vcpus) for (const m of v.msrs) if (!listed.has(m.index)) missing.add(m.index);
  for (const m of missing) out.push(`MSR ${hex(m)}: saved in the vCPU state, not in this host's KVM_GET_MSR_INDEX_LIST`);
  return out;
}
