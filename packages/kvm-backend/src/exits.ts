import {
  KVM_EXIT, KVM_EXIT_IO_IN, KVM_EXIT_NAMES, KVM_INTERNAL_ERROR, KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES, KVM_RUN_EXIT_OFFSET, KVM_RUN_X86_BUS_LOCK,
  KVM_RUN_X86_SMM, KVM_SYSTEM_EVENT, KvmRunDebugLayout,
  KvmRunEmulationFailureLayout, 
  KvmRunEoiLayout, KvmRunExLayout, KvmRunFailEntryLayout, KvmRunHwLayout, KvmRunHypercallLayout,KvmRunInternalLayout, KvmRunIoLayout, KvmRunLayout, KvmRunMmioLayout, KvmRunMsrLayout, KvmRunSystemEventLayout,
} from "@tsvmm/abi";

// Exit objects are views of the vCPU's kvm_run page, decoded field by field when read. One object
// per kind per vCPU is reused, so taking an exit allocates nothing; an exit is valid until the
// vCPU runs again (copy what you need to keep, e.g. with `toJSON()`).

const E = KVM_RUN_EXIT_OFFSET;
const o = (l: { offsetOf(p: string): number }, f: string): number => E + l.offsetOf(f);

const IO_DIRECTION = o(KvmRunIoLayout, "direction");
const IO_SIZE = o(KvmRunIoLayout, "size");
const IO_PORT = o(KvmRunIoLayout, "port");
const IO_COUNT = o(KvmRunIoLayout, "count");
const IO_DATA_OFFSET = o(KvmRunIoLayout, "dataOffset");
const MMIO_ADDR = o(KvmRunMmioLayout, "physAddr");
const MMIO_DATA = o(KvmRunMmioLayout, "data");
const MMIO_LEN = o(KvmRunMmioLayout, "len");
const MMIO_IS_WRITE = o(KvmRunMmioLayout, "isWrite");
const MSR_ERROR = o(KvmRunMsrLayout, "error");
const MSR_REASON = o(KvmRunMsrLayout, "reason");
const MSR_INDEX = o(KvmRunMsrLayout, "index");
const MSR_DATA = o(KvmRunMsrLayout, "data");
const HC_RET = o(KvmRunHypercallLayout, "ret");
export const RUN_EXIT_REASON = KvmRunLayout.offsetOf("exitReason");
export const RUN_IMMEDIATE_EXIT = KvmRunLayout.offsetOf("immediateExit");
export const RUN_REQUEST_INTERRUPT_WINDOW = KvmRunLayout.offsetOf("requestInterruptWindow");
export const RUN_READY_FOR_INTERRUPT = KvmRunLayout.offsetOf("readyForInterruptInjection");
export const RUN_IF_FLAG = KvmRunLayout.offsetOf("ifFlag");
export const RUN_FLAGS = KvmRunLayout.offsetOf("flags");

abstract class ExitBase {
  constructor(protected readonly run: Buffer) {}
  /** Raw KVM_EXIT_* reason. */
  get reason(): number {
    return this.run.readUInt32LE(RUN_EXIT_REASON);
  }
  get reasonName(): string {
    return KVM_EXIT_NAMES[this.reason] ?? `UNKNOWN_${this.reason}`;
  }
  /** kvm_run.flags at this exit: KVM_RUN_X86_SMM, KVM_RUN_X86_BUS_LOCK. */
  get flags(): number {
    return this.run.readUInt16LE(RUN_FLAGS);
  }
  /** The vCPU was in System Management Mode at the exit. */
  get inSmm(): boolean {
    return (this.flags & KVM_RUN_X86_SMM) !== 0;
  }
  /** A bus lock was detected (KVM_CAP_X86_BUS_LOCK_EXIT). */
  get busLock(): boolean {
    return (this.flags & KVM_RUN_X86_BUS_LOCK) !== 0;
  }
}

/** KVM_EXIT_IO. KVM has already advanced RIP past the instruction: no skip is needed. */
export class IoExit extends ExitBase {
  readonly kind = "io" as const;
  get direction(): "in" | "out" {
    return this.run[IO_DIRECTION] === KVM_EXIT_IO_IN ? "in" : "out";
  }
  get isWrite(): boolean {
    return this.run[IO_DIRECTION] !== KVM_EXIT_IO_IN;
  }
  /** Bytes per element: 1, 2 or 4. */
  get size(): number {
    return this.run[IO_SIZE]!;
  }
  get port(): number {
    return this.run.readUInt16LE(IO_PORT);
  }
  /** Elements: 1 for in/out, up to the REP count for string I/O. */
  get count(): number {
    return this.run.readUInt32LE(IO_COUNT);
  }
  get dataOffset(): number {
    // The u64 as two 32-bit halves: a BigInt made and converted on every port I/O exit was ~1% of
    // a synchronous exit's time (perf). Rounds as Number(bigint) would above 2^53.
    return this.run.readUInt32LE(IO_DATA_OFFSET) + this.run.readUInt32LE(IO_DATA_OFFSET + 4) * 2 ** 32;
  }
  /** `size * count` bytes inside kvm_run: the data written (out) or to fill (in). */
  get data(): Buffer {
    const off = this.dataOffset;
    const len = this.size * this.count;
    if (off + len > this.run.length) return this.run.subarray(0, 0);
    return this.run.subarray(off, off + len);
  }
  /** First element as an integer (out). */
  get value(): number {
    const off = this.dataOffset;
    switch (this.run[IO_SIZE]) {
      case 1:
        return this.run[off]!;
      case 2:
        return this.run.readUInt16LE(off);
      default:
        return this.run.readUInt32LE(off);
    }
  }
  /** Answer an IN: every element gets `value`. */
  setValue(value: number): void {
    const size = this.size;
    const data = this.data;
    for (let i = 0; i < data.length; i += size) {
      if (size === 1) data[i] = value & 0xff;
      else if (size === 2) data.writeUInt16LE(value & 0xffff, i);
      else data.writeUInt32LE(value >>> 0, i);
    }
  }
  toJSON(): object {
    return { kind: this.kind, port: this.port, size: this.size, direction: this.direction, count: this.count, data: this.data.toString("hex") };
  }
}

/** KVM_EXIT_MMIO. KVM completes the instruction on the next KVM_RUN: fill `data` for reads first. */
export class MmioExit extends ExitBase {
  readonly kind = "mmio" as const;
  get address(): bigint {
    return this.run.readBigUInt64LE(MMIO_ADDR);
  }
  get length(): number {
    return this.run.readUInt32LE(MMIO_LEN);
  }
  get isWrite(): boolean {
    return this.run[MMIO_IS_WRITE] !== 0;
  }
  /** `length` bytes: what the guest wrote, or where to put what it reads. */
  get data(): Buffer {
    const len = Math.min(this.length, 8);
    return this.run.subarray(MMIO_DATA, MMIO_DATA + len);
  }
  get value(): bigint {
    let v = 0n;
    const d = this.data;
    for (let i = d.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(d[i]!);
    return v;
  }
  setValue(value: bigint | number): void {
    let v = BigInt.asUintN(64, BigInt(value));
    const d = this.data;
    for (let i = 0; i < d.length; i++) {
      d[i] = Number(v & 0xffn);
      v >>= 8n;
    }
  }
  toJSON(): object {
    return { kind: this.kind, address: `0x${this.address.toString(16)}`, length: this.length, isWrite: this.isWrite, data: this.data.toString("hex") };
  }
}

/** KVM_EXIT_X86_RDMSR / WRMSR (user-space MSR exits). Reply before the next run. */
export class MsrExit<K extends "rdmsr" | "wrmsr" = "rdmsr" | "wrmsr"> extends ExitBase {
  constructor(run: Buffer, readonly kind: K) {
    super(run);
  }
  get index(): number {
    return this.run.readUInt32LE(MSR_INDEX);
  }
  /** KVM_MSR_EXIT_REASON_* bits: why KVM asked. */
  get exitReason(): number {
    return this.run.readUInt32LE(MSR_REASON);
  }
  /** For wrmsr: the value the guest writes. For rdmsr: the value it will read. */
  get data(): bigint {
    return this.run.readBigUInt64LE(MSR_DATA);
  }
  /** Let the access complete; for rdmsr the guest reads `value`. */
  reply(value: bigint | number = 0n): void {
    this.run[MSR_ERROR] = 0;
    if (this.kind === "rdmsr") this.run.writeBigUInt64LE(BigInt.asUintN(64, BigInt(value)), MSR_DATA);
  }
  /** Make the guest's RDMSR/WRMSR raise #GP. */
  fail(): void {
    this.run[MSR_ERROR] = 1;
  }
  toJSON(): object {
    return { kind: this.kind, index: this.index, data: `0x${this.data.toString(16)}`, exitReason: this.exitReason };
  }
}

/** Exits that carry only their kind. */
export class SimpleExit<K extends "hlt" | "shutdown" | "irq_window_open" | "interrupted" | "dirty_ring_full"> extends ExitBase {
  constructor(run: Buffer, readonly kind: K) {
    super(run);
  }
  toJSON(): object {
    return { kind: this.kind };
  }
}

export class FailEntryExit extends ExitBase {
  readonly kind = "fail_entry" as const;
  get hardwareEntryFailureReason(): bigint {
    return KvmRunFailEntryLayout.decode(this.run, E).hardwareEntryFailureReason;
  }
  get cpu(): number {
    return KvmRunFailEntryLayout.decode(this.run, E).cpu;
  }
  toJSON(): object {
    return { kind: this.kind, hardwareEntryFailureReason: `0x${this.hardwareEntryFailureReason.toString(16)}`, cpu: this.cpu };
  }
}

/** KVM_EXIT_INTERNAL_ERROR. For emulation failures `instructionBytes` holds what KVM could not emulate. */
export class InternalErrorExit extends ExitBase {
  readonly kind = "internal_error" as const;
  get suberror(): number {
    return KvmRunInternalLayout.decode(this.run, E).suberror;
  }
  get data(): bigint[] {
    const d = KvmRunInternalLayout.decode(this.run, E);
    return d.data.slice(0, Math.min(d.ndata, 16));
  }
  get instructionBytes(): Buffer | undefined {
    if (this.suberror !== KVM_INTERNAL_ERROR.EMULATION) return undefined;
    const f = KvmRunEmulationFailureLayout.decode(this.run, E);
    if ((f.flags & BigInt(KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)) === 0n) return undefined;
    return f.insnBytes.subarray(0, Math.min(f.insnSize, 15));
  }
  toJSON(): object {
    return { kind: this.kind, suberror: this.suberror, data: this.data.map((x) => `0x${x.toString(16)}`), instructionBytes: this.instructionBytes?.toString("hex") };
  }
}

export class SystemEventExit extends ExitBase {
  readonly kind = "system_event" as const;
  get type(): number {
    return KvmRunSystemEventLayout.decode(this.run, E).type;
  }
  get typeName(): string {
    const t = this.type;
    return Object.entries(KVM_SYSTEM_EVENT).find(([, v]) => v === t)?.[0] ?? `UNKNOWN_${t}`;
  }
  get data(): bigint[] {
    const d = KvmRunSystemEventLayout.decode(this.run, E);
    return d.data.slice(0, Math.min(d.ndata, 16));
  }
  toJSON(): object {
    return { kind: this.kind, type: this.typeName };
  }
}

export class HypercallExit extends ExitBase {
  readonly kind = "hypercall" as const;
  get nr(): bigint {
    return KvmRunHypercallLayout.decode(this.run, E).nr;
  }
  get args(): bigint[] {
    return KvmRunHypercallLayout.decode(this.run, E).args;
  }
  get longmode(): boolean {
    return KvmRunHypercallLayout.decode(this.run, E).longmode !== 0;
  }
  setReturn(value: bigint): void {
    this.run.writeBigUInt64LE(BigInt.asUintN(64, value), HC_RET);
  }
  toJSON(): object {
    return { kind: this.kind, nr: this.nr.toString(), args: this.args.map(String) };
  }
}

export class DebugExit extends ExitBase {
  readonly kind = "debug" as const;
  get exception(): number {
    return KvmRunDebugLayout.decode(this.run, E).exception;
  }
  get pc(): bigint {
    return KvmRunDebugLayout.decode(this.run, E).pc;
  }
  get dr6(): bigint {
    return KvmRunDebugLayout.decode(this.run, E).dr6;
  }
  get dr7(): bigint {
    return KvmRunDebugLayout.decode(this.run, E).dr7;
  }
  toJSON(): object {
    return { kind: this.kind, exception: this.exception, pc: `0x${this.pc.toString(16)}` };
  }
}

export class ExceptionExit extends ExitBase {
  readonly kind = "exception" as const;
  get exception(): number {
    return KvmRunExLayout.decode(this.run, E).exception;
  }
  get errorCode(): number {
    return KvmRunExLayout.decode(this.run, E).errorCode;
  }
  toJSON(): object {
    return { kind: this.kind, exception: this.exception, errorCode: this.errorCode };
  }
}

/**
 * KVM_EXIT_IOAPIC_EOI (split irqchip): the guest EOIed `vector`, which a level-triggered MSI route
 * delivered. The VMM's IOAPIC clears Remote IRR for the pin and re-raises it if the line is still up.
 */
export class IoapicEoiExit extends ExitBase {
  readonly kind = "ioapic_eoi" as const;
  get vector(): number {
    return KvmRunEoiLayout.decode(this.run, E).vector;
  }
  toJSON(): object {
    return { kind: this.kind, vector: this.vector };
  }
}

/** Any exit reason tsvmm does not decode; `reason` says which. */
export class UnknownExit extends ExitBase {
  readonly kind = "unknown" as const;
  get hardwareExitReason(): bigint {
    return KvmRunHwLayout.decode(this.run, E).hardwareExitReason;
  }
  toJSON(): object {
    return { kind: this.kind, reason: this.reason, reasonName: this.reasonName };
  }
}

export type VcpuExit =
  | IoExit | MmioExit | MsrExit<"rdmsr"> | MsrExit<"wrmsr"> | FailEntryExit | InternalErrorExit | SystemEventExit | HypercallExit
  | DebugExit | ExceptionExit | IoapicEoiExit | UnknownExit
  | SimpleExit<"hlt"> | SimpleExit<"shutdown"> | SimpleExit<"irq_window_open"> | SimpleExit<"interrupted">
  | SimpleExit<"dirty_ring_full">;
export type VcpuExitKind = VcpuExit["kind"];

/** The per-vCPU set of reusable exit views. */
export class ExitDecoder {
  readonly io: IoExit;
  readonly mmio: MmioExit;
  readonly rdmsr: MsrExit<"rdmsr">;
  readonly wrmsr: MsrExit<"wrmsr">;
  readonly hlt: SimpleExit<"hlt">;
  readonly shutdown: SimpleExit<"shutdown">;
  readonly irqWindowOpen: SimpleExit<"irq_window_open">;
  readonly interrupted: SimpleExit<"interrupted">;
  readonly dirtyRingFull: SimpleExit<"dirty_ring_full">;
  readonly failEntry: FailEntryExit;
  readonly internal: InternalErrorExit;
  readonly systemEvent: SystemEventExit;
  readonly hypercall: HypercallExit;
  readonly debug: DebugExit;
  readonly exception: ExceptionExit;
  readonly ioapicEoi: IoapicEoiExit;
  readonly unknown: UnknownExit;
  constructor(private readonly run: Buffer) {
    this.io = new IoExit(run);
    this.mmio = new MmioExit(run);
    this.rdmsr = new MsrExit(run, "rdmsr");
    this.wrmsr = new MsrExit(run, "wrmsr");
    this.hlt = new SimpleExit(run, "hlt");
    this.shutdown = new SimpleExit(run, "shutdown");
    this.irqWindowOpen = new SimpleExit(run, "irq_window_open");
    this.interrupted = new SimpleExit(run, "interrupted");
    this.dirtyRingFull = new SimpleExit(run, "dirty_ring_full");
    this.failEntry = new FailEntryExit(run);
    this.internal = new InternalErrorExit(run);
    this.systemEvent = new SystemEventExit(run);
    this.hypercall = new HypercallExit(run);
    this.debug = new DebugExit(run);
    this.exception = new ExceptionExit(run);
    this.ioapicEoi = new IoapicEoiExit(run);
    this.unknown = new UnknownExit(run);
  }
  decode(): VcpuExit {
    switch (this.run.readUInt32LE(RUN_EXIT_REASON)) {
      case KVM_EXIT.IO:
        return this.io;
      case KVM_EXIT.MMIO:
        return this.mmio;
      case KVM_EXIT.HLT:
        return this.hlt;
      case KVM_EXIT.SHUTDOWN:
        return this.shutdown;
      case KVM_EXIT.X86_RDMSR:
        return this.rdmsr;
      case KVM_EXIT.X86_WRMSR:
        return this.wrmsr;
      case KVM_EXIT.IRQ_WINDOW_OPEN:
        return this.irqWindowOpen;
      case KVM_EXIT.INTR:
        return this.interrupted;
      case KVM_EXIT.FAIL_ENTRY:
        return this.failEntry;
      case KVM_EXIT.INTERNAL_ERROR:
        return this.internal;
      case KVM_EXIT.SYSTEM_EVENT:
        return this.systemEvent;
      case KVM_EXIT.HYPERCALL:
        return this.hypercall;
      case KVM_EXIT.DEBUG:
        return this.debug;
      case KVM_EXIT.EXCEPTION:
        return this.exception;
      case KVM_EXIT.DIRTY_RING_FULL:
        return this.dirtyRingFull;
      case KVM_EXIT.IOAPIC_EOI:
        return this.ioapicEoi;
      default:
        return this.unknown;
    }
  }
}
