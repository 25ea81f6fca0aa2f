import type {
  KvmClockData, KvmCpuidEntry2, KvmDebugregs, KvmFpu, KvmLapicState, KvmMsrEntry, KvmPitState2, KvmRegs, KvmSregs,
  KvmVcpuEvents, KvmXcr, KvmXsave,
} from "@tsvmm/abi";

/** One vCPU as KVM holds it (every field a KVM_GET_* result, decoded by its abi layout). */
export interface VcpuState {
  id: number;
  regs: KvmRegs;
  sregs: KvmSregs;
  fpu: KvmFpu;
  /** null where the host has no KVM_CAP_XSAVE (then `fpu` carries the x87/SSE state). */
  xsave: KvmXsave | null;
  xcrs: KvmXcr[] | null;
  /** Every MSR of KVM_GET_MSR_INDEX_LIST this vCPU could read, in list order. */
  msrs: KvmMsrEntry[];
  /** null without an in-kernel irqchip. */
  lapic: KvmLapicState | null;
  events: KvmVcpuEvents;
  mpState: number;
  debugRegs: KvmDebugregs;
  /** The table the VMM set (KVM_SET_CPUID2) and the one KVM held after it (what the guest sees). */
  cpuid: { set: KvmCpuidEntry2[]; held: KvmCpuidEntry2[] };
  tscKhz: number | null;
}

/** A memory slot and where its bytes are in memory.bin. */
export interface SlotState {
  slot: number;
  gpa: number;
  size: number;
  readonly: boolean;
  logDirty: boolean;
  name: string;
  /** Backed by memory shared with other VMs (a GuestRam): restored as a private copy unless one is given. */
  shared: boolean;
  fileOffset: number;
}

/** The in-kernel devices: PICs and IOAPIC as KVM's raw 512-byte kvm_irqchip unions, PIT, clock. */
export interface VmState {
  irqchip: { picMaster: Buffer; picSlave: Buffer; ioapic: Buffer } | null;
  pit2: KvmPitState2 | null;
  clock: KvmClockData | null;
}

/** What the host offered when the snapshot was taken, for the compatibility check on restore. */
export interface HostInfo {
  vendor: string;
  kvmApi: number;
  supportedCpuid: KvmCpuidEntry2[];
  caps: Record<string, number>;
  msrIndexList: number[];
}

export interface DeviceStateRecord {
  /** Where the device sits: `pio:0x3f8` (its lowest range), stable for a given VM configuration. */
  id: string;
  name: string;
  state: unknown;
}

/** state.json, decoded. */
export interface SnapshotState {
  /** The VM configuration (the serializable fields of VmmSpec), enough to build the same machine. */
  spec: Record<string, unknown>;
  /** VmmSpec fields that could not be saved (callbacks, objects): a restore must be given them again. */
  notSaved: string[];
  boot: { format: string; secondaries: "same-state" | "wait-for-sipi"; description: string };
  host: HostInfo;
  vm: VmState;
  slots: SlotState[];
  /** Runs of written pages in memory.bin: [first page, page count], ascending, not touching. */
  memoryRuns: [number, number][];
  vcpus: VcpuState[];
  devices: DeviceStateRecord[];
  run: { started: boolean; running: number[]; exitCodes: [number, number][] };
}
