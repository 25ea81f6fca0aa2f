import {
  GuestMemoryMap, type GuestRegion, KVM_IOCTLS as IOC, KVM_CAP, KVM_IOEVENTFD_FLAG_DATAMATCH, KVM_IOEVENTFD_FLAG_DEASSIGN,
  KVM_IOEVENTFD_FLAG_PIO, KVM_IRQ_ROUTING, KVM_IRQCHIP_IOAPIC, type KVM_IRQCHIP_PIC_MASTER, type KVM_IRQCHIP_PIC_SLAVE,
  KVM_IRQFD_FLAG_DEASSIGN, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY, KVM_MSI_VALID_DEVID, KVM_MSR_FILTER_MAX_RANGES,
  KvmClearDirtyLogLayout, type KvmClockData, KvmClockDataLayout, KvmCoalescedMmioZoneLayout, KvmDirtyLogLayout, KvmEnableCapLayout, type KvmIoapicState,
  KvmIoapicStateLayout, KvmIoeventfdLayout, type KvmIrqchip, KvmIrqchipLayout, KvmIrqfdLayout, KvmIrqLevelLayout,
  KvmIrqRoutingEntryLayout, KvmIrqRoutingIrqchipLayout, KvmIrqRoutingLayout, KvmIrqRoutingMsiLayout, KvmMsiLayout,
  type KvmMsrFilter, KvmMsrFilterLayout, type KvmPicState, KvmPicStateLayout, KvmPitConfigLayout, type KvmPitState2,
  KvmPitState2Layout, KvmUserspaceMemoryRegionLayout, type StructLayout,validateKvmMsrFilter, 
} from "@tsvmm/abi";
import { COALESCED_RING_BYTES, CoalescedRing } from "./coalesced.js";
import type { DirtyPage } from "./dirty-ring.js";
import { ioctlError, KvmError, syscallError } from "./errors.js";
import type { EventFd } from "./eventfd.js";
import type { GuestRam } from "./guest-ram.js";
import type { GsiRoute, MsiMessage } from "./irq.js";
import { type NativeAddon, native } from "./native.js";
import { Vcpu } from "./vcpu.js";

const PAGE = 4096;

export interface MemorySlotOptions {
  slot: number;
  guestPhysAddr: number;
  /** Bytes; a multiple of 4096. */
  size: number;
  /** Guest writes exit as MMIO (is_write=1) and leave memory unchanged. */
  readonly?: boolean;
  /** Track guest writes per 4 KiB page (KVM_GET_DIRTY_LOG). */
  logDirty?: boolean;
  name?: string;
  /** Back the slot with this (possibly shared) memory instead of a fresh private mapping. */
  ram?: GuestRam;
  /**
   * Back the slot with a private copy-on-write mapping of this open file (MAP_PRIVATE) from
   * `offset` (a multiple of 4096): pages are read from the file on first touch, writes stay in
   * this VM. The file must hold at least `size` bytes from `offset`; the fd may be closed after.
   */
  file?: { fd: number; offset?: number };
}

export interface MemorySlot extends GuestRegion {
  readonly slot: number;
  readonly readonly: boolean;
  readonly logDirty: boolean;
}

interface SlotRecord extends MemorySlot {
  /** Our own mapping, or undefined when the slot is backed by a GuestRam. */
  ab: ArrayBuffer | undefined;
  ram: GuestRam | undefined;
}

export interface IoeventfdOptions {
  /** Port (pio) or guest-physical address (mmio). */
  addr: number | bigint;
  /** 1, 2, 4 or 8; 0 matches any length (mmio only). */
  len: number;
  pio?: boolean;
  /** Only writes of this value signal. */
  datamatch?: bigint | number;
}

/**
 * A virtual machine: memory slots, vCPUs and the in-kernel devices. Guest memory is mmap'ed by the
 * addon and exposed through `memory` (abi GuestMemory) without copies. `close()` releases every
 * vCPU, mapping and fd; released guest memory goes back to the kernel, which zero-fills it before
 * any reuse, so nothing of a guest outlives it.
 */
export class Vm {
  private fdValue: number;
  private readonly n: NativeAddon;
  private readonly slots = new Map<number, SlotRecord>();
  private readonly vcpus = new Set<Vcpu>();
  private mem: GuestMemoryMap = new GuestMemoryMap([]);
  private dirtyRingBytes = 0;
  private coalescedPage: number | undefined;
  private coalescedPio: boolean | undefined;
  private ring: CoalescedRing | undefined;
  private pit = false;

  /** @internal Created by Kvm.createVm. */
  constructor(
    fd: number,
    private readonly vcpuMmapSize: number,
    private readonly onClose: (vm: Vm) => void,
  ) {
    this.n = native();
    this.fdValue = fd;
  }

  get fd(): number {
    if (this.fdValue < 0) throw new KvmError("KVM_CLOSED", "VM is closed");
    return this.fdValue;
  }
  get closed(): boolean {
    return this.fdValue < 0;
  }

  private ioctlInt(request: number, arg: number | bigint = 0, what?: string): number {
    const r = this.n.ioctl(this.fd, request, arg);
    if (r < 0) throw ioctlError(request, r, what);
    return r;
  }
  private ioctlStruct<T>(request: number, layout: StructLayout<T>, value: T, what?: string): number {
    const buf = layout.encode(value);
    const r = this.n.ioctlBuf(this.fd, request, buf);
    if (r < 0) throw ioctlError(request, r, what);
    return r;
  }

  // ---- memory -----------------------------------------------------------------------------

  /** All slots as one GuestMemory (a new object after each add/remove). */
  get memory(): GuestMemoryMap {
    return this.mem;
  }
  get memorySlots(): readonly MemorySlot[] {
    return [...this.slots.values()];
  }

  /** mmap fresh zeroed memory and register it as a KVM memory slot. */
  addMemory(o: MemorySlotOptions): MemorySlot {
    const fd = this.fd;
    if (!Number.isInteger(o.slot) || o.slot < 0 || o.slot > 0x7fff) throw new KvmError("KVM_INVALID_ARGUMENT", `slot ${o.slot} is not a valid slot number`);
    if (this.slots.has(o.slot)) throw new KvmError("KVM_INVALID_ARGUMENT", `slot ${o.slot} is in use`);
    if (!Number.isSafeInteger(o.size) || o.size <= 0 || o.size % PAGE !== 0) throw new KvmError("KVM_INVALID_ARGUMENT", `size ${o.size} must be a positive multiple of 4096`);
    if (!Number.isSafeInteger(o.guestPhysAddr) || o.guestPhysAddr < 0 || o.guestPhysAddr % PAGE !== 0) {
      throw new KvmError("KVM_INVALID_ARGUMENT", `guestPhysAddr 0x${o.guestPhysAddr.toString(16)} must be 4 KiB aligned`);
    }
    for (const s of this.slots.values()) {
      if (o.guestPhysAddr < s.base + s.size && s.base < o.guestPhysAddr + o.size) {
        throw new KvmError("KVM_INVALID_ARGUMENT", `slot ${o.slot} [0x${o.guestPhysAddr.toString(16)}, +0x${o.size.toString(16)}) overlaps slot ${s.slot}`);
      }
    }
    let ab: ArrayBuffer | undefined;
    let buffer: Buffer;
    let userspaceAddr: bigint;
    if (o.ram !== undefined && o.file !== undefined) throw new KvmError("KVM_INVALID_ARGUMENT", `slot ${o.slot}: give ram or file, not both`);
    if (o.file !== undefined) {
      const off = o.file.offset ?? 0;
      if (!Number.isSafeInteger(off) || off < 0 || off % PAGE !== 0) throw new KvmError("KVM_INVALID_ARGUMENT", `slot ${o.slot}: file offset ${off} must be a multiple of 4096`);
      const c = this.n.constants;
      const m = this.n.mmap(o.file.fd, o.size, c.PROT_READ | c.PROT_WRITE, c.MAP_PRIVATE | c.MAP_NORESERVE, off);
      if (typeof m === "number") throw syscallError("mmap", m, `${o.size} bytes of guest memory from fd ${o.file.fd}`);
      ab = m;
      buffer = Buffer.from(m);
      userspaceAddr = this.n.address(m);
    } else if (o.ram !== undefined) {
      if (o.ram.size !== o.size) throw new KvmError("KVM_INVALID_ARGUMENT", `slot ${o.slot}: size ${o.size} differs from its GuestRam's ${o.ram.size}`);
      buffer = o.ram.buffer;
      userspaceAddr = o.ram.address();
    } else {
      const c = this.n.constants;
      const m = this.n.mmap(-1, o.size, c.PROT_READ | c.PROT_WRITE, c.MAP_PRIVATE | c.MAP_ANONYMOUS | c.MAP_NORESERVE, 0);
      if (typeof m === "number") throw syscallError("mmap", m, `${o.size} bytes of guest memory`);
      ab = m;
      buffer = Buffer.from(m);
      userspaceAddr = this.n.address(m);
    }
    const flags = (o.readonly ? KVM_MEM_READONLY : 0) | (o.logDirty ? KVM_MEM_LOG_DIRTY_PAGES : 0);
    const r = this.n.ioctlBuf(
      fd,
      IOC.KVM_SET_USER_MEMORY_REGION,
      KvmUserspaceMemoryRegionLayout.encode({ slot: o.slot, flags, guestPhysAddr: BigInt(o.guestPhysAddr), memorySize: BigInt(o.size), userspaceAddr }),
    );
    if (r < 0) {
      if (ab !== undefined) this.n.munmap(ab);
      throw ioctlError(IOC.KVM_SET_USER_MEMORY_REGION, r, `slot ${o.slot}`);
    }
    o.ram?.acquire();
    const rec: SlotRecord = {
      slot: o.slot, base: o.guestPhysAddr, size: o.size, buffer, readonly: o.readonly ?? false,
      logDirty: o.logDirty ?? false, name: o.name ?? `slot${o.slot}`, ab, ram: o.ram,
    };
    this.slots.set(o.slot, rec);
    this.rebuildMemory();
    return rec;
  }

  /** Unregister a slot and unmap its memory. */
  removeMemory(slot: number): void {
    const s = this.slots.get(slot);
    if (s === undefined) throw new KvmError("KVM_INVALID_ARGUMENT", `no memory slot ${slot}`);
    const r = this.n.ioctlBuf(this.fd, IOC.KVM_SET_USER_MEMORY_REGION, KvmUserspaceMemoryRegionLayout.encode({ slot, flags: 0, guestPhysAddr: BigInt(s.base), memorySize: 0n, userspaceAddr: 0n }));
    if (r < 0) throw ioctlError(IOC.KVM_SET_USER_MEMORY_REGION, r, `removing slot ${slot}`);
    this.releaseSlot(s);
    this.rebuildMemory();
  }

  private releaseSlot(s: SlotRecord): void {
    // Our own memory is private and anonymous: munmap gives the pages back to the kernel, which
    // zero-fills them before anyone else can map them, so nothing of this guest outlives it and a
    // memset here would only fault in pages the guest never touched. Shared memory belongs to its
    // GuestRam (other VMs may still use it) and is cleared when that is closed.
    if (s.ab !== undefined) {
      this.n.munmap(s.ab);
    } else {
      s.ram?.release();
    }
    this.slots.delete(s.slot);
  }

  private rebuildMemory(): void {
    this.mem = new GuestMemoryMap([...this.slots.values()].map((s) => ({ base: s.base, size: s.size, buffer: s.buffer, name: s.name })));
  }

  /** KVM_GET_DIRTY_LOG: one bit per 4 KiB page of the slot, reset by the read. */
  getDirtyLog(slot: number): Buffer {
    const s = this.slots.get(slot);
    if (s === undefined) throw new KvmError("KVM_INVALID_ARGUMENT", `no memory slot ${slot}`);
    const pages = s.size / PAGE;
    const bitmap = Buffer.alloc(Math.ceil(pages / 64) * 8);
    this.ioctlStruct(IOC.KVM_GET_DIRTY_LOG, KvmDirtyLogLayout, { slot, dirtyBitmap: this.n.address(bitmap) }, `slot ${slot}`);
    return bitmap;
  }

  /** Page indices (within the slot) whose dirty bit is set. */
  dirtyPages(slot: number): number[] {
    const bm = this.getDirtyLog(slot);
    const out: number[] = [];
    for (let i = 0; i < bm.length; i++) {
      const b = bm[i]!;
      if (b === 0) continue;
      for (let bit = 0; bit < 8; bit++) if (b & (1 << bit)) out.push(i * 8 + bit);
    }
    return out;
  }

  /** KVM_CLEAR_DIRTY_LOG (needs enableCap(MANUAL_DIRTY_LOG_PROTECT2)); first page and count multiples of 64. */
  clearDirtyLog(slot: number, firstPage: number, numPages: number, bitmap: Buffer): void {
    this.ioctlStruct(IOC.KVM_CLEAR_DIRTY_LOG, KvmClearDirtyLogLayout, { slot, numPages, firstPage: BigInt(firstPage), dirtyBitmap: this.n.address(bitmap) }, `slot ${slot}`);
  }

  /**
   * Enable per-vCPU dirty rings of `bytes` each (KVM_CAP_DIRTY_LOG_RING; a power of two, at least a
   * page, at most what checkExtension(DIRTY_LOG_RING) answers). Only before the first vCPU. Slots
   * with `logDirty` then report written pages through the rings (harvestDirtyRings) instead of
   * KVM_GET_DIRTY_LOG. A vCPU whose ring fills exits with `dirty_ring_full`: harvest, then run on.
   */
  enableDirtyRing(bytes: number): void {
    if (this.vcpus.size > 0) throw new KvmError("KVM_INVALID_ARGUMENT", "the dirty ring must be enabled before the first vCPU is created");
    if (!Number.isInteger(bytes) || bytes < PAGE || (bytes & (bytes - 1)) !== 0) {
      throw new KvmError("KVM_INVALID_ARGUMENT", `dirty ring size ${bytes} must be a power of two of at least ${PAGE} bytes`);
    }
    // The plain capability where the host has it (x86 does); the acquire/release one otherwise.
    const cap = this.checkExtension(KVM_CAP.DIRTY_LOG_RING) > 0 ? KVM_CAP.DIRTY_LOG_RING : KVM_CAP.DIRTY_LOG_RING_ACQ_REL;
    this.enableCap(cap, [BigInt(bytes)]);
    this.dirtyRingBytes = bytes;
  }

  /**
   * Collect every page the vCPUs' dirty rings published, in ring order per vCPU, hand the entries
   * back and re-protect the pages (KVM_RESET_DIRTY_RINGS), so the next write to any of them is
   * logged again. A page can appear more than once: KVM logs each write it emulates itself.
   *
   * KVM checks a ring's soft limit when it enters the guest. Writes it emulates in a row without
   * re-entering (all guest CPL0 code on a PVM host) can overrun a ring whose reserve (64 entries)
   * they exceed, and overwritten entries are lost: size the ring for what a guest can dirty
   * between two exits.
   */
  harvestDirtyRings(): DirtyPage[] {
    const out: DirtyPage[] = [];
    let n = 0;
    for (const v of this.vcpus) n += v.dirtyRing?.harvest(out) ?? 0;
    if (n > 0) this.resetDirtyRings();
    return out;
  }
  /** KVM_RESET_DIRTY_RINGS: returns how many entries KVM took back. */
  resetDirtyRings(): number {
    return this.ioctlInt(IOC.KVM_RESET_DIRTY_RINGS);
  }

  // ---- platform ----------------------------------------------------------------------------

  setTssAddr(addr: number): void {
    this.ioctlInt(IOC.KVM_SET_TSS_ADDR, addr);
  }
  setIdentityMapAddr(addr: bigint | number): void {
    const buf = Buffer.alloc(8);
    buf.writeBigUInt64LE(BigInt(addr));
    const r = this.n.ioctlBuf(this.fd, IOC.KVM_SET_IDENTITY_MAP_ADDR, buf);
    if (r < 0) throw ioctlError(IOC.KVM_SET_IDENTITY_MAP_ADDR, r);
  }
  /** In-kernel PIC + IOAPIC + LAPICs. */
  createIrqchip(): void {
    this.ioctlInt(IOC.KVM_CREATE_IRQCHIP);
  }
  /** Split irqchip: LAPICs in the kernel, PIC/IOAPIC in userspace (`pins` IOAPIC routes). */
  createSplitIrqchip(pins = 24): void {
    this.enableCap(KVM_CAP.SPLIT_IRQCHIP, [BigInt(pins)]);
  }
  /** KVM_CREATE_PIT2: the in-kernel i8254 on ports 0x40-0x43, and 0x61 only with KVM_PIT_SPEAKER_DUMMY (needs the irqchip). */
  createPit2(flags = 0): void {
    this.ioctlStruct(IOC.KVM_CREATE_PIT2, KvmPitConfigLayout, { flags });
    this.pit = true;
  }
  /** True once createPit2() succeeded: KVM has no call that tells. */
  get hasPit2(): boolean {
    return this.pit;
  }
  /** KVM_GET_PIT2: the in-kernel i8254's three counters and flags (KVM_PIT_FLAGS_*). */
  getPit2(): KvmPitState2 {
    const buf = Buffer.alloc(KvmPitState2Layout.size);
    const r = this.n.ioctlBuf(this.fd, IOC.KVM_GET_PIT2, buf);
    if (r < 0) throw ioctlError(IOC.KVM_GET_PIT2, r);
    return KvmPitState2Layout.decode(buf);
  }
  /** KVM_SET_PIT2. KVM reloads each counter's count as if just written (count_load_time = now). */
  setPit2(state: KvmPitState2): void {
    this.ioctlStruct(IOC.KVM_SET_PIT2, KvmPitState2Layout, state);
  }
  irqLine(irq: number, level: boolean | number): void {
    this.ioctlStruct(IOC.KVM_IRQ_LINE, KvmIrqLevelLayout, { irq, level: level ? 1 : 0 }, `irq ${irq}`);
  }
  getIrqchip(chipId: number): KvmIrqchip {
    const buf = KvmIrqchipLayout.encode({ chipId, chip: Buffer.alloc(0) });
    const r = this.n.ioctlBuf(this.fd, IOC.KVM_GET_IRQCHIP, buf);
    if (r < 0) throw ioctlError(IOC.KVM_GET_IRQCHIP, r);
    return KvmIrqchipLayout.decode(buf);
  }
  setIrqchip(chip: KvmIrqchip): void {
    this.ioctlStruct(IOC.KVM_SET_IRQCHIP, KvmIrqchipLayout, chip);
  }
  /** One in-kernel 8259A (KVM_IRQCHIP_PIC_MASTER or KVM_IRQCHIP_PIC_SLAVE), field by field. */
  getPic(chipId: typeof KVM_IRQCHIP_PIC_MASTER | typeof KVM_IRQCHIP_PIC_SLAVE): KvmPicState {
    return KvmPicStateLayout.decode(this.getIrqchip(chipId).chip);
  }
  setPic(chipId: typeof KVM_IRQCHIP_PIC_MASTER | typeof KVM_IRQCHIP_PIC_SLAVE, state: KvmPicState): void {
    const chip = this.getIrqchip(chipId).chip;
    KvmPicStateLayout.encode(state, chip);
    this.setIrqchip({ chipId, chip });
  }
  /** The in-kernel IOAPIC; decode a `redirtbl` entry with `decodeIoapicRedirection`. */
  getIoapic(): KvmIoapicState {
    return KvmIoapicStateLayout.decode(this.getIrqchip(KVM_IRQCHIP_IOAPIC).chip);
  }
  setIoapic(state: KvmIoapicState): void {
    const chip = this.getIrqchip(KVM_IRQCHIP_IOAPIC).chip;
    KvmIoapicStateLayout.encode(state, chip);
    this.setIrqchip({ chipId: KVM_IRQCHIP_IOAPIC, chip });
  }

  /**
   * KVM_SET_GSI_ROUTING: replace the whole GSI routing table. With KVM_CREATE_IRQCHIP the table
   * starts as `x86DefaultGsiRoutes()`; include those entries to keep KVM_IRQ_LINE reaching the PIC
   * and IOAPIC. With a split irqchip only MSI routes exist.
   */
  setGsiRouting(routes: readonly GsiRoute[]): void {
    const head = KvmIrqRoutingLayout.size;
    const size = KvmIrqRoutingEntryLayout.size;
    const buf = Buffer.alloc(head + routes.length * size);
    KvmIrqRoutingLayout.encode({ nr: routes.length, flags: 0 }, buf);
    for (const [i, r] of routes.entries()) {
      const u = r.type === "irqchip"
        ? KvmIrqRoutingIrqchipLayout.encode({ irqchip: r.irqchip, pin: r.pin })
        : KvmIrqRoutingMsiLayout.encode({ addressLo: r.msi.addressLo, addressHi: r.msi.addressHi ?? 0, data: r.msi.data, devid: r.msi.devid ?? 0 });
      const type = r.type === "irqchip" ? KVM_IRQ_ROUTING.IRQCHIP : KVM_IRQ_ROUTING.MSI;
      const flags = r.type === "msi" && r.msi.devid !== undefined ? KVM_MSI_VALID_DEVID : 0;
      KvmIrqRoutingEntryLayout.encode({ gsi: r.gsi, type, flags, u }, buf, head + i * size);
    }
    const r = this.n.ioctlBuf(this.fd, IOC.KVM_SET_GSI_ROUTING, buf);
    if (r < 0) throw ioctlError(IOC.KVM_SET_GSI_ROUTING, r, `${routes.length} routes`);
  }

  /**
   * KVM_SIGNAL_MSI: deliver one MSI now (works with the full and the split irqchip). Returns how
   * many LAPICs accepted it; 0 when the message was blocked (e.g. the vector is already pending).
   */
  signalMsi(msg: MsiMessage): number {
    const flags = msg.devid !== undefined ? KVM_MSI_VALID_DEVID : 0;
    return this.ioctlStruct(IOC.KVM_SIGNAL_MSI, KvmMsiLayout, {
      addressLo: msg.addressLo, addressHi: msg.addressHi ?? 0, data: msg.data, flags, devid: msg.devid ?? 0,
    });
  }
  getClock(): KvmClockData {
    const buf = Buffer.alloc(KvmClockDataLayout.size);
    const r = this.n.ioctlBuf(this.fd, IOC.KVM_GET_CLOCK, buf);
    if (r < 0) throw ioctlError(IOC.KVM_GET_CLOCK, r);
    return KvmClockDataLayout.decode(buf);
  }
  setClock(c: KvmClockData): void {
    this.ioctlStruct(IOC.KVM_SET_CLOCK, KvmClockDataLayout, c);
  }
  /** KVM_ENABLE_CAP on the VM. */
  enableCap(cap: number, args: bigint[] = [], flags = 0): void {
    const a = [...args, 0n, 0n, 0n, 0n].slice(0, 4);
    this.ioctlStruct(IOC.KVM_ENABLE_CAP, KvmEnableCapLayout, { cap, flags, args: a }, `cap ${cap}`);
  }
  /** KVM_CHECK_EXTENSION on the VM fd (answers can differ from /dev/kvm's). */
  checkExtension(cap: number): number {
    return this.ioctlInt(IOC.KVM_CHECK_EXTENSION, cap);
  }

  /** Make RDMSR/WRMSR exit to userspace for the given KVM_MSR_EXIT_REASON_* mask. */
  enableUserSpaceMsr(reasons: number): void {
    this.enableCap(KVM_CAP.X86_USER_SPACE_MSR, [BigInt(reasons)]);
  }

  /** KVM_X86_SET_MSR_FILTER. KVM copies the bitmaps, so the Buffers need not outlive the call. */
  /**
   * KVM_X86_SET_MSR_FILTER. The filter is checked first with abi's validateKvmMsrFilter (the rules
   * KVM applies, and ranges that could never match): a bad one throws KvmMsrFilterError and KVM
   * is not called.
   */
  setMsrFilter(filter: KvmMsrFilter): void {
    validateKvmMsrFilter(filter);
    const ranges = filter.ranges.map((r) => ({ flags: r.flags, nmsrs: r.nmsrs, base: r.base, bitmap: this.n.address(r.bitmap) }));
    while (ranges.length < KVM_MSR_FILTER_MAX_RANGES) ranges.push({ flags: 0, nmsrs: 0, base: 0, bitmap: 0n });
    this.ioctlStruct(IOC.KVM_X86_SET_MSR_FILTER, KvmMsrFilterLayout, { flags: filter.flags, ranges });
  }

  /** Guest accesses to `addr` signal `eventfd` inside the kernel, without an exit to userspace. */
  registerIoeventfd(eventfd: EventFd, o: IoeventfdOptions): void {
    this.ioeventfd(eventfd, o, 0);
  }
  unregisterIoeventfd(eventfd: EventFd, o: IoeventfdOptions): void {
    this.ioeventfd(eventfd, o, KVM_IOEVENTFD_FLAG_DEASSIGN);
  }
  private ioeventfd(eventfd: EventFd, o: IoeventfdOptions, extra: number): void {
    const flags = extra | (o.pio ? KVM_IOEVENTFD_FLAG_PIO : 0) | (o.datamatch !== undefined ? KVM_IOEVENTFD_FLAG_DATAMATCH : 0);
    this.ioctlStruct(IOC.KVM_IOEVENTFD, KvmIoeventfdLayout, { datamatch: BigInt(o.datamatch ?? 0), addr: BigInt(o.addr), len: o.len, fd: eventfd.fd, flags });
  }
  /** Writes to `eventfd` raise `gsi` (needs an in-kernel irqchip). */
  registerIrqfd(eventfd: EventFd, gsi: number): void {
    this.ioctlStruct(IOC.KVM_IRQFD, KvmIrqfdLayout, { fd: eventfd.fd, gsi, flags: 0, resamplefd: 0 });
  }
  unregisterIrqfd(eventfd: EventFd, gsi: number): void {
    this.ioctlStruct(IOC.KVM_IRQFD, KvmIrqfdLayout, { fd: eventfd.fd, gsi, flags: KVM_IRQFD_FLAG_DEASSIGN, resamplefd: 0 });
  }

  // ---- coalesced I/O ----------------------------------------------------------------------

  /**
   * The page of a vCPU's mapping that holds the coalesced ring (KVM_CHECK_EXTENSION of
   * KVM_CAP_COALESCED_MMIO answers it), or 0 when KVM has no ring or the mapping does not reach it.
   */
  get coalescedRingPage(): number {
    if (this.coalescedPage === undefined) {
      const page = this.checkExtension(KVM_CAP.COALESCED_MMIO);
      this.coalescedPage = page > 0 && (page + 1) * PAGE <= this.vcpuMmapSize ? page : 0;
    }
    return this.coalescedPage;
  }
  /** True when KVM can queue port writes in the ring (KVM_CAP_COALESCED_PIO) and the ring is reachable. */
  get coalescedPioOffered(): boolean {
    this.coalescedPio ??= this.coalescedRingPage > 0 && this.checkExtension(KVM_CAP.COALESCED_PIO) > 0;
    return this.coalescedPio;
  }

  /**
   * Queue guest writes to [addr, addr + size) in the coalesced ring instead of exiting (reads
   * still exit). Only writes that fall wholly inside the zone are queued. Drain the ring
   * (coalescedRing().drain) before handling any exit and before touching the device otherwise.
   */
  registerCoalescedMmio(addr: number | bigint, size: number): void {
    this.coalescedZone(IOC.KVM_REGISTER_COALESCED_MMIO, BigInt(addr), size, false);
  }
  unregisterCoalescedMmio(addr: number | bigint, size: number): void {
    this.coalescedZone(IOC.KVM_UNREGISTER_COALESCED_MMIO, BigInt(addr), size, false);
  }
  /**
   * The same for ports [port, port + size): an OUT of a size that fits in the zone is queued.
   * Throws KVM_INVALID_ARGUMENT where KVM_CAP_COALESCED_PIO is missing (an older KVM would take
   * the zone as MMIO at that address).
   */
  registerCoalescedPio(port: number, size: number): void {
    this.coalescedZone(IOC.KVM_REGISTER_COALESCED_MMIO, this.pioZone(port, size), size, true);
  }
  /** Remove the zone; writes to it exit again. KVM removes every zone of this kind inside the range. */
  unregisterCoalescedPio(port: number, size: number): void {
    this.coalescedZone(IOC.KVM_UNREGISTER_COALESCED_MMIO, this.pioZone(port, size), size, true);
  }
  private pioZone(port: number, size: number): bigint {
    if (!this.coalescedPioOffered) throw new KvmError("KVM_INVALID_ARGUMENT", "this KVM does not coalesce port I/O (KVM_CAP_COALESCED_PIO)");
    if (!Number.isInteger(port) || port < 0 || !Number.isInteger(size) || size < 1 || port + size > 0x10000) {
      throw new KvmError("KVM_INVALID_ARGUMENT", `ports [${port}, +${size}) are not inside 0..0xffff`);
    }
    return BigInt(port);
  }
  private coalescedZone(request: number, addr: bigint, size: number, pio: boolean): void {
    if (!Number.isInteger(size) || size < 1 || size > 0xffffffff) throw new KvmError("KVM_INVALID_ARGUMENT", `coalesced zone size ${size} must be 1..2^32-1`);
    if (this.coalescedRingPage === 0) throw new KvmError("KVM_INVALID_ARGUMENT", "this KVM has no coalesced ring (KVM_CAP_COALESCED_MMIO)");
    this.ioctlStruct(request, KvmCoalescedMmioZoneLayout, { addr, size, pio: pio ? 1 : 0 }, `${pio ? "port" : "address"} 0x${addr.toString(16)}, ${size} bytes`);
  }

  /**
   * The VM's coalesced ring, read through the mapping of one of its vCPUs (one ring per VM, seen by
   * every vCPU at the same page). Needs a vCPU; a later call after that vCPU was closed moves to
   * another.
   */
  coalescedRing(): CoalescedRing {
    if (this.ring !== undefined && !this.ring.detached) return this.ring;
    const page = this.coalescedRingPage;
    if (page === 0) throw new KvmError("KVM_INVALID_ARGUMENT", "this KVM has no coalesced ring (KVM_CAP_COALESCED_MMIO)");
    const v = [...this.vcpus].find((x) => !x.closed);
    if (v === undefined) throw new KvmError("KVM_INVALID_ARGUMENT", "the coalesced ring is reached through a vCPU: create one first");
    this.ring = new CoalescedRing(v.runBuffer.subarray(page * PAGE, page * PAGE + COALESCED_RING_BYTES));
    return this.ring;
  }

  // ---- vCPUs -------------------------------------------------------------------------------

  createVcpu(id: number): Vcpu {
    const fd = this.ioctlInt(IOC.KVM_CREATE_VCPU, id, `vCPU ${id}`);
    this.n.trackFd(fd);
    const v = new Vcpu(fd, id, this.vcpuMmapSize, (x) => this.vcpus.delete(x), this.dirtyRingBytes);
    this.vcpus.add(v);
    return v;
  }
  get vcpuList(): readonly Vcpu[] {
    return [...this.vcpus];
  }

  /** Close every vCPU, zero and unmap guest memory, close the VM fd. Idempotent. */
  close(): void {
    if (this.fdValue < 0) return;
    for (const v of [...this.vcpus]) v.close();
    // Closing the VM fd drops KVM's references to the slots; then the memory can go.
    this.n.close(this.fdValue);
    this.fdValue = -1;
    for (const s of [...this.slots.values()]) this.releaseSlot(s);
    this.mem = new GuestMemoryMap([]);
    this.onClose(this);
  }
  [Symbol.dispose](): void {
    this.close();
  }
}
