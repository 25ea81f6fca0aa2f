import { GuestMemoryMap } from "@tsvmm/abi";
import { ENTRY, EXIT, EXIT2, PIN, PROC, PROC2, PROC3 } from "../bits/controls.js";
import { CR0, CR4, RFLAGS } from "../bits/registers.js";
import { PROFILES, type VmxCaps } from "../caps.js";
import type { VmEntryEnv } from "../checks/context.js";
import type { VmcsState } from "../state.js";
import type { GuestMode } from "../templates.js";

/**
 * One way to break a valid VMCS in exactly one catalogued check. `apply` changes the fewest fields
 * that can violate the rule (`r` is a random 16-bit value used to vary the bad value where the rule
 * allows); `also` lists checks the SDM makes fail together with this one.
 */
export interface Mutation {
  mode: GuestMode;
  /** Profile the mutation needs (default "full-featured", where every feature is allowed). */
  profile?: string;
  /** Adjust the CPU facts (e.g. a CPU without Intel 64). */
  caps?: (c: VmxCaps) => VmxCaps;
  env?: () => VmEntryEnv;
  apply: (s: VmcsState, r: number) => void;
  also?: readonly string[];
}

const NONCANON = 0x8000_0000_0000_0000n;
const or = (s: VmcsState, f: string, bits: number | bigint): void => {
  s.set(f, typeof bits === "bigint" ? s.get(f) | bits : (Number(s.get(f)) | bits) >>> 0);
};
const andNot = (s: VmcsState, f: string, bits: number | bigint): void => {
  s.set(f, typeof bits === "bigint" ? s.get(f) & ~bits : (Number(s.get(f)) & ~bits) >>> 0);
};
const page = (r: number): bigint => BigInt(0x10 + (r & 0xff)) << 12n;
const misaligned = (r: number, align: number): bigint => page(r) + BigInt(1 + (r % (align - 1)));

function tprShadow(s: VmcsState): void {
  or(s, "CPU_BASED_VM_EXEC_CONTROL", PROC.USE_TPR_SHADOW);
  s.set("VIRTUAL_APIC_PAGE_ADDR", 0x4000n);
}
function vid(s: VmcsState): void {
  tprShadow(s);
  or(s, "SECONDARY_VM_EXEC_CONTROL", PROC2.VIRTUAL_INTR_DELIVERY);
  or(s, "PIN_BASED_VM_EXEC_CONTROL", PIN.EXT_INTR_EXITING);
}
function postedInterrupts(s: VmcsState, opts: { vid?: boolean; ack?: boolean } = {}): void {
  if (opts.vid !== false) vid(s);
  or(s, "PIN_BASED_VM_EXEC_CONTROL", PIN.PROCESS_POSTED_INTR | PIN.EXT_INTR_EXITING);
  if (opts.ack !== false) or(s, "VM_EXIT_CONTROLS", EXIT.ACK_INTR_ON_EXIT);
  s.set("POSTED_INTR_NV", 0xf2);
  s.set("POSTED_INTR_DESC_ADDR", 0x3000n);
}
/** 32-bit host: host address-space size 0 and host RIP below 4 GiB. */
function host32(s: VmcsState): void {
  andNot(s, "VM_EXIT_CONTROLS", EXIT.HOST_ADDR_SPACE_SIZE);
  s.set("HOST_RIP", 0x10_0000n);
}
function usableLdtr(s: VmcsState): void {
  s.set("GUEST_LDTR_SELECTOR", 0x20);
  s.set("GUEST_LDTR_LIMIT", 0xffff);
  s.set("GUEST_LDTR_AR_BYTES", 0x82);
}
function toV86(s: VmcsState): void {
  or(s, "GUEST_RFLAGS", RFLAGS.VM);
  for (const [r, sel] of [["CS", 0x1000], ["SS", 0x2000], ["DS", 0], ["ES", 0], ["FS", 0], ["GS", 0]] as const) {
    s.set(`GUEST_${r}_SELECTOR`, sel);
    s.set(`GUEST_${r}_BASE`, BigInt(sel) << 4n);
    s.set(`GUEST_${r}_LIMIT`, 0xffff);
    s.set(`GUEST_${r}_AR_BYTES`, 0xf3);
  }
  s.set("GUEST_RIP", 0x100n);
}
/** CPL 3 flat 64-bit guest. */
function ring3(s: VmcsState): void {
  s.set("GUEST_CS_SELECTOR", 0x0b);
  s.set("GUEST_CS_AR_BYTES", 0xa0fb);
  s.set("GUEST_SS_SELECTOR", 0x13);
  s.set("GUEST_SS_AR_BYTES", 0xc0f3);
}
function inject(s: VmcsState, vector: number, type: number, ec = false): void {
  s.set("VM_ENTRY_INTR_INFO_FIELD", (vector | (type << 8) | (ec ? 1 << 11 : 0) | 0x8000_0000) >>> 0);
}
function memWith(writes: [number, number, 1 | 4 | 8][]): () => VmEntryEnv {
  return () => {
    const memory = GuestMemoryMap.allocate([{ base: 0, size: 0x40000 }]);
    for (const [a, v, size] of writes) {
      if (size === 1) memory.writeU8(a, v);
      else if (size === 4) memory.writeU32(a, v);
      else memory.writeU64(a, BigInt(v));
    }
    return { memory };
  };
}
const withCpu = (patch: Partial<VmxCaps["cpu"]>) => (c: VmxCaps): VmxCaps => ({ ...c, name: `${c.name}*`, cpu: { ...c.cpu, ...patch } });

const fullRevision = Number(PROFILES["full-featured"]!.msrs.IA32_VMX_BASIC & 0x7fff_ffffn);

export const MUTATIONS: Readonly<Record<string, Mutation>> = {
  "CTRL.PIN.ALLOWED_BITS": { mode: "long", apply: (s) => or(s, "PIN_BASED_VM_EXEC_CONTROL", 1 << 8) },
  "CTRL.PIN.VNMI_REQUIRES_NMI_EXIT": { mode: "long", apply: (s) => or(s, "PIN_BASED_VM_EXEC_CONTROL", PIN.VIRTUAL_NMIS) },
  "CTRL.PIN.PI_REQUIRES_VID": { mode: "long", apply: (s) => postedInterrupts(s, { vid: false }) },
  "CTRL.PIN.PI_REQUIRES_ACK_ON_EXIT": { mode: "long", apply: (s) => postedInterrupts(s, { ack: false }) },
  "CTRL.PIN.PI_VECTOR": { mode: "long", apply: (s, r) => { postedInterrupts(s); s.set("POSTED_INTR_NV", (1 + (r % 255)) << 8); } },
  "CTRL.PIN.PI_DESC_ADDR": { mode: "long", apply: (s, r) => { postedInterrupts(s); s.set("POSTED_INTR_DESC_ADDR", misaligned(r, 64)); } },
  "CTRL.PROC.ALLOWED_BITS": { mode: "long", apply: (s) => andNot(s, "CPU_BASED_VM_EXEC_CONTROL", 1 << 1) },
  "CTRL.PROC.CR3_TARGET_COUNT": { mode: "long", apply: (s, r) => s.set("CR3_TARGET_COUNT", 5 + (r % 100)) },
  "CTRL.PROC.IO_BITMAP_ADDR": { mode: "long", apply: (s, r) => { or(s, "CPU_BASED_VM_EXEC_CONTROL", PROC.USE_IO_BITMAPS); s.set("IO_BITMAP_A", 0x5000n); s.set("IO_BITMAP_B", misaligned(r, 4096)); } },
  "CTRL.PROC.MSR_BITMAP_ADDR": { mode: "long", apply: (s, r) => { or(s, "CPU_BASED_VM_EXEC_CONTROL", PROC.USE_MSR_BITMAPS); s.set("MSR_BITMAP", misaligned(r, 4096)); } },
  "CTRL.PROC.VAPIC_ADDR": { mode: "long", apply: (s, r) => { tprShadow(s); s.set("VIRTUAL_APIC_PAGE_ADDR", misaligned(r, 4096)); } },
  "CTRL.PROC.TPR_THRESHOLD_RSVD": { mode: "long", apply: (s, r) => { tprShadow(s); s.set("TPR_THRESHOLD", (1 + (r & 0xfff)) << 4); } },
  "CTRL.PROC.TPR_THRESHOLD_VS_VTPR": { mode: "long", env: memWith([[0x4080, 0x30, 1]]), apply: (s, r) => { tprShadow(s); s.set("TPR_THRESHOLD", 4 + (r % 12)); } },
  "CTRL.PROC.NO_TPR_SHADOW_NO_APICV": { mode: "long", apply: (s) => or(s, "SECONDARY_VM_EXEC_CONTROL", PROC2.VIRTUALIZE_X2APIC_MODE) },
  "CTRL.PROC.NMI_WINDOW_REQUIRES_VNMI": { mode: "long", apply: (s) => or(s, "CPU_BASED_VM_EXEC_CONTROL", PROC.NMI_WINDOW_EXITING) },
  "CTRL.PROC2.ALLOWED_BITS": { mode: "long", apply: (s) => or(s, "SECONDARY_VM_EXEC_CONTROL", 1 << 29) },
  "CTRL.PROC2.APIC_ACCESS_ADDR": { mode: "long", apply: (s, r) => { or(s, "SECONDARY_VM_EXEC_CONTROL", PROC2.VIRTUALIZE_APIC_ACCESSES); s.set("APIC_ACCESS_ADDR", misaligned(r, 4096)); } },
  "CTRL.PROC2.X2APIC_EXCLUDES_APIC_ACCESS": { mode: "long", apply: (s) => { tprShadow(s); or(s, "SECONDARY_VM_EXEC_CONTROL", PROC2.VIRTUALIZE_X2APIC_MODE | PROC2.VIRTUALIZE_APIC_ACCESSES); s.set("APIC_ACCESS_ADDR", 0x8000n); } },
  "CTRL.PROC2.VID_REQUIRES_EXTINT_EXIT": { mode: "long", apply: (s) => { tprShadow(s); or(s, "SECONDARY_VM_EXEC_CONTROL", PROC2.VIRTUAL_INTR_DELIVERY); } },
  "CTRL.PROC2.VPID_NONZERO": { mode: "long", apply: (s) => { or(s, "SECONDARY_VM_EXEC_CONTROL", PROC2.ENABLE_VPID); s.set("VIRTUAL_PROCESSOR_ID", 0); } },
  "CTRL.PROC2.EPTP.MEMTYPE": { mode: "long", apply: (s, r) => s.set("EPT_POINTER", (s.get("EPT_POINTER") & ~7n) | BigInt([1, 2, 3, 4, 5, 7][r % 6]!)) },
  "CTRL.PROC2.EPTP.WALK_LENGTH": { mode: "long", apply: (s, r) => s.set("EPT_POINTER", (s.get("EPT_POINTER") & ~0x38n) | (BigInt([0, 1, 2, 5, 6, 7][r % 6]!) << 3n)) },
  "CTRL.PROC2.EPTP.AD_FLAG": { mode: "long", profile: "intel-core-i7-3960x", apply: (s) => or(s, "EPT_POINTER", 1n << 6n) },
  "CTRL.PROC2.EPTP.SSS_FLAG": { mode: "long", profile: "intel-core-i7-3960x", apply: (s) => or(s, "EPT_POINTER", 1n << 7n) },
  "CTRL.PROC2.EPTP.RESERVED": { mode: "long", apply: (s, r) => or(s, "EPT_POINTER", 1n << BigInt(8 + (r % 4))) },
  "CTRL.PROC2.UG_REQUIRES_EPT": { mode: "long", apply: (s) => { or(s, "SECONDARY_VM_EXEC_CONTROL", PROC2.UNRESTRICTED_GUEST); andNot(s, "SECONDARY_VM_EXEC_CONTROL", PROC2.ENABLE_EPT); } },
  "CTRL.PROC2.MBEC_REQUIRES_EPT": { mode: "long", apply: (s) => { or(s, "SECONDARY_VM_EXEC_CONTROL", PROC2.MODE_BASED_EPT_EXEC); andNot(s, "SECONDARY_VM_EXEC_CONTROL", PROC2.ENABLE_EPT); } },
  "CTRL.PROC2.PML": { mode: "long", apply: (s, r) => { or(s, "SECONDARY_VM_EXEC_CONTROL", PROC2.ENABLE_PML); s.set("PML_ADDRESS", misaligned(r, 4096)); } },
  "CTRL.PROC2.SPP": { mode: "long", apply: (s, r) => { or(s, "SECONDARY_VM_EXEC_CONTROL", PROC2.SUBPAGE_WRITE_PERMISSIONS); s.set("SPP_TABLE_POINTER", misaligned(r, 4096)); } },
  "CTRL.PROC2.VMFUNC_ALLOWED_BITS": { mode: "long", apply: (s, r) => { or(s, "SECONDARY_VM_EXEC_CONTROL", PROC2.ENABLE_VMFUNC); s.set("VM_FUNCTION_CONTROL", 1n << BigInt(1 + (r % 63))); } },
  "CTRL.PROC2.EPTP_SWITCHING": { mode: "long", apply: (s, r) => { or(s, "SECONDARY_VM_EXEC_CONTROL", PROC2.ENABLE_VMFUNC); s.set("VM_FUNCTION_CONTROL", 1n); s.set("EPTP_LIST_ADDRESS", misaligned(r, 4096)); } },
  "CTRL.PROC2.VMCS_SHADOWING_BITMAPS": { mode: "long", apply: (s, r) => { or(s, "SECONDARY_VM_EXEC_CONTROL", PROC2.VMCS_SHADOWING); s.set("VMREAD_BITMAP", 0xa000n); s.set("VMWRITE_BITMAP", misaligned(r, 4096)); } },
  "CTRL.PROC2.VE_INFO_ADDR": { mode: "long", apply: (s, r) => { or(s, "SECONDARY_VM_EXEC_CONTROL", PROC2.EPT_VIOLATION_VE); s.set("VE_INFORMATION_ADDRESS", misaligned(r, 4096)); } },
  "CTRL.PROC2.PT_USES_GPA": { mode: "long", apply: (s) => or(s, "SECONDARY_VM_EXEC_CONTROL", PROC2.PT_USE_GPA) },
  "CTRL.PROC2.TSC_MULTIPLIER_NONZERO": { mode: "long", apply: (s) => { or(s, "SECONDARY_VM_EXEC_CONTROL", PROC2.USE_TSC_SCALING); s.set("TSC_MULTIPLIER", 0n); } },
  "CTRL.PROC3.ALLOWED_BITS": { mode: "long", apply: (s, r) => { or(s, "CPU_BASED_VM_EXEC_CONTROL", PROC.ACTIVATE_TERTIARY_CONTROLS); s.set("TERTIARY_VM_EXEC_CONTROL", 1n << BigInt([5, 6, 8, 20, 63][r % 5]!)); } },
  "CTRL.PROC3.HLAT": { mode: "long", apply: (s) => { or(s, "CPU_BASED_VM_EXEC_CONTROL", PROC.ACTIVATE_TERTIARY_CONTROLS); s.set("TERTIARY_VM_EXEC_CONTROL", PROC3.ENABLE_HLAT); s.set("HLAT_POINTER", 0xc001n); } },
  "CTRL.PROC3.IPI_VIRT": { mode: "long", apply: (s) => { or(s, "CPU_BASED_VM_EXEC_CONTROL", PROC.ACTIVATE_TERTIARY_CONTROLS); s.set("TERTIARY_VM_EXEC_CONTROL", PROC3.IPI_VIRTUALIZATION); s.set("PID_POINTER_TABLE", 0xd000n); } },
  "CTRL.EXIT.ALLOWED_BITS": { mode: "long", apply: (s) => andNot(s, "VM_EXIT_CONTROLS", 1 << 0) },
  "CTRL.EXIT2.ALLOWED_BITS": { mode: "long", apply: (s) => { or(s, "VM_EXIT_CONTROLS", EXIT.ACTIVATE_SECONDARY_CONTROLS); s.set("SECONDARY_VM_EXIT_CONTROLS", 1n); } },
  "CTRL.EXIT.PREEMPT_SAVE_REQUIRES_TIMER": { mode: "long", apply: (s) => or(s, "VM_EXIT_CONTROLS", EXIT.SAVE_VMX_PREEMPTION_TIMER) },
  "CTRL.EXIT.MSR_STORE_AREA": { mode: "long", apply: (s, r) => { s.set("VM_EXIT_MSR_STORE_COUNT", 1 + (r % 8)); s.set("VM_EXIT_MSR_STORE_ADDR", misaligned(r, 16)); } },
  "CTRL.EXIT.MSR_LOAD_AREA": { mode: "long", apply: (s, r) => { s.set("VM_EXIT_MSR_LOAD_COUNT", 1 + (r % 8)); s.set("VM_EXIT_MSR_LOAD_ADDR", misaligned(r, 16)); } },
  "CTRL.ENTRY.ALLOWED_BITS": { mode: "long", apply: (s) => or(s, "VM_ENTRY_CONTROLS", 1 << 24) },
  "CTRL.ENTRY.SMM_CTLS_OUTSIDE_SMM": { mode: "long", apply: (s) => or(s, "VM_ENTRY_CONTROLS", ENTRY.DEACTIVATE_DUAL_MONITOR) },
  "CTRL.ENTRY.SMM_CTLS_NOT_BOTH": { mode: "long", env: () => ({ inSmm: true }), apply: (s) => { or(s, "VM_ENTRY_CONTROLS", ENTRY.ENTRY_TO_SMM | ENTRY.DEACTIVATE_DUAL_MONITOR); s.set("GUEST_INTERRUPTIBILITY_INFO", 4); } },
  "CTRL.ENTRY.INJ.TYPE": { mode: "long", apply: (s, r) => inject(s, r & 0xff, 1) },
  "CTRL.ENTRY.INJ.VECTOR": { mode: "long", apply: (s, r) => inject(s, [0, 1, 3, 255][r % 4]!, 2) },
  "CTRL.ENTRY.INJ.DELIVER_EC": { mode: "long", apply: (s, r) => { inject(s, 0x20 + (r % 0xe0), 4, true); s.set("VM_ENTRY_INSTRUCTION_LEN", 2); } },
  "CTRL.ENTRY.INJ.RESERVED": { mode: "long", apply: (s, r) => s.set("VM_ENTRY_INTR_INFO_FIELD", (0x8000_0306 | (1 << [12, 14, 15, 20, 30][r % 5]!)) >>> 0) },
  "CTRL.ENTRY.INJ.ERROR_CODE": { mode: "long", apply: (s, r) => { inject(s, 13, 3, true); s.set("VM_ENTRY_EXCEPTION_ERROR_CODE", ((1 + (r & 0x7fff)) << 16) >>> 0); } },
  "CTRL.ENTRY.INJ.INSTR_LEN": { mode: "long", apply: (s, r) => { inject(s, 0x80, 4); s.set("VM_ENTRY_INSTRUCTION_LEN", 16 + r); } },
  "CTRL.ENTRY.MSR_LOAD_AREA": { mode: "long", apply: (s, r) => { s.set("VM_ENTRY_MSR_LOAD_COUNT", 1 + (r % 8)); s.set("VM_ENTRY_MSR_LOAD_ADDR", misaligned(r, 16)); } },
  "HOST.CR0.FIXED": { mode: "long", apply: (s) => andNot(s, "HOST_CR0", CR0.PE) },
  "HOST.CR4.FIXED": { mode: "long", apply: (s) => andNot(s, "HOST_CR4", CR4.VMXE) },
  "HOST.CR3.PHYS_WIDTH": { mode: "long", apply: (s, r) => or(s, "HOST_CR3", 1n << BigInt(52 + (r % 9))) },
  "HOST.CR4.CET_REQUIRES_WP": { mode: "long", apply: (s) => { or(s, "HOST_CR4", CR4.CET); andNot(s, "HOST_CR0", CR0.WP); } },
  "HOST.SYSENTER_ESP.CANONICAL": { mode: "long", apply: (s, r) => s.set("HOST_IA32_SYSENTER_ESP", NONCANON | BigInt(r)) },
  "HOST.SYSENTER_EIP.CANONICAL": { mode: "long", apply: (s, r) => s.set("HOST_IA32_SYSENTER_EIP", NONCANON | BigInt(r)) },
  "HOST.CET.S_CET": { mode: "long", apply: (s, r) => { or(s, "VM_EXIT_CONTROLS", EXIT.LOAD_CET_STATE); s.set("HOST_S_CET", 1n << BigInt(6 + (r % 4))); } },
  "HOST.CET.S_CET_SUPPRESS_TRACKER": { mode: "long", apply: (s, r) => { or(s, "VM_EXIT_CONTROLS", EXIT.LOAD_CET_STATE); s.set("HOST_S_CET", 0xc00n | BigInt([0, 1, 4, 0x3c][r % 4]!)); } },
  "HOST.CET.ISST": { mode: "long", apply: (s, r) => { or(s, "VM_EXIT_CONTROLS", EXIT.LOAD_CET_STATE); s.set("HOST_INTR_SSP_TABLE", NONCANON | BigInt(r)); } },
  "HOST.CET.SSP": { mode: "long", apply: (s, r) => { or(s, "VM_EXIT_CONTROLS", EXIT.LOAD_CET_STATE); s.set("HOST_SSP", 0x1000n | BigInt(1 + (r % 3))); } },
  "HOST.PERF_GLOBAL_CTRL.RESERVED": { mode: "long", apply: (s, r) => { or(s, "VM_EXIT_CONTROLS", EXIT.LOAD_IA32_PERF_GLOBAL_CTRL); s.set("HOST_IA32_PERF_GLOBAL_CTRL", 1n << BigInt([4, 8, 31, 35, 40, 63][r % 6]!)); } },
  "HOST.PAT.VALID": { mode: "long", apply: (s, r) => { or(s, "VM_EXIT_CONTROLS", EXIT.LOAD_IA32_PAT); s.set("HOST_IA32_PAT", BigInt([2, 3, 8, 0xff][r % 4]!) << BigInt(8 * (r % 8))); } },
  "HOST.EFER.RESERVED": { mode: "long", apply: (s) => { or(s, "VM_EXIT_CONTROLS", EXIT.LOAD_IA32_EFER); s.set("HOST_IA32_EFER", 0x502n); } },
  "HOST.EFER.LMA_LME": { mode: "long", apply: (s, r) => { or(s, "VM_EXIT_CONTROLS", EXIT.LOAD_IA32_EFER); s.set("HOST_IA32_EFER", [0x100n, 0x400n, 0n][r % 3]!); } },
  "HOST.PKRS.RESERVED": { mode: "long", apply: (s, r) => { or(s, "VM_EXIT_CONTROLS", EXIT.LOAD_PKRS); s.set("HOST_IA32_PKRS", BigInt(1 + r) << 32n); } },
  "HOST.FRED.STATE": { mode: "long", apply: (s) => { or(s, "VM_EXIT_CONTROLS", EXIT.ACTIVATE_SECONDARY_CONTROLS); s.set("SECONDARY_VM_EXIT_CONTROLS", EXIT2.LOAD_IA32_FRED); s.set("HOST_IA32_FRED_RSP1", 0x1010n); } },
  "HOST.SEL.RPL_TI_ZERO": { mode: "long", apply: (s, r) => s.set("HOST_DS_SELECTOR", 0x10 | (1 + (r % 7))) },
  "HOST.SEL.CS_NONZERO": { mode: "long", apply: (s) => s.set("HOST_CS_SELECTOR", 0) },
  "HOST.SEL.TR_NONZERO": { mode: "long", apply: (s) => s.set("HOST_TR_SELECTOR", 0) },
  "HOST.SEL.SS_NONZERO_IF_32BIT": { mode: "protected", env: () => ({ cpuInIa32e: false }), apply: (s) => { host32(s); s.set("HOST_SS_SELECTOR", 0); } },
  "HOST.BASE.CANONICAL": { mode: "long", apply: (s, r) => s.set(["HOST_FS_BASE", "HOST_GS_BASE", "HOST_GDTR_BASE", "HOST_IDTR_BASE", "HOST_TR_BASE"][r % 5]!, NONCANON) },
  "HOST.ASZ.OUTSIDE_IA32E": { mode: "protected", env: () => ({ cpuInIa32e: false }), apply: () => {} },
  "HOST.ASZ.INSIDE_IA32E": { mode: "protected", apply: (s) => host32(s) },
  "HOST.ASZ.H32_NO_IA32E_GUEST": { mode: "long", env: () => ({ cpuInIa32e: false }), apply: (s) => host32(s), also: ["HOST.ASZ.OUTSIDE_IA32E"] },
  "HOST.ASZ.H32_NO_PCIDE": { mode: "protected", env: () => ({ cpuInIa32e: false }), apply: (s) => { host32(s); or(s, "HOST_CR4", CR4.PCIDE); } },
  "HOST.ASZ.H32_NO_FRED": { mode: "protected", env: () => ({ cpuInIa32e: false }), apply: (s) => { host32(s); or(s, "HOST_CR4", CR4.FRED); } },
  "HOST.ASZ.H32_RIP_HIGH": { mode: "protected", env: () => ({ cpuInIa32e: false }), apply: (s, r) => { host32(s); s.set("HOST_RIP", BigInt(1 + r) << 32n); } },
  "HOST.ASZ.H64_PAE": { mode: "long", apply: (s) => andNot(s, "HOST_CR4", CR4.PAE) },
  "HOST.ASZ.H64_RIP_CANONICAL": { mode: "long", apply: (s, r) => s.set("HOST_RIP", NONCANON | BigInt(r)) },
  "HOST.ASZ.NO_INTEL64": { mode: "long", caps: withCpu({ intel64: false }), apply: () => {} },
  "GUEST.CR0.FIXED": { mode: "long", apply: (s) => andNot(s, "GUEST_CR0", CR0.NE) },
  "GUEST.CR0.PG_REQUIRES_PE": { mode: "real", apply: (s) => or(s, "GUEST_CR0", CR0.PG) },
  "GUEST.CR4.FIXED": { mode: "long", apply: (s) => andNot(s, "GUEST_CR4", CR4.VMXE) },
  "GUEST.CR4.CET_REQUIRES_WP": { mode: "long", apply: (s) => or(s, "GUEST_CR4", CR4.CET) },
  "GUEST.DEBUGCTL.RESERVED": { mode: "long", apply: (s, r) => { or(s, "VM_ENTRY_CONTROLS", ENTRY.LOAD_DEBUG_CONTROLS); s.set("GUEST_IA32_DEBUGCTL", 1n << BigInt([3, 4, 5, 16, 40, 63][r % 6]!)); } },
  "GUEST.IA32E.PG_AND_PAE": { mode: "long", apply: (s) => andNot(s, "GUEST_CR4", CR4.PAE) },
  "GUEST.NON_IA32E.NO_PCIDE": { mode: "protected", apply: (s) => or(s, "GUEST_CR4", CR4.PCIDE) },
  "GUEST.NON_IA32E.NO_FRED": { mode: "protected", apply: (s) => or(s, "GUEST_CR4", CR4.FRED) },
  "GUEST.CR3.PHYS_WIDTH": { mode: "long", apply: (s, r) => or(s, "GUEST_CR3", 1n << BigInt(52 + (r % 9))) },
  "GUEST.DR7.HIGH_ZERO": { mode: "long", apply: (s, r) => { or(s, "VM_ENTRY_CONTROLS", ENTRY.LOAD_DEBUG_CONTROLS); or(s, "GUEST_DR7", BigInt(1 + r) << 32n); } },
  "GUEST.SYSENTER_ESP.CANONICAL": { mode: "long", apply: (s, r) => s.set("GUEST_SYSENTER_ESP", NONCANON | BigInt(r)) },
  "GUEST.SYSENTER_EIP.CANONICAL": { mode: "long", apply: (s, r) => s.set("GUEST_SYSENTER_EIP", NONCANON | BigInt(r)) },
  "GUEST.CET.S_CET": { mode: "long", apply: (s, r) => { or(s, "VM_ENTRY_CONTROLS", ENTRY.LOAD_CET_STATE); s.set("GUEST_S_CET", 1n << BigInt(6 + (r % 4))); } },
  "GUEST.CET.S_CET_SUPPRESS_TRACKER": { mode: "long", apply: (s, r) => { or(s, "VM_ENTRY_CONTROLS", ENTRY.LOAD_CET_STATE); s.set("GUEST_S_CET", 0xc00n | BigInt([0, 1, 4, 0x3c][r % 4]!)); } },
  "GUEST.CET.ISST": { mode: "long", apply: (s, r) => { or(s, "VM_ENTRY_CONTROLS", ENTRY.LOAD_CET_STATE); s.set("GUEST_INTR_SSP_TABLE", NONCANON | BigInt(r)); } },
  "GUEST.CET.SSP": { mode: "long", apply: (s, r) => { or(s, "VM_ENTRY_CONTROLS", ENTRY.LOAD_CET_STATE); s.set("GUEST_SSP", 0x1000n | BigInt(1 + (r % 3))); } },
  "GUEST.PERF_GLOBAL_CTRL.RESERVED": { mode: "long", apply: (s, r) => { or(s, "VM_ENTRY_CONTROLS", ENTRY.LOAD_IA32_PERF_GLOBAL_CTRL); s.set("GUEST_IA32_PERF_GLOBAL_CTRL", 1n << BigInt([4, 8, 31, 35, 40, 63][r % 6]!)); } },
  "GUEST.PAT.VALID": { mode: "long", apply: (s, r) => { or(s, "VM_ENTRY_CONTROLS", ENTRY.LOAD_IA32_PAT); s.set("GUEST_IA32_PAT", BigInt([2, 3, 8, 0xff][r % 4]!) << BigInt(8 * (r % 8))); } },
  "GUEST.EFER.RESERVED": { mode: "long", apply: (s, r) => or(s, "GUEST_IA32_EFER", 1n << BigInt([1, 2, 9, 12, 14, 40][r % 6]!)) },
  "GUEST.EFER.LMA_EQ_IA32E": { mode: "real", apply: (s) => s.set("GUEST_IA32_EFER", 0x500n) },
  "GUEST.EFER.LME_EQ_LMA_IF_PG": { mode: "protected", apply: (s) => s.set("GUEST_IA32_EFER", 0x100n) },
  "GUEST.BNDCFGS": { mode: "long", apply: (s, r) => { or(s, "VM_ENTRY_CONTROLS", ENTRY.LOAD_IA32_BNDCFGS); s.set("GUEST_BNDCFGS", r & 1 ? 1n << BigInt(2 + (r % 10)) : NONCANON); } },
  "GUEST.RTIT_CTL.RESERVED": { mode: "long", apply: (s, r) => { or(s, "VM_ENTRY_CONTROLS", ENTRY.LOAD_IA32_RTIT_CTL); s.set("GUEST_IA32_RTIT_CTL", 1n << BigInt([18, 23, 28, 50, 60][r % 5]!)); } },
  "GUEST.LBR_CTL.RESERVED": { mode: "long", apply: (s, r) => { or(s, "VM_ENTRY_CONTROLS", ENTRY.LOAD_IA32_LBR_CTL); s.set("GUEST_IA32_LBR_CTL", 1n << BigInt([4, 15, 23, 40][r % 4]!)); } },
  "GUEST.PKRS.RESERVED": { mode: "long", apply: (s, r) => { or(s, "VM_ENTRY_CONTROLS", ENTRY.LOAD_PKRS); s.set("GUEST_IA32_PKRS", BigInt(1 + r) << 32n); } },
  "GUEST.UINV": { mode: "long", apply: (s, r) => { or(s, "VM_ENTRY_CONTROLS", ENTRY.LOAD_UINV); s.set("GUEST_UINV", (1 + (r % 255)) << 8); } },
  "GUEST.FRED.STATE": { mode: "long", apply: (s) => { or(s, "VM_ENTRY_CONTROLS", ENTRY.LOAD_IA32_FRED); s.set("GUEST_IA32_FRED_SSP2", 0x1004n); } },
  "GUEST.SEG.TR.SEL_TI": { mode: "long", apply: (s) => or(s, "GUEST_TR_SELECTOR", 4) },
  "GUEST.SEG.LDTR.SEL_TI": { mode: "long", apply: (s) => { usableLdtr(s); or(s, "GUEST_LDTR_SELECTOR", 4); } },
  "GUEST.SEG.SS.RPL_EQ_CS_RPL": { mode: "long", apply: (s, r) => s.set("GUEST_CS_SELECTOR", 0x08 | (1 + (r % 3))) },
  "GUEST.SEG.V86.BASE": { mode: "protected", apply: (s, r) => { toV86(s); s.set("GUEST_DS_BASE", BigInt(1 + r)); } },
  "GUEST.SEG.BASE.TR_FS_GS_CANONICAL": { mode: "long", apply: (s, r) => s.set(["GUEST_TR_BASE", "GUEST_FS_BASE", "GUEST_GS_BASE"][r % 3]!, NONCANON) },
  "GUEST.SEG.LDTR.BASE_CANONICAL": { mode: "long", apply: (s) => { usableLdtr(s); s.set("GUEST_LDTR_BASE", NONCANON); } },
  "GUEST.SEG.CS.BASE_HIGH_ZERO": { mode: "long", apply: (s, r) => s.set("GUEST_CS_BASE", BigInt(1 + (r & 0xff)) << 32n) },
  "GUEST.SEG.SS_DS_ES.BASE_HIGH_ZERO": { mode: "long", apply: (s, r) => s.set(["GUEST_SS_BASE", "GUEST_DS_BASE", "GUEST_ES_BASE"][r % 3]!, BigInt(1 + (r & 0xff)) << 32n) },
  "GUEST.SEG.V86.LIMIT": { mode: "protected", apply: (s, r) => { toV86(s); s.set("GUEST_DS_LIMIT", 0xfff0 + (r % 15)); } },
  "GUEST.SEG.V86.AR": { mode: "protected", apply: (s) => { toV86(s); s.set("GUEST_DS_AR_BYTES", 0xf2); } },
  "GUEST.SEG.CS.TYPE": { mode: "long", apply: (s) => s.set("GUEST_CS_AR_BYTES", 0xa093) },
  "GUEST.SEG.CS.TYPE_UG": { mode: "real", apply: (s, r) => s.set("GUEST_CS_AR_BYTES", 0x90 | [1, 5, 7][r % 3]!) },
  "GUEST.SEG.SS.TYPE": { mode: "long", apply: (s, r) => s.set("GUEST_SS_AR_BYTES", 0xc090 | [1, 5, 9, 11][r % 4]!) },
  "GUEST.SEG.DATA.TYPE": { mode: "long", apply: (s, r) => s.set(["GUEST_DS_AR_BYTES", "GUEST_ES_AR_BYTES", "GUEST_FS_AR_BYTES", "GUEST_GS_AR_BYTES"][r % 4]!, 0xc090 | [0, 2, 9][r % 3]!) },
  "GUEST.SEG.S_BIT": { mode: "long", apply: (s) => s.set("GUEST_DS_AR_BYTES", 0xc083) },
  "GUEST.SEG.CS.DPL": { mode: "long", apply: (s) => s.set("GUEST_CS_AR_BYTES", 0xa0bb) },
  "GUEST.SEG.SS.DPL_EQ_RPL": { mode: "long", apply: (s) => { s.set("GUEST_CS_AR_BYTES", 0xa09f); s.set("GUEST_SS_AR_BYTES", 0xc0b3); } },
  "GUEST.SEG.SS.DPL_ZERO": { mode: "real", apply: (s) => { s.set("GUEST_CS_AR_BYTES", 0x9f); s.set("GUEST_SS_AR_BYTES", 0xf3); } },
  "GUEST.SEG.DATA.DPL_GE_RPL": { mode: "long", apply: (s, r) => s.set("GUEST_DS_SELECTOR", 0x10 | (1 + (r % 3))) },
  "GUEST.SEG.P_BIT": { mode: "long", apply: (s) => s.set("GUEST_DS_AR_BYTES", 0xc013) },
  "GUEST.SEG.AR_RSVD_11_8": { mode: "long", apply: (s, r) => s.set("GUEST_DS_AR_BYTES", 0xc093 | (1 << (8 + (r % 4)))) },
  "GUEST.SEG.CS.DB_WITH_L": { mode: "long", apply: (s) => s.set("GUEST_CS_AR_BYTES", 0xe09b) },
  "GUEST.SEG.GRANULARITY": { mode: "long", apply: (s, r) => s.set("GUEST_DS_LIMIT", 0xffff_f000 + (r % 0xfff)) },
  "GUEST.SEG.AR_RSVD_31_17": { mode: "long", apply: (s, r) => s.set("GUEST_DS_AR_BYTES", (0xc093 | (1 << (17 + (r % 15)))) >>> 0) },
  "GUEST.SEG.FRED.SS_DPL": { mode: "long", apply: (s, r) => { or(s, "GUEST_CR4", CR4.FRED); ring3(s); s.set("GUEST_RFLAGS", 0x2n | (BigInt(1 + (r % 3)) << 12n)); } },
  "GUEST.SEG.FRED.CPL0_64BIT": { mode: "long", apply: (s, r) => { or(s, "GUEST_CR4", CR4.FRED); s.set("GUEST_CS_AR_BYTES", [0xc09b, 0xc09f, 0x809b][r % 3]!); s.set("GUEST_RIP", 0x10_0000n); } },
  "GUEST.SEG.TR.TYPE": { mode: "long", apply: (s, r) => s.set("GUEST_TR_AR_BYTES", 0x80 | [1, 3, 9, 2][r % 4]!) },
  "GUEST.SEG.TR.S": { mode: "long", apply: (s) => s.set("GUEST_TR_AR_BYTES", 0x9b) },
  "GUEST.SEG.TR.P": { mode: "long", apply: (s) => s.set("GUEST_TR_AR_BYTES", 0x0b) },
  "GUEST.SEG.TR.AR_RSVD_11_8": { mode: "long", apply: (s) => s.set("GUEST_TR_AR_BYTES", 0x18b) },
  "GUEST.SEG.TR.GRANULARITY": { mode: "long", apply: (s) => s.set("GUEST_TR_AR_BYTES", 0x808b) },
  "GUEST.SEG.TR.USABLE": { mode: "long", apply: (s) => s.set("GUEST_TR_AR_BYTES", 0x1008b) },
  "GUEST.SEG.TR.AR_RSVD_31_17": { mode: "long", apply: (s) => s.set("GUEST_TR_AR_BYTES", 0x2008b) },
  "GUEST.SEG.LDTR.TYPE": { mode: "long", apply: (s, r) => { usableLdtr(s); s.set("GUEST_LDTR_AR_BYTES", 0x80 | [1, 3, 11][r % 3]!); } },
  "GUEST.SEG.LDTR.S": { mode: "long", apply: (s) => { usableLdtr(s); s.set("GUEST_LDTR_AR_BYTES", 0x92); } },
  "GUEST.SEG.LDTR.P": { mode: "long", apply: (s) => { usableLdtr(s); s.set("GUEST_LDTR_AR_BYTES", 0x02); } },
  "GUEST.SEG.LDTR.AR_RSVD_11_8": { mode: "long", apply: (s) => { usableLdtr(s); s.set("GUEST_LDTR_AR_BYTES", 0x482); } },
  "GUEST.SEG.LDTR.GRANULARITY": { mode: "long", apply: (s, r) => { usableLdtr(s); s.set("GUEST_LDTR_LIMIT", r & 1 ? 0x10_0000 : 0x1000); s.set("GUEST_LDTR_AR_BYTES", r & 1 ? 0x82 : 0x8082); } },
  "GUEST.SEG.LDTR.AR_RSVD_31_17": { mode: "long", apply: (s) => { usableLdtr(s); s.set("GUEST_LDTR_AR_BYTES", 0x40082); } },
  "GUEST.DTR.BASE_CANONICAL": { mode: "long", apply: (s, r) => s.set(r & 1 ? "GUEST_GDTR_BASE" : "GUEST_IDTR_BASE", NONCANON) },
  "GUEST.DTR.LIMIT_HIGH_ZERO": { mode: "long", apply: (s, r) => s.set(r & 1 ? "GUEST_GDTR_LIMIT" : "GUEST_IDTR_LIMIT", ((1 + (r & 0x7fff)) << 16) >>> 0) },
  "GUEST.RIP.HIGH_ZERO": { mode: "protected", apply: (s, r) => s.set("GUEST_RIP", BigInt(1 + r) << 32n) },
  "GUEST.RIP.CANONICAL": { mode: "long", apply: (s, r) => s.set("GUEST_RIP", NONCANON | BigInt(r)) },
  "GUEST.RFLAGS.RESERVED": { mode: "long", apply: (s, r) => s.set("GUEST_RFLAGS", [0x0n, 0xan, 0x22n, 0x8002n, 0x40_0002n, NONCANON | 2n][r % 6]!) },
  "GUEST.RFLAGS.VM": { mode: "real", apply: (s) => toV86(s) },
  "GUEST.RFLAGS.IF_FOR_EXTINT": { mode: "long", apply: (s, r) => { andNot(s, "GUEST_RFLAGS", RFLAGS.IF); inject(s, 0x20 + (r % 0xe0), 0); } },
  "GUEST.ACTIVITY.VALID": { mode: "long", apply: (s, r) => s.set("GUEST_ACTIVITY_STATE", 4 + r) },
  "GUEST.ACTIVITY.HLT_REQUIRES_SS_DPL0": { mode: "long", apply: (s) => { ring3(s); s.set("GUEST_ACTIVITY_STATE", 1); } },
  "GUEST.ACTIVITY.BLOCKING_REQUIRES_ACTIVE": { mode: "long", apply: (s, r) => { s.set("GUEST_RFLAGS", 0x202n); s.set("GUEST_INTERRUPTIBILITY_INFO", 1 + (r % 2)); s.set("GUEST_ACTIVITY_STATE", 1 + (r % 3)); } },
  "GUEST.ACTIVITY.HLT_INJECTION": { mode: "long", apply: (s, r) => { s.set("GUEST_ACTIVITY_STATE", 1); inject(s, [0, 3, 6, 7][r % 4]!, 3); } },
  "GUEST.ACTIVITY.SHUTDOWN_INJECTION": { mode: "long", apply: (s, r) => { s.set("GUEST_ACTIVITY_STATE", 2); inject(s, [1, 3, 6, 7][r % 4]!, 3); } },
  "GUEST.ACTIVITY.WFS_NO_INJECTION": { mode: "long", apply: (s) => { s.set("GUEST_ACTIVITY_STATE", 3); inject(s, 2, 2); } },
  "GUEST.ACTIVITY.SMM_NOT_WFS": { mode: "long", env: () => ({ inSmm: true }), apply: (s) => { or(s, "VM_ENTRY_CONTROLS", ENTRY.ENTRY_TO_SMM); s.set("GUEST_INTERRUPTIBILITY_INFO", 4); s.set("GUEST_ACTIVITY_STATE", 3); } },
  "GUEST.INTR.RESERVED": { mode: "long", apply: (s, r) => s.set("GUEST_INTERRUPTIBILITY_INFO", (1 << (5 + (r % 27))) >>> 0) },
  "GUEST.INTR.STI_MOVSS_EXCLUSIVE": { mode: "long", apply: (s) => { s.set("GUEST_RFLAGS", 0x202n); s.set("GUEST_INTERRUPTIBILITY_INFO", 3); } },
  "GUEST.INTR.STI_REQUIRES_IF": { mode: "long", apply: (s) => { andNot(s, "GUEST_RFLAGS", RFLAGS.IF); s.set("GUEST_INTERRUPTIBILITY_INFO", 1); } },
  "GUEST.INTR.EXTINT_NO_BLOCKING": { mode: "long", apply: (s, r) => { s.set("GUEST_RFLAGS", 0x202n); s.set("GUEST_INTERRUPTIBILITY_INFO", 1 + (r % 2)); inject(s, 0x20, 0); } },
  "GUEST.INTR.NMI_NO_MOVSS": { mode: "long", apply: (s) => { s.set("GUEST_INTERRUPTIBILITY_INFO", 2); inject(s, 2, 2); } },
  "GUEST.INTR.SMI_ONLY_IN_SMM": { mode: "long", apply: (s) => s.set("GUEST_INTERRUPTIBILITY_INFO", 4) },
  "GUEST.INTR.SMI_IF_ENTRY_TO_SMM": { mode: "long", env: () => ({ inSmm: true }), apply: (s) => or(s, "VM_ENTRY_CONTROLS", ENTRY.ENTRY_TO_SMM) },
  "GUEST.INTR.VNMI_INJECT_NOT_BLOCKED": { mode: "long", apply: (s) => { or(s, "PIN_BASED_VM_EXEC_CONTROL", PIN.NMI_EXITING | PIN.VIRTUAL_NMIS); s.set("GUEST_INTERRUPTIBILITY_INFO", 8); inject(s, 2, 2); } },
  "GUEST.INTR.ENCLAVE": { mode: "long", apply: (s) => s.set("GUEST_INTERRUPTIBILITY_INFO", 0x12) },
  "GUEST.INTR.FRED_NO_STI_AT_CPL3": { mode: "long", apply: (s) => { or(s, "GUEST_CR4", CR4.FRED); ring3(s); s.set("GUEST_RFLAGS", 0x202n); s.set("GUEST_INTERRUPTIBILITY_INFO", 1); } },
  "GUEST.PDE.RESERVED": { mode: "long", apply: (s, r) => s.set("GUEST_PENDING_DBG_EXCEPTIONS", 1n << BigInt([4, 7, 11, 13, 15, 17, 40, 63][r % 8]!)) },
  "GUEST.PDE.BS_CONSISTENCY": { mode: "long", apply: (s) => { s.set("GUEST_RFLAGS", 0x202n); s.set("GUEST_INTERRUPTIBILITY_INFO", 1); s.set("GUEST_PENDING_DBG_EXCEPTIONS", 1n << 14n); } },
  "GUEST.PDE.RTM": { mode: "long", apply: (s, r) => s.set("GUEST_PENDING_DBG_EXCEPTIONS", (1n << 16n) | BigInt(r % 16)) },
  "GUEST.LINK.ALIGN": { mode: "long", apply: (s, r) => s.set("VMCS_LINK_POINTER", misaligned(r, 4096)) },
  "GUEST.LINK.PHYS_WIDTH": { mode: "long", apply: (s, r) => s.set("VMCS_LINK_POINTER", BigInt(1 + (r & 0xff)) << 52n) },
  "GUEST.LINK.REVISION": { mode: "long", env: memWith([[0x10000, fullRevision + 1, 4]]), apply: (s) => s.set("VMCS_LINK_POINTER", 0x10000n) },
  "GUEST.LINK.SHADOW_BIT": { mode: "long", env: memWith([[0x10000, (fullRevision | 0x8000_0000) >>> 0, 4]]), apply: (s) => s.set("VMCS_LINK_POINTER", 0x10000n) },
  "GUEST.LINK.NOT_CURRENT_VMCS": { mode: "long", env: () => ({ currentVmcsPointer: 0x20000n }), apply: (s) => s.set("VMCS_LINK_POINTER", 0x20000n) },
  "GUEST.LINK.NOT_EXECUTIVE_VMCS": { mode: "long", env: () => ({ inSmm: true }), apply: (s) => { s.set("EXECUTIVE_VMCS_POINTER", 0x30000n); s.set("VMCS_LINK_POINTER", 0x30000n); } },
  "GUEST.PDPTE.EPT_FIELDS": { mode: "protected", apply: (s, r) => { or(s, "GUEST_CR4", CR4.PAE); s.set(`GUEST_PDPTR${r % 4}`, 0x5001n | (1n << BigInt([1, 2, 5, 6, 7, 8, 52, 63][r % 8]!))); } },
  "GUEST.PDPTE.FROM_CR3": { mode: "protected", env: memWith([[0x20008, 0x5003, 8]]), apply: (s) => { or(s, "GUEST_CR4", CR4.PAE); andNot(s, "SECONDARY_VM_EXEC_CONTROL", PROC2.ENABLE_EPT); s.set("GUEST_CR3", 0x20000n); } },
};
