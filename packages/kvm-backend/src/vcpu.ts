import {defineStruct, type FieldCodec, fieldCodec,
  KVM_IOCTLS as IOC, KVM_DIRTY_LOG_PAGE_OFFSET,KVM_MAX_XCRS, KvmCpuid2Layout, type KvmCpuidEntry2, KvmCpuidEntry2Layout, type KvmDebugregs,
  KvmDebugregsLayout, type KvmFpu, KvmFpuLayout, KvmGuestDebugLayout, KvmInterruptLayout, type KvmLapicState,
  KvmLapicStateLayout, KvmMpStateLayout, type KvmMsrEntry, KvmMsrEntryLayout, KvmMsrsLayout, type KvmRegs,
  KvmRegsLayout, 
  KvmRunLayout, type KvmSregs, KvmSregsLayout, type KvmVcpuEvents, KvmVcpuEventsLayout, type KvmXcr,KvmXcrsLayout, type KvmXsave, KvmXsaveLayout, nested, type StructLayout,
} from "@tsvmm/abi";
import { DirtyRing } from "./dirty-ring.js";
import { ERRNO } from "./errno.js";
import { ioctlError, KvmError, syscallError } from "./errors.js";
import {
  ExitDecoder, RUN_IF_FLAG, RUN_IMMEDIATE_EXIT, RUN_READY_FOR_INTERRUPT, RUN_REQUEST_INTERRUPT_WINDOW, type VcpuExit,
} from "./exits.js";
import { type NativeAddon, type NativeRunner, native, RUNNER_CONTINUE, RUNNER_STOP } from "./native.js";


/** KVM_CAP_SYNC_REGS: KVM_CHECK_EXTENSION answers the KVM_SYNC_X86 bits it can copy. */
export const KVM_CAP_SYNC_REGS = 74;
/** KVM_SYNC_X86_* (asm/kvm.h): the parts of kvm_sync_regs KVM copies into kvm_run at each exit. */
export const KVM_SYNC_X86 = { REGS: 1, SREGS: 2, EVENTS: 4 } as const;

/** struct kvm_sync_regs (x86): what KVM_CAP_SYNC_REGS keeps in kvm_run's `s` union. */
export interface KvmSyncRegs {
  regs: KvmRegs;
  sregs: KvmSregs;
  events: KvmVcpuEvents;
}
export const KvmSyncRegsLayout: StructLayout<KvmSyncRegs> = defineStruct("struct kvm_sync_regs", [
  nested(KvmRegsLayout, "regs"),
  nested(KvmSregsLayout, "sregs"),
  nested(KvmVcpuEventsLayout, "events"),
]);
/** kvm_run's `s` union follows kvm_dirty_regs (a u64); the header test checks it against offsetof. */
export const KVM_RUN_SYNC_REGS_OFFSET = KvmRunLayout.offsetOf("kvmDirtyRegs") + 8;
const RUN_VALID_REGS = KvmRunLayout.offsetOf("kvmValidRegs");
const RUN_DIRTY_REGS = KvmRunLayout.offsetOf("kvmDirtyRegs");
let offered: number | undefined;
/** KVM_CHECK_EXTENSION(KVM_CAP_SYNC_REGS) on /dev/kvm, once per process (0 where it cannot be asked). */
function syncRegsOffered(): number {
  if (offered === undefined) {
    const n = native();
    const fd = n.open("/dev/kvm", n.constants.O_RDWR);
    offered = 0;
    if (fd >= 0) {
      const r = n.ioctl(fd, IOC.KVM_CHECK_EXTENSION, KVM_CAP_SYNC_REGS);
      n.close(fd);
      if (r > 0) offered = r;
    }
  }
  return offered;
}
const SYNC_REGS_AT = KVM_RUN_SYNC_REGS_OFFSET + KvmSyncRegsLayout.offsetOf("regs");
const SYNC_SREGS_AT = KVM_RUN_SYNC_REGS_OFFSET + KvmSyncRegsLayout.offsetOf("sregs");

/**
 * One virtual CPU. `run()` issues KVM_RUN on the calling thread (the fastest path; it blocks the
 * event loop while the guest runs). `runAsync()` issues it on a dedicated native thread and
 * resolves with the exit, so the event loop stays free and several vCPUs run at once; `kick()`
 * makes a running (or the next) KVM_RUN return promptly with an `interrupted` exit.
 *
 * The exit returned by either is a view of the kvm_run page, valid until the next run.
 */
export class Vcpu {
  /** The kvm_run page, mapped once. */
  readonly runBuffer: Buffer;
  private readonly runAb: ArrayBuffer;
  private readonly decoder: ExitDecoder;
  private readonly n: NativeAddon;
  private fd: number;
  private runner: NativeRunner | undefined;
  private pending: PendingRun | undefined;
  private syncRunning = false;
  private readonly scratches = new Map<StructLayout<unknown>, Scratch>();
  private readonly runView: DataView;
  // KVM_SYNC_X86 bits KVM fills at each exit, and whether kvm_run holds this exit's copy: true from
  // a KVM_RUN's return until the next KVM_RUN or any ioctl that can change the vCPU's state.
  private syncKinds = 0;
  private syncFresh = false;
  // The copy came from a completed exit (KVM_RUN returned >= 0): KVM applies kvm_dirty_regs at the
  // next KVM_RUN, so setRegs() can write there; syncDirty says a write is waiting.
  private syncWritable = false;
  private syncDirty = false;

  /**
   * @internal For the last `interrupted` exit of run(): whether immediate_exit was set when KVM_RUN
   * returned (a kick, a stop), as opposed to a signal that only meant to end the KVM_RUN (VcpuWorker's tick).
   */
  kickedOut = false;

  /** This vCPU's dirty ring, when the VM enabled one before creating it (Vm.enableDirtyRing). */
  readonly dirtyRing: DirtyRing | undefined;
  private readonly ringAb: ArrayBuffer | undefined;
  // Lent to a VcpuWorker: its thread issues KVM_RUN, this object only decodes forwarded exits.
  private lease: VcpuLease | undefined;

  /**
   * @internal Created by Vm.createVcpu, or by a VcpuWorker's thread over the fd its owner lent
   * (`owned` false: close() unmaps this thread's kvm_run and leaves the fd to its owner).
   */
  constructor(
    fd: number,
    readonly id: number,
    private readonly mmapSize: number,
    private readonly onClose: (v: Vcpu) => void,
    dirtyRingBytes = 0,
    private readonly owned = true,
  ) {
    this.n = native();
    const c = this.n.constants;
    const ab = this.n.mmap(fd, mmapSize, c.PROT_READ | c.PROT_WRITE, c.MAP_SHARED, 0);
    if (typeof ab === "number") {
      if (owned) this.n.close(fd);
      throw syscallError("mmap", ab, "kvm_run");
    }
    if (dirtyRingBytes > 0) {
      // The ring lives in the vCPU fd's mmap space at a fixed page offset (x86 pages are 4 KiB).
      const ring = this.n.mmap(fd, dirtyRingBytes, c.PROT_READ | c.PROT_WRITE, c.MAP_SHARED, KVM_DIRTY_LOG_PAGE_OFFSET * 4096);
      if (typeof ring === "number") {
        this.n.munmap(ab);
        if (owned) this.n.close(fd);
        throw syscallError("mmap", ring, "dirty ring");
      }
      this.ringAb = ring;
      this.dirtyRing = new DirtyRing(Buffer.from(ring));
    }
    this.fd = fd;
    this.runAb = ab;
    this.runBuffer = Buffer.from(ab);
    this.runView = new DataView(ab);
    this.decoder = new ExitDecoder(this.runBuffer);
  }

  get closed(): boolean {
    return this.fd < 0;
  }

  private live(): number {
    if (this.fd < 0) throw new KvmError("KVM_CLOSED", `vCPU ${this.id} is closed`);
    return this.fd;
  }

  // ---- state -------------------------------------------------------------------------------

  // One buffer per struct for this vCPU's state ioctls, read and written field by field at the
  // offsets the layout declares (FieldCodec): an emulation exit reads kvm_sregs and kvm_regs each
  // time, and decoding them through the layout library cost ~120 us and ~16 us per call here.
  private scratch(layout: StructLayout<unknown>): Scratch {
    let s = this.scratches.get(layout);
    if (s === undefined) {
      const buf = Buffer.alloc(layout.size);
      s = { buf, view: new DataView(buf.buffer, buf.byteOffset, buf.byteLength), codec: fieldCodec(layout) };
      this.scratches.set(layout, s);
    }
    return s;
  }
  /**
   * Have KVM copy kvm_regs and kvm_sregs into kvm_run at every exit (KVM_CAP_SYNC_REGS), so that
   * getRegs()/getSregs() between an exit and the next run read that copy instead of issuing an
   * ioctl each (an emulation exit reads both). Each exit then costs KVM the copy, so only callers
   * that read state at most of their exits should ask. `on` false turns it off. Returns the
   * KVM_SYNC_X86 bits in use: 0 when the host does not offer the capability.
   */
  enableSyncRegs(on = true): number {
    const k = on ? syncRegsOffered() & (KVM_SYNC_X86.REGS | KVM_SYNC_X86.SREGS) : 0;
    this.runView.setBigUint64(RUN_VALID_REGS, BigInt(k), true);
    this.flushSync();
    this.syncKinds = k;
    this.syncFresh = false;
    this.syncWritable = false;
    return k;
  }
  /** The KVM_SYNC_X86 bits KVM fills at each exit (enableSyncRegs). */
  get syncRegs(): number {
    return this.syncKinds;
  }
  private fromSync<T>(kind: number, layout: StructLayout<T>, at: number): T | undefined {
    if (!this.syncFresh || (this.syncKinds & kind) === 0) return undefined;
    const codec = fieldCodec(layout as StructLayout<unknown>);
    return (codec === undefined ? layout.decode(this.runBuffer, at) : codec.decode(this.runView, this.runBuffer, at)) as T;
  }

  /**
   * A register write waiting in kvm_run goes to KVM now (KVM_SET_REGS) before any other ioctl, so
   * every ioctl sees the vCPU in the order the caller changed it.
   */
  private flushSync(): void {
    if (!this.syncDirty) return;
    this.syncDirty = false;
    this.runView.setBigUint64(RUN_DIRTY_REGS, this.runView.getBigUint64(RUN_DIRTY_REGS, true) & ~BigInt(KVM_SYNC_X86.REGS), true);
    const buf = Buffer.from(this.runBuffer.subarray(SYNC_REGS_AT, SYNC_REGS_AT + KvmRegsLayout.size));
    const r = this.n.ioctlBuf(this.live(), IOC.KVM_SET_REGS, buf);
    if (r < 0) throw ioctlError(IOC.KVM_SET_REGS, r, `vCPU ${this.id}`);
  }
  /** Stop serving reads from kvm_run (after sending a waiting write to KVM). */
  private dropSync(): void {
    this.flushSync();
    this.syncFresh = false;
    this.syncWritable = false;
  }

  private get<T>(request: number, layout: StructLayout<T>): T {
    this.flushSync();
    const s = this.scratch(layout as StructLayout<unknown>);
    const r = this.n.ioctlBuf(this.live(), request, s.buf);
    if (r < 0) throw ioctlError(request, r, `vCPU ${this.id}`);
    return (s.codec === undefined ? layout.decode(s.buf) : s.codec.decode(s.view, s.buf, 0)) as T;
  }
  private set<T>(request: number, layout: StructLayout<T>, value: T): void {
    this.dropSync();
    const s = this.scratch(layout as StructLayout<unknown>);
    let buf = s.buf;
    buf.fill(0);
    // A value the codec cannot write exactly as the layout would (a missing field, an array of
    // another length, a number out of range) goes through the layout: same bytes or same error.
    if (s.codec === undefined || !s.codec.encode(value, s.view, buf, 0)) buf = layout.encode(value);
    const r = this.n.ioctlBuf(this.live(), request, buf);
    if (r < 0) throw ioctlError(request, r, `vCPU ${this.id}`);
  }

  getRegs(): KvmRegs {
    return this.fromSync(KVM_SYNC_X86.REGS, KvmRegsLayout, SYNC_REGS_AT) ?? this.get(IOC.KVM_GET_REGS, KvmRegsLayout);
  }
  setRegs(regs: KvmRegs): void {
    if (this.syncWritable && (this.syncKinds & KVM_SYNC_X86.REGS) !== 0) {
      // Into kvm_run with KVM_SYNC_X86_REGS in kvm_dirty_regs: KVM loads it at the next KVM_RUN, and
      // getRegs() reads it back from there meanwhile. Encoded aside first, so a refused value
      // leaves the copy whole (and goes through the layout's error below).
      const s = this.scratch(KvmRegsLayout as StructLayout<unknown>);
      s.buf.fill(0);
      if (s.codec?.encode(regs, s.view, s.buf, 0) === true) {
        this.runBuffer.set(s.buf, SYNC_REGS_AT);
        this.runView.setBigUint64(RUN_DIRTY_REGS, this.runView.getBigUint64(RUN_DIRTY_REGS, true) | BigInt(KVM_SYNC_X86.REGS), true);
        this.syncDirty = true;
        return;
      }
    }
    this.set(IOC.KVM_SET_REGS, KvmRegsLayout, regs);
  }
  getSregs(): KvmSregs {
    return this.fromSync(KVM_SYNC_X86.SREGS, KvmSregsLayout, SYNC_SREGS_AT) ?? this.get(IOC.KVM_GET_SREGS, KvmSregsLayout);
  }
  setSregs(sregs: KvmSregs): void {
    this.set(IOC.KVM_SET_SREGS, KvmSregsLayout, sregs);
  }
  getFpu(): KvmFpu {
    return this.get(IOC.KVM_GET_FPU, KvmFpuLayout);
  }
  setFpu(fpu: KvmFpu): void {
    this.set(IOC.KVM_SET_FPU, KvmFpuLayout, fpu);
  }
  getXsave(): KvmXsave {
    return this.get(IOC.KVM_GET_XSAVE, KvmXsaveLayout);
  }
  setXsave(xsave: KvmXsave): void {
    this.set(IOC.KVM_SET_XSAVE, KvmXsaveLayout, xsave);
  }
  getXcrs(): KvmXcr[] {
    const x = this.get(IOC.KVM_GET_XCRS, KvmXcrsLayout);
    return x.xcrs.slice(0, Math.min(x.nrXcrs, KVM_MAX_XCRS));
  }
  setXcrs(xcrs: KvmXcr[]): void {
    if (xcrs.length > KVM_MAX_XCRS) throw new KvmError("KVM_INVALID_ARGUMENT", `at most ${KVM_MAX_XCRS} XCRs`);
    const all = [...xcrs];
    while (all.length < KVM_MAX_XCRS) all.push({ xcr: 0, value: 0n });
    this.set(IOC.KVM_SET_XCRS, KvmXcrsLayout, { nrXcrs: xcrs.length, flags: 0, xcrs: all });
  }
  getDebugRegs(): KvmDebugregs {
    return this.get(IOC.KVM_GET_DEBUGREGS, KvmDebugregsLayout);
  }
  setDebugRegs(d: KvmDebugregs): void {
    this.set(IOC.KVM_SET_DEBUGREGS, KvmDebugregsLayout, d);
  }
  getMpState(): number {
    return this.get(IOC.KVM_GET_MP_STATE, KvmMpStateLayout).mpState;
  }
  setMpState(mpState: number): void {
    this.set(IOC.KVM_SET_MP_STATE, KvmMpStateLayout, { mpState });
  }
  getVcpuEvents(): KvmVcpuEvents {
    return this.get(IOC.KVM_GET_VCPU_EVENTS, KvmVcpuEventsLayout);
  }
  setVcpuEvents(e: KvmVcpuEvents): void {
    this.set(IOC.KVM_SET_VCPU_EVENTS, KvmVcpuEventsLayout, e);
  }
  getLapic(): KvmLapicState {
    return this.get(IOC.KVM_GET_LAPIC, KvmLapicStateLayout);
  }
  setLapic(l: KvmLapicState): void {
    this.set(IOC.KVM_SET_LAPIC, KvmLapicStateLayout, l);
  }
  /** KVM_SET_GUEST_DEBUG: `control` is a KVM_GUESTDBG_* mask; `debugreg` the 8 debug registers. */
  setGuestDebug(control: number, debugreg: bigint[] = [0n, 0n, 0n, 0n, 0n, 0n, 0n, 0n]): void {
    this.set(IOC.KVM_SET_GUEST_DEBUG, KvmGuestDebugLayout, { control, arch: { debugreg } });
  }
  /** KVM_INTERRUPT: queue an external interrupt (only without an in-kernel irqchip). */
  interrupt(vector: number): void {
    this.set(IOC.KVM_INTERRUPT, KvmInterruptLayout, { irq: vector });
  }
  /** KVM_NMI: queue an NMI, delivered when the guest can take one (not blocked by IF). */
  nmi(): void {
    this.dropSync();
    const r = this.n.ioctl(this.live(), IOC.KVM_NMI);
    if (r < 0) throw ioctlError(IOC.KVM_NMI, r);
  }
  /** KVM_GET_TSC_KHZ: the guest's TSC frequency. */
  getTscKhz(): number {
    this.flushSync();
    const r = this.n.ioctl(this.live(), IOC.KVM_GET_TSC_KHZ);
    if (r < 0) throw ioctlError(IOC.KVM_GET_TSC_KHZ, r, `vCPU ${this.id}`);
    return r;
  }
  /**
   * KVM_SET_TSC_KHZ. Which rates a host accepts depends on its TSC scaling support
   * (KVM_CAP_TSC_CONTROL): without it KVM takes rates near the host's and above it (by catching
   * up) and refuses slower ones with EINVAL. KVM records the new rate before it decides, so a
   * refused rate would still be what KVM_GET_TSC_KHZ reports: on refusal the previous rate is set
   * again, and the vCPU is left as it was.
   */
  setTscKhz(khz: number): void {
    // KVM_GET_TSC_KHZ returns the rate as the ioctl's int result: 2^31 kHz and up cannot be read back.
    if (!Number.isInteger(khz) || khz <= 0 || khz > 0x7fffffff) throw new KvmError("KVM_INVALID_ARGUMENT", `TSC rate ${khz} kHz is outside 1..2^31-1`);
    const previous = this.getTscKhz();
    this.dropSync();
    const r = this.n.ioctl(this.live(), IOC.KVM_SET_TSC_KHZ, khz);
    if (r < 0) {
      this.n.ioctl(this.live(), IOC.KVM_SET_TSC_KHZ, previous);
      throw ioctlError(IOC.KVM_SET_TSC_KHZ, r, `vCPU ${this.id}, ${khz} kHz`);
    }
  }

  /** KVM_GET_MSRS for the given indices. */
  getMsrs(indices: readonly number[]): KvmMsrEntry[] {
    this.flushSync();
    const buf = encodeMsrs(indices.map((index) => ({ index, data: 0n })));
    const r = this.n.ioctlBuf(this.live(), IOC.KVM_GET_MSRS, buf);
    if (r < 0) throw ioctlError(IOC.KVM_GET_MSRS, r);
    if (r !== indices.length) {
      throw new KvmError("KVM_IOCTL_FAILED", `KVM_GET_MSRS read ${r} of ${indices.length} MSRs; MSR 0x${indices[r]?.toString(16)} is not readable`, { ioctl: "KVM_GET_MSRS" });
    }
    return decodeEntries(buf, KvmMsrsLayout.size, KvmMsrEntryLayout, r);
  }
  /** KVM_SET_MSRS; throws naming the first MSR KVM refused. */
  setMsrs(entries: readonly KvmMsrEntry[]): void {
    // EFER and APIC_BASE are also kvm_sregs fields.
    this.dropSync();
    const buf = encodeMsrs(entries);
    const r = this.n.ioctlBuf(this.live(), IOC.KVM_SET_MSRS, buf);
    if (r < 0) throw ioctlError(IOC.KVM_SET_MSRS, r);
    if (r !== entries.length) {
      throw new KvmError("KVM_IOCTL_FAILED", `KVM_SET_MSRS wrote ${r} of ${entries.length} MSRs; MSR 0x${entries[r]?.index.toString(16)} was refused`, { ioctl: "KVM_SET_MSRS" });
    }
  }
  setCpuid2(entries: readonly KvmCpuidEntry2[]): void {
    this.dropSync();
    const buf = encodeCpuid2(entries);
    const r = this.n.ioctlBuf(this.live(), IOC.KVM_SET_CPUID2, buf);
    if (r < 0) throw ioctlError(IOC.KVM_SET_CPUID2, r);
  }
  getCpuid2(max = 256): KvmCpuidEntry2[] {
    this.flushSync();
    const buf = Buffer.alloc(KvmCpuid2Layout.size + max * KvmCpuidEntry2Layout.size);
    KvmCpuid2Layout.encode({ nent: max }, buf);
    const r = this.n.ioctlBuf(this.live(), IOC.KVM_GET_CPUID2, buf);
    if (r < 0) throw ioctlError(IOC.KVM_GET_CPUID2, r);
    return decodeEntries(buf, KvmCpuid2Layout.size, KvmCpuidEntry2Layout, KvmCpuid2Layout.decode(buf).nent);
  }

  // ---- kvm_run fields ----------------------------------------------------------------------

  /** Ask KVM to exit with `irq_window_open` as soon as the guest can take an interrupt. */
  set requestInterruptWindow(on: boolean) {
    this.runBuffer[RUN_REQUEST_INTERRUPT_WINDOW] = on ? 1 : 0;
  }
  get requestInterruptWindow(): boolean {
    return this.runBuffer[RUN_REQUEST_INTERRUPT_WINDOW] !== 0;
  }
  get readyForInterruptInjection(): boolean {
    return this.runBuffer[RUN_READY_FOR_INTERRUPT] !== 0;
  }
  get ifFlag(): boolean {
    return this.runBuffer[RUN_IF_FLAG] !== 0;
  }

  // ---- running -----------------------------------------------------------------------------

  /**
   * KVM_RUN on this thread until the next exit. KVM has already completed PIO (and advanced RIP);
   * for MMIO reads, rdmsr and IN, fill the exit's data before the next run and KVM finishes the
   * instruction then. Nothing here ever needs to skip an instruction.
   */
  run(): VcpuExit {
    const fd = this.live();
    if (this.lease !== undefined) throw new KvmError("KVM_VCPU_BUSY", `vCPU ${this.id} is lent to a worker thread`);
    if (this.pending !== undefined) throw new KvmError("KVM_VCPU_BUSY", `vCPU ${this.id} is running on its thread`);
    this.syncRunning = true;
    this.syncFresh = this.syncWritable = false;
    const r = this.n.runHere(fd);
    this.syncRunning = false;
    return this.result(r);
  }

  /** KVM_RUN on this vCPU's native thread; resolves with the exit. */
  runAsync(): Promise<VcpuExit> {
    return new Promise<VcpuExit>((resolve, reject) => {
      const onExit = (e: VcpuExit): boolean => {
        resolve(e);
        return true;
      };
      this.startRunner({ onExit, onEnd: reject }, reject);
    });
  }

  /**
   * KVM_RUN on this vCPU's native thread, again and again: `onExit` gets each exit on this thread,
   * and KVM_RUN is re-entered as soon as it returns false (no Promise, no new request in between).
   * Resolves after the exit for which it returned true; rejects with a typed error when KVM_RUN
   * fails, when `onExit` throws, or when the vCPU is closed meanwhile. The exit passed to `onExit`
   * is valid until it returns.
   */
  runEach(onExit: (exit: VcpuExit) => boolean): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const each = (e: VcpuExit): boolean => {
        if (!onExit(e)) return false;
        resolve();
        return true;
      };
      this.startRunner({ onExit: each, onEnd: reject }, reject);
    });
  }

  private startRunner(p: PendingRun, refuse: (e: unknown) => void): void {
    let fd: number;
    try {
      fd = this.live();
    } catch (e) {
      refuse(e);
      return;
    }
    if (this.pending !== undefined || this.syncRunning || this.lease !== undefined) {
      refuse(new KvmError("KVM_VCPU_BUSY", `vCPU ${this.id} is ${this.lease === undefined ? "already running" : "lent to a worker thread"}`));
      return;
    }
    if (this.runner === undefined) {
      this.runner = new this.n.Runner(fd, (result: number) => this.delivered(result), this.runBuffer, RUN_IMMEDIATE_EXIT);
    }
    this.pending = p;
    this.syncFresh = this.syncWritable = false;
    if (!this.runner.run()) {
      this.pending = undefined;
      refuse(new KvmError("KVM_VCPU_BUSY", `vCPU ${this.id} is already running`));
    }
  }

  /** Called by the runner thread's dispatcher, on this thread, with each KVM_RUN result. */
  private delivered(result: number): number {
    const p = this.pending;
    if (p === undefined) return RUNNER_STOP;
    let stop: boolean;
    try {
      stop = p.onExit(this.result(result));
    } catch (e) {
      this.pending = undefined;
      p.onEnd(e);
      return RUNNER_STOP;
    }
    if (!stop) {
      // The runner re-enters KVM_RUN as soon as this returns (and KVM loads a waiting write).
      this.syncFresh = this.syncWritable = false;
      return RUNNER_CONTINUE;
    }
    if (this.pending === p) this.pending = undefined;
    return RUNNER_STOP;
  }

  private result(r: number): VcpuExit {
    // KVM stores the sync copy on every way out of KVM_RUN once it has begun (exits and EINTR alike)
    // and has loaded (and cleared) kvm_dirty_regs on its way in; a vCPU that never entered (not yet
    // started by INIT/SIPI) may leave the bit set over a copy KVM rewrote: it is dropped.
    if (this.syncDirty) {
      this.syncDirty = false;
      this.runView.setBigUint64(RUN_DIRTY_REGS, 0n, true);
    }
    if (r >= 0 || -r === ERRNO.EINTR || -r === ERRNO.EAGAIN) this.syncFresh = this.syncKinds !== 0;
    this.syncWritable = r >= 0 && this.syncFresh;
    if (r < 0) {
      if (-r === ERRNO.EINTR || -r === ERRNO.EAGAIN) {
        this.kickedOut = this.runBuffer[RUN_IMMEDIATE_EXIT] !== 0;
        this.runBuffer[RUN_IMMEDIATE_EXIT] = 0;
        return this.decoder.interrupted;
      }
      throw ioctlError(IOC.KVM_RUN, r, `vCPU ${this.id}`);
    }
    return this.decoder.decode();
  }

  /**
   * Make the current KVM_RUN on the native thread, or the next KVM_RUN of this vCPU, return with an
   * `interrupted` exit. Safe to call at any time; returns within ~100 µs on this hardware.
   */
  kick(): void {
    if (this.fd < 0) return;
    this.runBuffer[RUN_IMMEDIATE_EXIT] = 1;
    this.runner?.kick();
    this.lease?.kick();
  }

  /**
   * @internal VcpuWorker: hand KVM_RUN to another thread. Until endLease(), run()/runAsync() refuse,
   * kick() reaches that thread, and close() first has the lease give the vCPU back.
   */
  lend(lease: VcpuLease): { fd: number; mmapSize: number } {
    const fd = this.live();
    if (this.pending !== undefined || this.syncRunning || this.lease !== undefined) {
      throw new KvmError("KVM_VCPU_BUSY", `vCPU ${this.id} is ${this.lease === undefined ? "running" : "already lent to a worker thread"}`);
    }
    this.dropSync();
    this.lease = lease;
    return { fd, mmapSize: this.mmapSize };
  }
  /** @internal */
  endLease(): void {
    this.lease = undefined;
    this.syncFresh = this.syncWritable = false;
  }
  /**
   * @internal The exit the borrowing thread's KVM_RUN left in kvm_run (this mapping shows the same
   * page), for a handler on this thread; valid until lentExitHandled().
   */
  lentExit(interrupted: boolean): VcpuExit {
    this.syncFresh = this.syncKinds !== 0;
    this.syncWritable = !interrupted && this.syncFresh;
    return interrupted ? this.decoder.interrupted : this.decoder.decode();
  }
  /** @internal The borrowing thread is about to re-enter KVM_RUN: the sync copy goes stale. */
  lentExitHandled(): void {
    this.syncFresh = this.syncWritable = false;
  }

  /** True while runAsync() has a KVM_RUN in flight. */
  get running(): boolean {
    return this.pending !== undefined;
  }

  /** Stop the runner thread (kicking a running guest), unmap kvm_run and close the fd. Idempotent. */
  close(): void {
    if (this.fd < 0) return;
    // The borrowing thread must be out of KVM_RUN and its loop before the fd number can be reused.
    this.lease?.reclaim();
    this.lease = undefined;
    // A borrowed view closes with its loop ended, and kvm_run is the owner's page: a kick left
    // there would cut the owner's next KVM_RUN short.
    if (this.owned) this.runBuffer[RUN_IMMEDIATE_EXIT] = 1;
    if (this.runner !== undefined) {
      this.runner.close();
      this.runner = undefined;
    }
    const p = this.pending;
    this.pending = undefined;
    p?.onEnd(new KvmError("KVM_CLOSED", `vCPU ${this.id} was closed while running`));
    this.n.munmap(this.runAb);
    if (this.ringAb !== undefined) this.n.munmap(this.ringAb);
    if (this.owned) this.n.close(this.fd);
    this.fd = -1;
    this.onClose(this);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** @internal What a vCPU lent to a worker thread needs from the borrower. */
export interface VcpuLease {
  /** Make the borrower's KVM_RUN in flight (or its next) return `interrupted`. */
  kick(): void;
  /** Synchronously: have the borrower leave KVM_RUN and its loop for good (the vCPU is closing). */
  reclaim(): void;
}

/** A run in flight on the runner thread: who gets its exits, and who hears how it ended. */
interface PendingRun {
  /** True ends the run after this exit. */
  onExit(exit: VcpuExit): boolean;
  /** The run failed (KVM_RUN error, a throwing onExit, close()). */
  onEnd(error: unknown): void;
}

function encodeMsrs(entries: readonly KvmMsrEntry[]): Buffer {
  const head = KvmMsrsLayout.size;
  const buf = Buffer.alloc(head + entries.length * KvmMsrEntryLayout.size);
  KvmMsrsLayout.encode({ nmsrs: entries.length }, buf);
  for (const [i, e] of entries.entries()) KvmMsrEntryLayout.encode(e, buf, head + i * KvmMsrEntryLayout.size);
  return buf;
}

export function encodeCpuid2(entries: readonly KvmCpuidEntry2[]): Buffer {
  const head = KvmCpuid2Layout.size;
  const buf = Buffer.alloc(head + entries.length * KvmCpuidEntry2Layout.size);
  KvmCpuid2Layout.encode({ nent: entries.length }, buf);
  for (const [i, e] of entries.entries()) KvmCpuidEntry2Layout.encode(e, buf, head + i * KvmCpuidEntry2Layout.size);
  return buf;
}

export function decodeEntries<T>(buf: Buffer, head: number, layout: StructLayout<T>, n: number): T[] {
  const out: T[] = [];
  for (let i = 0; i < n; i++) out.push(layout.decode(buf, head + i * layout.size));
  return out;
}

interface Scratch {
  readonly buf: Buffer;
  readonly view: DataView;
  readonly codec: FieldCodec | undefined;
}
