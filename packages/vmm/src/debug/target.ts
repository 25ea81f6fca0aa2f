import { type GuestMemory, KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP, KVM_GUESTDBG_USE_HW_BP } from "@tsvmm/abi";
import {
  type Breakpoint, type BreakpointResult, DebugRegisters, type DebugTarget, type GdbArchitecture, GdbSignal, type ResumeAction, type StopCause, type StopEvent,
  type X86Registers,
} from "@tsvmm/gdbstub";
import type { Vcpu } from "@tsvmm/kvm-backend";
import { GdbTargetError } from "./errors.js";
import type { DebugExitView, VcpuDebugHook } from "./hook.js";
import { type GuestDebugSupport, probeGuestDebug } from "./probe.js";
import { architectureOf, kvmFpuFrom, kvmRegsFrom, kvmSregsFrom, MSR_KERNEL_GS_BASE, toGdbRegisters } from "./registers.js";
import { LinearTranslator, planLinear, readLinear } from "./translate.js";

/** DR6.BS: the #DB came from a single step (SDM Vol. 3B 17.2.3). */
const DR6_BS = 1n << 14n;
const NO_DEBUGREGS: bigint[] = [0n, 0n, 0n, 0n, 0n, 0n, 0n, 0n];
/** At most this many write watchpoints are emulated, as many as the hardware would hold. */
const MAX_SOFT_WATCHES = 4;

export interface KvmDebugTargetOptions {
  readonly vcpus: readonly Vcpu[];
  readonly memory: GuestMemory;
  /** End the VM (gdb's `kill`). */
  readonly kill: () => void;
  /** Hold every vCPU before its first instruction until the debugger resumes it (`--gdb-wait`). */
  readonly wait?: boolean;
  /** What this host's KVM delivers (default: measured once per process by {@link probeGuestDebug}). */
  readonly support?: GuestDebugSupport;
}

/** A write watchpoint kept by single-stepping and comparing, where the host does not deliver data breakpoints. */
interface SoftWatch {
  readonly bp: Breakpoint;
  readonly pieces: readonly { pa: number; length: number }[];
  value: Buffer;
}

/**
 * gdb's view of a KVM VM, in all-stop mode: when one vCPU stops (breakpoint, watchpoint, step,
 * Ctrl-C) every vCPU is taken out of KVM_RUN and parked at a point where its state is whole,
 * and only the vCPUs a resume names run again. It is also the {@link VcpuDebugHook} the Vmm's
 * loops consult.
 *
 * Breakpoints: Z1 and Z0 take DR0–DR3 execute slots (this host cannot run `int3` at CPL0, see
 * {@link probeGuestDebug}; KVM_GUESTDBG_USE_SW_BP is never used). Z2/Z4 take write and
 * read-write slots where the host delivers data breakpoints; where it does not (the PVM
 * emulator of CPL0 code ignores them), Z2 is emulated: running vCPUs single-step and the
 * watched bytes are compared after every instruction, which stops right after the writing
 * instruction (a store of the same value goes unnoticed, as with gdb's own software
 * watchpoints), and Z4 is refused as unsupported. Z3 is always unsupported (x86 has no
 * read-only condition; gdb then uses an access watchpoint).
 *
 * Memory is addressed by guest-virtual (linear) address through the vCPU's own paging: none
 * in real mode and protected mode without paging, 32-bit, PAE, and 4- or 5-level paging.
 */
export class KvmDebugTarget implements DebugTarget, VcpuDebugHook {
  readonly vcpuCount: number;
  private readonly vcpus: readonly Vcpu[];
  private readonly memory: GuestMemory;
  private readonly killVm: () => void;
  private supportValue: GuestDebugSupport | undefined;
  private readonly held: boolean[];
  private readonly active = new Set<number>();
  private readonly parked = new Map<number, () => void>();
  private parkWaiters: Array<() => void> = [];
  private started = false;
  private ended: number | undefined;
  /** The first stop of the outstanding resume, reported once every vCPU has parked. */
  private pending: StopEvent | undefined;
  private resumeDone: ((e: StopEvent) => void) | undefined;
  private resumed: readonly number[] = [];
  private stepping = new Set<number>();
  private attached = false;
  private slots = new DebugRegisters();
  private softWatches: SoftWatch[] = [];

  constructor(o: KvmDebugTargetOptions) {
    this.vcpus = o.vcpus;
    this.vcpuCount = o.vcpus.length;
    this.memory = o.memory;
    this.killVm = o.kill;
    this.supportValue = o.support;
    this.held = o.vcpus.map(() => o.wait === true);
  }

  /** What the host delivers (probed on first use). */
  get support(): GuestDebugSupport {
    this.supportValue ??= probeGuestDebug();
    return this.supportValue;
  }

  /** True while any vCPU is held by the debugger. */
  get holding(): boolean {
    return this.ended === undefined && this.held.some(Boolean);
  }

  // ---- VcpuDebugHook: the Vmm's loops ---------------------------------------------------

  enter(index: number): void {
    this.started = true;
    this.active.add(index);
    // A held vCPU must not execute its first instruction: its first KVM_RUN returns at once.
    if (this.holds(index)) this.vcpus[index]?.kick();
  }

  leave(index: number): void {
    this.active.delete(index);
    this.parked.delete(index);
    this.settle();
  }

  holds(index: number): boolean {
    return this.ended === undefined && this.held[index] === true;
  }

  park(index: number): Promise<void> {
    if (!this.holds(index)) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.parked.set(index, resolve);
      this.settle();
    });
  }

  debugExit(index: number, exit: DebugExitView): boolean {
    if (!this.attached) return false;
    const exception = exit.exception;
    const dr6 = exit.dr6;
    let cause: StopCause | undefined = exception === 1 ? this.slots.stopCause(dr6) : undefined;
    cause ??= this.changedWatch();
    const stepped = exception === 1 && (dr6 & DR6_BS) !== 0n;
    if (cause !== undefined || (stepped && this.stepping.has(index)) || exception === 3) {
      this.report({ kind: "stopped", vcpu: index, signal: GdbSignal.TRAP, ...(cause ? { cause } : {}) });
      return true;
    }
    // A step of our own (emulated watchpoints) or a #DB that is not ours: run on.
    return false;
  }

  vmStopping(exitStatus: number): void {
    if (this.ended !== undefined) return;
    this.ended = exitStatus & 0xff;
    for (const r of this.parked.values()) r();
    this.parked.clear();
    this.settle();
  }

  // ---- DebugTarget: gdb ---------------------------------------------------------------

  architecture(vcpu: number): GdbArchitecture {
    return architectureOf(this.vcpu(vcpu).getSregs());
  }

  async halt(): Promise<StopEvent> {
    if (this.ended !== undefined) return { kind: "exited", status: this.ended };
    this.attached = true;
    this.holdAll(-1);
    await this.allParked();
    if (this.ended !== undefined) return { kind: "exited", status: this.ended };
    // Only now: a vCPU ioctl waits for a KVM_RUN in progress to return.
    if (this.slots.used === 0) this.slots = new DebugRegisters({ allowLength8: this.architecture(0) === "i386:x86-64" });
    const first = this.started && !this.active.has(0) && this.active.size > 0 ? [...this.active][0]! : 0;
    return { kind: "stopped", vcpu: first, signal: GdbSignal.TRAP };
  }

  readRegisters(vcpu: number): X86Registers {
    const v = this.vcpu(vcpu);
    const sregs = v.getSregs();
    const kgs = v.getMsrs([MSR_KERNEL_GS_BASE])[0]?.data ?? 0n;
    let fpu: ReturnType<Vcpu["getFpu"]> | undefined;
    try {
      fpu = v.getFpu();
    } catch {
      fpu = undefined;
    }
    return toGdbRegisters(v.getRegs(), sregs, kgs, fpu);
  }

  writeRegisters(vcpu: number, regs: X86Registers): void {
    const v = this.vcpu(vcpu);
    v.setRegs(kvmRegsFrom(regs));
    const sregs = kvmSregsFrom(v.getSregs(), regs);
    if (sregs !== undefined) v.setSregs(sregs);
    const kgs = v.getMsrs([MSR_KERNEL_GS_BASE])[0]?.data;
    if (kgs !== undefined && kgs !== regs.kernelGsBase) v.setMsrs([{ index: MSR_KERNEL_GS_BASE, data: regs.kernelGsBase }]);
    if (regs.fpu || regs.sse) {
      const fpu = kvmFpuFrom(v.getFpu(), regs);
      if (fpu !== undefined) v.setFpu(fpu);
    }
  }

  readMemory(vcpu: number, address: bigint, length: number): Uint8Array {
    return readLinear(this.memory, this.translator(vcpu), address, length);
  }

  writeMemory(vcpu: number, address: bigint, data: Uint8Array): void {
    const plan = planLinear(this.memory, this.translator(vcpu), address, data.length);
    if (plan === undefined) throw new GdbTargetError("GDB_TARGET_UNMAPPED", `0x${address.toString(16)}+${data.length} is not mapped in guest memory`);
    let off = 0;
    for (const p of plan) {
      this.memory.write(p.pa, data.subarray(off, off + p.length));
      off += p.length;
    }
    // gdb writing a watched variable is not the guest writing it.
    for (const w of this.softWatches) w.value = this.readPieces(w.pieces);
  }

  setBreakpoint(bp: Breakpoint): BreakpointResult {
    switch (bp.kind) {
      case "sw":
      case "hw":
        return this.slots.insert(bp);
      case "read":
        return "unsupported";
      case "write":
      case "access":
        if (this.support.dataBreakpoints) return this.slots.insert(bp);
        return bp.kind === "write" ? this.addSoftWatch(bp) : "unsupported";
      default:
        return "error";
    }
  }

  removeBreakpoint(bp: Breakpoint): BreakpointResult {
    if (bp.kind === "write" && !this.support.dataBreakpoints) {
      const i = this.softWatches.findIndex((w) => w.bp.address === bp.address && w.bp.length === bp.length);
      if (i < 0) return "error";
      this.softWatches.splice(i, 1);
      return "ok";
    }
    if (bp.kind === "read" || (bp.kind === "access" && !this.support.dataBreakpoints)) return "unsupported";
    return this.slots.remove(bp);
  }

  resume(actions: readonly ResumeAction[]): Promise<StopEvent> {
    if (this.ended !== undefined) return Promise.resolve({ kind: "exited", status: this.ended });
    const run = [...new Set(actions.map((a) => a.vcpu))].filter((i) => Number.isInteger(i) && i >= 0 && i < this.vcpuCount);
    this.stepping = new Set(actions.filter((a) => a.action === "step").map((a) => a.vcpu));
    this.pending = undefined;
    this.resumed = run;
    this.loadGuestDebug(new Set(run));
    const done = new Promise<StopEvent>((resolve) => {
      this.resumeDone = resolve;
    });
    if (this.started && !run.some((i) => this.active.has(i))) {
      // Nothing named can run (those vCPUs ended): say where the rest are.
      const other = [...this.active][0];
      this.resumeDone = undefined;
      return Promise.resolve(other === undefined ? { kind: "exited", status: this.ended ?? 0 } : { kind: "stopped", vcpu: other, signal: GdbSignal.TRAP });
    }
    for (const i of run) this.release(i);
    return done;
  }

  interrupt(): void {
    if (this.resumeDone === undefined || this.pending !== undefined) return;
    const vcpu = this.resumed.find((i) => this.active.has(i)) ?? this.resumed[0] ?? 0;
    this.report({ kind: "stopped", vcpu, signal: GdbSignal.INT });
  }

  kill(): void {
    this.killVm();
  }

  detach(): void {
    this.attached = false;
    this.slots.clear();
    this.softWatches = [];
    this.stepping.clear();
    this.pending = undefined;
    this.loadGuestDebug(new Set());
    for (let i = 0; i < this.vcpuCount; i++) this.release(i);
  }

  threadName(vcpu: number): string {
    return `vCPU ${vcpu}`;
  }

  // ---- inside ------------------------------------------------------------------------

  private vcpu(index: number): Vcpu {
    const v = this.vcpus[index];
    if (v === undefined) throw new GdbTargetError("GDB_TARGET_NO_VCPU", `no vCPU ${index}`);
    return v;
  }

  private translator(vcpu: number): LinearTranslator {
    const s = this.vcpu(vcpu).getSregs();
    return new LinearTranslator(this.memory, s);
  }

  private release(index: number): void {
    this.held[index] = false;
    const r = this.parked.get(index);
    if (r) {
      this.parked.delete(index);
      r();
    }
  }

  /** Hold every vCPU; kick those in the guest (not `except`, which is leaving by itself). */
  private holdAll(except: number): void {
    for (let i = 0; i < this.vcpuCount; i++) {
      this.held[i] = true;
      if (i !== except && this.active.has(i) && !this.parked.has(i)) this.vcpus[i]!.kick();
    }
  }

  private report(e: StopEvent): void {
    if (this.pending !== undefined) return;
    this.pending = e;
    this.holdAll(e.kind === "stopped" && e.signal === GdbSignal.TRAP ? e.vcpu : -1);
    this.settle();
  }

  private allParked(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.parkWaiters.push(resolve);
      this.settle();
    });
  }

  /** Finish what waits for all-stop (or for the VM's end) once it is reached. */
  private settle(): void {
    const allStopped = this.ended !== undefined || [...this.active].every((i) => this.parked.has(i));
    if (!allStopped) return;
    for (const w of this.parkWaiters.splice(0)) w();
    const done = this.resumeDone;
    if (done === undefined) return;
    if (this.ended !== undefined) {
      // Report the end once every loop is gone: the VM's resources are about to be released.
      if (this.active.size > 0) return;
      this.resumeDone = undefined;
      done({ kind: "exited", status: this.ended });
      return;
    }
    if (this.pending !== undefined) {
      this.resumeDone = undefined;
      done(this.pending);
    }
  }

  /** KVM_SET_GUEST_DEBUG on every vCPU: the breakpoint slots everywhere, single-step where a step (or an emulated watchpoint) needs it. */
  private loadGuestDebug(running: ReadonlySet<number>): void {
    const state = this.slots.state();
    const debugreg = state.active ? [...state.debugreg] : NO_DEBUGREGS;
    for (let i = 0; i < this.vcpuCount; i++) {
      let control = 0;
      if (this.attached && state.active) control |= KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP;
      if (this.attached && (this.stepping.has(i) || (this.softWatches.length > 0 && running.has(i)))) control |= KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP;
      try {
        this.vcpus[i]!.setGuestDebug(control, control === 0 ? NO_DEBUGREGS : debugreg);
      } catch {
        // A closed vCPU (the VM is ending) has nothing left to debug.
      }
    }
  }

  private addSoftWatch(bp: Breakpoint): BreakpointResult {
    if (!Number.isInteger(bp.length) || bp.length <= 0 || bp.length > 32) return "error";
    if (this.softWatches.length >= MAX_SOFT_WATCHES) return "no-slots";
    // Watched through vCPU 0's mapping when inserted: the physical bytes are what all vCPUs write.
    const pieces = planLinear(this.memory, this.translator(0), bp.address, bp.length);
    if (pieces === undefined) return "error";
    this.softWatches.push({ bp, pieces, value: this.readPieces(pieces) });
    return "ok";
  }

  private readPieces(pieces: readonly { pa: number; length: number }[]): Buffer {
    return Buffer.concat(pieces.map((p) => this.memory.read(p.pa, p.length)));
  }

  private changedWatch(): StopCause | undefined {
    for (const w of this.softWatches) {
      const now = this.readPieces(w.pieces);
      if (!now.equals(w.value)) {
        w.value = now;
        return { type: "watch", address: w.bp.address };
      }
    }
    return undefined;
  }
}
