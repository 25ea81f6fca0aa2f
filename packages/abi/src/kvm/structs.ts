import { array, arrayOf, bytes, defineStruct, nested, pad, type StructLayout, s32, s64, u8, u16, u32, u64 } from "../layout.js";

// Every struct here crosses into the kernel. Sizes and offsets are checked against this
// machine's <linux/kvm.h> by test/header.test.ts; nothing below is trusted without it.

export interface KvmRegs {
  rax: bigint; rbx: bigint; rcx: bigint; rdx: bigint;
  rsi: bigint; rdi: bigint; rsp: bigint; rbp: bigint;
  r8: bigint; r9: bigint; r10: bigint; r11: bigint;
  r12: bigint; r13: bigint; r14: bigint; r15: bigint;
  rip: bigint; rflags: bigint;
}
export const KVM_REGS_NAMES = [
  "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
  "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags",
] as const;
export const KvmRegsLayout: StructLayout<KvmRegs> = defineStruct("struct kvm_regs", KVM_REGS_NAMES.map((n) => u64(n)));

export interface KvmSegment {
  base: bigint; limit: number; selector: number; type: number;
  present: number; dpl: number; db: number; s: number; l: number; g: number; avl: number;
  unusable: number;
}
export const KvmSegmentLayout: StructLayout<KvmSegment> = defineStruct("struct kvm_segment", [
  u64("base"), u32("limit"), u16("selector"), u8("type"),
  u8("present"), u8("dpl"), u8("db"), u8("s"), u8("l"), u8("g"), u8("avl"), u8("unusable"), pad(1),
]);

export interface KvmDtable { base: bigint; limit: number }
export const KvmDtableLayout: StructLayout<KvmDtable> = defineStruct("struct kvm_dtable", [u64("base"), u16("limit"), pad(6)]);

/** KVM_NR_INTERRUPTS is 256: four u64 words. */
export const KVM_NR_INTERRUPTS = 256;
export interface KvmSregs {
  cs: KvmSegment; ds: KvmSegment; es: KvmSegment; fs: KvmSegment; gs: KvmSegment; ss: KvmSegment;
  tr: KvmSegment; ldt: KvmSegment;
  gdt: KvmDtable; idt: KvmDtable;
  cr0: bigint; cr2: bigint; cr3: bigint; cr4: bigint; cr8: bigint;
  efer: bigint; apicBase: bigint;
  interruptBitmap: bigint[];
}
export const KvmSregsLayout: StructLayout<KvmSregs> = defineStruct("struct kvm_sregs", [
  ...(["cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt"] as const).map((n) => nested(KvmSegmentLayout, n)),
  nested(KvmDtableLayout, "gdt"), nested(KvmDtableLayout, "idt"),
  u64("cr0"), u64("cr2"), u64("cr3"), u64("cr4"), u64("cr8"), u64("efer"), u64("apicBase"),
  array(u64(""), KVM_NR_INTERRUPTS / 64, "interruptBitmap"),
]);

export interface KvmFpu {
  fpr: Buffer; fcw: number; fsw: number; ftwx: number; lastOpcode: number;
  lastIp: bigint; lastDp: bigint; xmm: Buffer; mxcsr: number;
}
export const KvmFpuLayout: StructLayout<KvmFpu> = defineStruct("struct kvm_fpu", [
  bytes(128, "fpr"), u16("fcw"), u16("fsw"), u8("ftwx"), pad(1), u16("lastOpcode"),
  u64("lastIp"), u64("lastDp"), bytes(256, "xmm"), u32("mxcsr"), pad(4),
]);

/** The legacy 4 KiB kvm_xsave; KVM_GET_XSAVE2 may use more (KVM_CAP_XSAVE2 says how much). */
export interface KvmXsave { region: Buffer }
export const KvmXsaveLayout: StructLayout<KvmXsave> = defineStruct("struct kvm_xsave", [bytes(4096, "region")]);

export const KVM_MAX_XCRS = 16;
export interface KvmXcr { xcr: number; value: bigint }
export const KvmXcrLayout: StructLayout<KvmXcr> = defineStruct("struct kvm_xcr", [u32("xcr"), pad(4), u64("value")]);
export interface KvmXcrs { nrXcrs: number; flags: number; xcrs: KvmXcr[] }
export const KvmXcrsLayout: StructLayout<KvmXcrs> = defineStruct("struct kvm_xcrs", [
  u32("nrXcrs"), u32("flags"), arrayOf(KvmXcrLayout, KVM_MAX_XCRS, "xcrs"), pad(128),
]);

export interface KvmDebugregs { db: bigint[]; dr6: bigint; dr7: bigint; flags: bigint }
export const KvmDebugregsLayout: StructLayout<KvmDebugregs> = defineStruct("struct kvm_debugregs", [
  array(u64(""), 4, "db"), u64("dr6"), u64("dr7"), u64("flags"), pad(72),
]);

export interface KvmMsrEntry { index: number; data: bigint }
export const KvmMsrEntryLayout: StructLayout<KvmMsrEntry> = defineStruct("struct kvm_msr_entry", [u32("index"), pad(4), u64("data")]);
/** Header of struct kvm_msrs; `entries` (KvmMsrEntry) follow it. */
export interface KvmMsrsHeader { nmsrs: number }
export const KvmMsrsLayout: StructLayout<KvmMsrsHeader> = defineStruct("struct kvm_msrs", [u32("nmsrs"), pad(4)]);
/** Header of struct kvm_msr_list; u32 `indices` follow it. */
export interface KvmMsrListHeader { nmsrs: number }
export const KvmMsrListLayout: StructLayout<KvmMsrListHeader> = defineStruct("struct kvm_msr_list", [u32("nmsrs")]);

export interface KvmCpuidEntry2 {
  function: number; index: number; flags: number; eax: number; ebx: number; ecx: number; edx: number;
}
export const KvmCpuidEntry2Layout: StructLayout<KvmCpuidEntry2> = defineStruct("struct kvm_cpuid_entry2", [
  u32("function"), u32("index"), u32("flags"), u32("eax"), u32("ebx"), u32("ecx"), u32("edx"), pad(12),
]);
/** Header of struct kvm_cpuid2; KvmCpuidEntry2 `entries` follow it. */
export interface KvmCpuid2Header { nent: number }
export const KvmCpuid2Layout: StructLayout<KvmCpuid2Header> = defineStruct("struct kvm_cpuid2", [u32("nent"), pad(4)]);

export interface KvmUserspaceMemoryRegion {
  slot: number; flags: number; guestPhysAddr: bigint; memorySize: bigint; userspaceAddr: bigint;
}
export const KvmUserspaceMemoryRegionLayout: StructLayout<KvmUserspaceMemoryRegion> = defineStruct(
  "struct kvm_userspace_memory_region",
  [u32("slot"), u32("flags"), u64("guestPhysAddr"), u64("memorySize"), u64("userspaceAddr")],
);

export interface KvmIrqLevel { irq: number; level: number }
export const KvmIrqLevelLayout: StructLayout<KvmIrqLevel> = defineStruct("struct kvm_irq_level", [u32("irq"), u32("level")]);

/** kvm_irqchip: chip id + a 512-byte union (PIC or IOAPIC state) kept as raw bytes. */
export interface KvmIrqchip { chipId: number; chip: Buffer }
export const KvmIrqchipLayout: StructLayout<KvmIrqchip> = defineStruct("struct kvm_irqchip", [u32("chipId"), pad(4), bytes(512, "chip")]);

export interface KvmPitConfig { flags: number }
export const KvmPitConfigLayout: StructLayout<KvmPitConfig> = defineStruct("struct kvm_pit_config", [u32("flags"), pad(60)]);

export const KVM_APIC_REG_SIZE = 0x400;
export interface KvmLapicState { regs: Buffer }
export const KvmLapicStateLayout: StructLayout<KvmLapicState> = defineStruct("struct kvm_lapic_state", [bytes(KVM_APIC_REG_SIZE, "regs")]);

/** `dirtyBitmap` is a host pointer: kvm-backend fills it with the address of a Buffer. */
export interface KvmDirtyLog { slot: number; dirtyBitmap: bigint }
export const KvmDirtyLogLayout: StructLayout<KvmDirtyLog> = defineStruct("struct kvm_dirty_log", [u32("slot"), pad(4), u64("dirtyBitmap")]);

export interface KvmClearDirtyLog { slot: number; numPages: number; firstPage: bigint; dirtyBitmap: bigint }
export const KvmClearDirtyLogLayout: StructLayout<KvmClearDirtyLog> = defineStruct("struct kvm_clear_dirty_log", [
  u32("slot"), u32("numPages"), u64("firstPage"), u64("dirtyBitmap"),
]);

export const KVM_MSR_FILTER_MAX_RANGES = 16;
/** One range of an MSR filter. `bitmap` is a host pointer; a 1 bit ALLOWS the access. */
export interface KvmMsrFilterRange { flags: number; nmsrs: number; base: number; bitmap: bigint }
export const KvmMsrFilterRangeLayout: StructLayout<KvmMsrFilterRange> = defineStruct("struct kvm_msr_filter_range", [
  u32("flags"), u32("nmsrs"), u32("base"), pad(4), u64("bitmap"),
]);
export interface KvmMsrFilterRaw { flags: number; ranges: KvmMsrFilterRange[] }
export const KvmMsrFilterLayout: StructLayout<KvmMsrFilterRaw> = defineStruct("struct kvm_msr_filter", [
  u32("flags"), pad(4), arrayOf(KvmMsrFilterRangeLayout, KVM_MSR_FILTER_MAX_RANGES, "ranges"),
]);
/** The filter as users build it: bitmaps as Buffers (kvm-backend turns them into pointers). */
export interface KvmMsrFilter {
  flags: number;
  ranges: Array<{ flags: number; base: number; nmsrs: number; bitmap: Uint8Array }>;
}

export interface KvmEnableCap { cap: number; flags: number; args: bigint[] }
export const KvmEnableCapLayout: StructLayout<KvmEnableCap> = defineStruct("struct kvm_enable_cap", [
  u32("cap"), u32("flags"), array(u64(""), 4, "args"), pad(64),
]);

export interface KvmIoeventfd { datamatch: bigint; addr: bigint; len: number; fd: number; flags: number }
export const KvmIoeventfdLayout: StructLayout<KvmIoeventfd> = defineStruct("struct kvm_ioeventfd", [
  u64("datamatch"), u64("addr"), u32("len"), s32("fd"), u32("flags"), pad(36),
]);

export interface KvmIrqfd { fd: number; gsi: number; flags: number; resamplefd: number }
export const KvmIrqfdLayout: StructLayout<KvmIrqfd> = defineStruct("struct kvm_irqfd", [
  u32("fd"), u32("gsi"), u32("flags"), u32("resamplefd"), pad(16),
]);

export interface KvmGuestDebug { control: number; arch: { debugreg: bigint[] } }
const KvmGuestDebugArchLayout = defineStruct<{ debugreg: bigint[] }>("struct kvm_guest_debug_arch", [array(u64(""), 8, "debugreg")]);
export const KvmGuestDebugLayout: StructLayout<KvmGuestDebug> = defineStruct("struct kvm_guest_debug", [
  u32("control"), pad(4), nested(KvmGuestDebugArchLayout, "arch"),
]);

export interface KvmVcpuEvents {
  exception: { injected: number; nr: number; hasErrorCode: number; pending: number; errorCode: number };
  interrupt: { injected: number; nr: number; soft: number; shadow: number };
  nmi: { injected: number; pending: number; masked: number };
  sipiVector: number;
  flags: number;
  smi: { smm: number; pending: number; smmInsideNmi: number; latchedInit: number };
  tripleFault: { pending: number };
  exceptionHasPayload: number;
  exceptionPayload: bigint;
}
const ExcLayout = defineStruct<KvmVcpuEvents["exception"]>("exception", [u8("injected"), u8("nr"), u8("hasErrorCode"), u8("pending"), u32("errorCode")]);
const IntLayout = defineStruct<KvmVcpuEvents["interrupt"]>("interrupt", [u8("injected"), u8("nr"), u8("soft"), u8("shadow")]);
const NmiLayout = defineStruct<KvmVcpuEvents["nmi"]>("nmi", [u8("injected"), u8("pending"), u8("masked"), pad(1)]);
const SmiLayout = defineStruct<KvmVcpuEvents["smi"]>("smi", [u8("smm"), u8("pending"), u8("smmInsideNmi"), u8("latchedInit")]);
const TfLayout = defineStruct<KvmVcpuEvents["tripleFault"]>("triple_fault", [u8("pending")]);
export const KvmVcpuEventsLayout: StructLayout<KvmVcpuEvents> = defineStruct("struct kvm_vcpu_events", [
  nested(ExcLayout, "exception"), nested(IntLayout, "interrupt"), nested(NmiLayout, "nmi"),
  u32("sipiVector"), u32("flags"), nested(SmiLayout, "smi"), nested(TfLayout, "tripleFault"),
  pad(26), u8("exceptionHasPayload"), u64("exceptionPayload"),
]);

export interface KvmMpState { mpState: number }
export const KvmMpStateLayout: StructLayout<KvmMpState> = defineStruct("struct kvm_mp_state", [u32("mpState")]);

export interface KvmClockData { clock: bigint; flags: number; realtime: bigint; hostTsc: bigint }
export const KvmClockDataLayout: StructLayout<KvmClockData> = defineStruct("struct kvm_clock_data", [
  u64("clock"), u32("flags"), pad(4), u64("realtime"), u64("hostTsc"), pad(16),
]);

export interface KvmInterrupt { irq: number }
export const KvmInterruptLayout: StructLayout<KvmInterrupt> = defineStruct("struct kvm_interrupt", [u32("irq")]);

/**
 * kvm_pic_state: one 8259A as KVM models it (the `pic` member of kvm_irqchip for chip ids
 * KVM_IRQCHIP_PIC_MASTER/SLAVE). `irqBase` is the vector of IRQ 0 of this chip (ICW2); `imr` the
 * mask register; `elcr` the edge/level control register of the PIIX.
 */
export interface KvmPicState {
  lastIrr: number; irr: number; imr: number; isr: number; priorityAdd: number; irqBase: number;
  readRegSelect: number; poll: number; specialMask: number; initState: number; autoEoi: number;
  rotateOnAutoEoi: number; specialFullyNestedMode: number; init4: number; elcr: number; elcrMask: number;
}
export const KvmPicStateLayout: StructLayout<KvmPicState> = defineStruct("struct kvm_pic_state", [
  u8("lastIrr"), u8("irr"), u8("imr"), u8("isr"), u8("priorityAdd"), u8("irqBase"), u8("readRegSelect"), u8("poll"),
  u8("specialMask"), u8("initState"), u8("autoEoi"), u8("rotateOnAutoEoi"), u8("specialFullyNestedMode"),
  u8("init4"), u8("elcr"), u8("elcrMask"),
]);

export const KVM_IOAPIC_NUM_PINS = 24;
/**
 * kvm_ioapic_state (the `ioapic` member of kvm_irqchip). Each redirection-table entry is kept as
 * its 64-bit register value (C declares it as a union with bitfields, which have no offsets).
 */
export interface KvmIoapicState { baseAddress: bigint; ioregsel: number; id: number; irr: number; redirtbl: bigint[] }
export const KvmIoapicStateLayout: StructLayout<KvmIoapicState> = defineStruct("struct kvm_ioapic_state", [
  u64("baseAddress"), u32("ioregsel"), u32("id"), u32("irr"), pad(4), array(u64(""), KVM_IOAPIC_NUM_PINS, "redirtbl"),
]);

/** One i8254 counter as KVM holds it; `mode`, `rwMode`, `bcd` are the 8254 control-word fields. */
export interface KvmPitChannelState {
  count: number; latchedCount: number; countLatched: number; statusLatched: number; status: number;
  readState: number; writeState: number; writeLatch: number; rwMode: number; mode: number; bcd: number;
  gate: number; countLoadTime: bigint;
}
export const KvmPitChannelStateLayout: StructLayout<KvmPitChannelState> = defineStruct("struct kvm_pit_channel_state", [
  u32("count"), u16("latchedCount"), u8("countLatched"), u8("statusLatched"), u8("status"), u8("readState"),
  u8("writeState"), u8("writeLatch"), u8("rwMode"), u8("mode"), u8("bcd"), u8("gate"), s64("countLoadTime"),
]);
export interface KvmPitState2 { channels: KvmPitChannelState[]; flags: number }
export const KvmPitState2Layout: StructLayout<KvmPitState2> = defineStruct("struct kvm_pit_state2", [
  arrayOf(KvmPitChannelStateLayout, 3, "channels"), u32("flags"), pad(36),
]);

/** The `irqchip` member of a GSI routing entry: GSI -> pin of an in-kernel PIC/IOAPIC. */
export interface KvmIrqRoutingIrqchip { irqchip: number; pin: number }
export const KvmIrqRoutingIrqchipLayout: StructLayout<KvmIrqRoutingIrqchip> = defineStruct("struct kvm_irq_routing_irqchip", [
  u32("irqchip"), u32("pin"),
]);
/** The `msi` member of a GSI routing entry: GSI -> an MSI message (address + data). */
export interface KvmIrqRoutingMsi { addressLo: number; addressHi: number; data: number; devid: number }
export const KvmIrqRoutingMsiLayout: StructLayout<KvmIrqRoutingMsi> = defineStruct("struct kvm_irq_routing_msi", [
  u32("addressLo"), u32("addressHi"), u32("data"), u32("devid"),
]);
/** kvm_irq_routing_entry: `u` holds the encoding of the member `type` selects (irqchip or msi). */
export interface KvmIrqRoutingEntry { gsi: number; type: number; flags: number; u: Buffer }
export const KvmIrqRoutingEntryLayout: StructLayout<KvmIrqRoutingEntry> = defineStruct("struct kvm_irq_routing_entry", [
  u32("gsi"), u32("type"), u32("flags"), pad(4), bytes(32, "u"),
]);
/** Header of struct kvm_irq_routing; `nr` KvmIrqRoutingEntry follow it. */
export interface KvmIrqRoutingHeader { nr: number; flags: number }
export const KvmIrqRoutingLayout: StructLayout<KvmIrqRoutingHeader> = defineStruct("struct kvm_irq_routing", [u32("nr"), u32("flags")]);

/** KVM_SIGNAL_MSI's argument: one MSI message to deliver now. */
export interface KvmMsi { addressLo: number; addressHi: number; data: number; flags: number; devid: number }
export const KvmMsiLayout: StructLayout<KvmMsi> = defineStruct("struct kvm_msi", [
  u32("addressLo"), u32("addressHi"), u32("data"), u32("flags"), u32("devid"), pad(12),
]);

/** One dirty-ring entry (KVM_CAP_DIRTY_LOG_RING); `slot` is (address space << 16) | slot id. */
export interface KvmDirtyGfn { flags: number; slot: number; offset: bigint }
export const KvmDirtyGfnLayout: StructLayout<KvmDirtyGfn> = defineStruct("struct kvm_dirty_gfn", [u32("flags"), u32("slot"), u64("offset")]);

/** KVM_(UN)REGISTER_COALESCED_MMIO's argument: a range whose guest writes KVM queues in the ring instead of exiting; `pio` 1 for a port range. */
export interface KvmCoalescedMmioZone { addr: bigint; size: number; pio: number }
export const KvmCoalescedMmioZoneLayout: StructLayout<KvmCoalescedMmioZone> = defineStruct("struct kvm_coalesced_mmio_zone", [u64("addr"), u32("size"), u32("pio")]);
/** One queued write in the coalesced ring: address (or port), length, whether it was port I/O, and up to 8 data bytes. */
export interface KvmCoalescedMmio { physAddr: bigint; len: number; pio: number; data: Buffer }
export const KvmCoalescedMmioLayout: StructLayout<KvmCoalescedMmio> = defineStruct("struct kvm_coalesced_mmio", [u64("physAddr"), u32("len"), u32("pio"), bytes(8, "data")]);
/** Head of the coalesced ring page: KVM writes `last`, the VMM `first`; entries follow. */
export interface KvmCoalescedMmioRing { first: number; last: number }
export const KvmCoalescedMmioRingLayout: StructLayout<KvmCoalescedMmioRing> = defineStruct("struct kvm_coalesced_mmio_ring", [u32("first"), u32("last")]);

/** Every struct, for the header test and for tools that list them. */
export const ALL_STRUCTS: readonly StructLayout<unknown>[] = [
  KvmRegsLayout, KvmSegmentLayout, KvmDtableLayout, KvmSregsLayout, KvmFpuLayout, KvmXsaveLayout,
  KvmXcrLayout, KvmXcrsLayout, KvmDebugregsLayout, KvmMsrEntryLayout, KvmMsrsLayout, KvmMsrListLayout,
  KvmCpuidEntry2Layout, KvmCpuid2Layout, KvmUserspaceMemoryRegionLayout, KvmIrqLevelLayout,
  KvmIrqchipLayout, KvmPitConfigLayout, KvmLapicStateLayout, KvmDirtyLogLayout, KvmClearDirtyLogLayout,
  KvmMsrFilterRangeLayout, KvmMsrFilterLayout, KvmEnableCapLayout, KvmIoeventfdLayout, KvmIrqfdLayout,
  KvmGuestDebugLayout, KvmVcpuEventsLayout, KvmMpStateLayout, KvmClockDataLayout, KvmInterruptLayout,
  KvmPicStateLayout, KvmIoapicStateLayout, KvmPitChannelStateLayout, KvmPitState2Layout, KvmIrqRoutingIrqchipLayout,
  KvmIrqRoutingMsiLayout, KvmIrqRoutingEntryLayout, KvmIrqRoutingLayout, KvmMsiLayout, KvmDirtyGfnLayout,
  KvmCoalescedMmioZoneLayout, KvmCoalescedMmioLayout, KvmCoalescedMmioRingLayout,
] as unknown as readonly StructLayout<unknown>[];
