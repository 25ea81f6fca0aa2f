import { KVM_INTERNAL_ERROR, KVM_MP_STATE, type KvmCpuidEntry2 } from "@tsvmm/abi";
import type { HypercallDevice, MmioBus, PioBus, TraceRecorder, Uart16550 } from "@tsvmm/devices";
import { type ExitHandlers, type Kvm, runLoopAsync, type Vcpu, type VcpuExit, VcpuWorker, type VcpuWorkerOptions, type Vm } from "@tsvmm/kvm-backend";
import { VirtioConsole } from "@tsvmm/virtio";
import type { VmmSpec, VmmVcpuWorkerOptions } from "./assemble.js";
import { CoalescedSerial } from "./coalesced-serial.js";
import type { VcpuDebugHook } from "./debug/hook.js";
import { type EmulationOptions, EmulationStats, VcpuEmulation } from "./emulation/index.js";
import { VmmError } from "./errors.js";
import type { BootPlan } from "./kernel.js";
import { LazyPit } from "./lazy-pit.js";
import { PauseGate } from "./pause.js";
// Snapshots are loaded when used: a plain run does not evaluate them (bench tsvmm-run-hello).
import type { RestoreOptions } from "./snapshot/restore.js";
import type { SnapshotInfo, SnapshotOptions } from "./snapshot/save.js";
import type { AttachedVirtio } from "./virtio.js";
import { monotonicMs, Watchdog, type WatchdogOptions } from "./watchdog.js";

/** Why a VM stopped, and the process exit status that stands for it. */
export type StopReason =
  /** The guest asked: debug-exit port or the EXIT hypercall. `exitCode` is its code. */
  | "guest-exit"
  /** A reset request (i8042 0xFE, or KVM's reset system event). Exit status 0. */
  | "reset"
  /** A power-off request (ACPI S5 or KVM's shutdown system event). Exit status 0. */
  | "poweroff"
  /** A triple fault (KVM_EXIT_SHUTDOWN). Exit status 125. */
  | "triple-fault"
  /** The watchdog stopped the VM: run time over its budget, or no exit for too long. Exit status 124. */
  | "timeout"
  /** The guest did something KVM could not carry out (emulation or entry failure, halted with interrupts off). Exit status 126. */
  | "guest-error"
  /** Stopped from outside: a signal, the control socket or `kill()`. Exit status 0 unless the caller says. */
  | "stopped"
  /** The VMM itself failed to do its part (the trace could not be written). Exit status 74 (EX_IOERR). */
  | "vmm-error";

export const EXIT_STATUS: Readonly<Record<Exclude<StopReason, "guest-exit">, number>> = {
  reset: 0,
  poweroff: 0,
  "triple-fault": 125,
  timeout: 124,
  "guest-error": 126,
  stopped: 0,
  "vmm-error": 74,
};

/** Where and how the VM stopped, for programs (the message says the same for people). */
export type StopDetail =
  | { readonly kind: "exit-hypercall"; readonly vcpu: number }
  | { readonly kind: "debug-exit"; readonly vcpu: number }
  | { readonly kind: "shutdown"; readonly vcpu: number }
  | { readonly kind: "system-event"; readonly vcpu: number; readonly type: string }
  | { readonly kind: "internal-error"; readonly vcpu: number; readonly suberror: number; readonly instructionBytes: string | undefined; readonly rip: bigint }
  | { readonly kind: "fail-entry"; readonly vcpu: number; readonly hardwareEntryFailureReason: bigint }
  | { readonly kind: "halted"; readonly vcpu: number }
  | { readonly kind: "unexpected-exit"; readonly vcpu: number; readonly exit: string }
  | { readonly kind: "handler-fault"; readonly vcpu: number; readonly error: string }
  | { readonly kind: "watchdog" }
  | { readonly kind: "external" }
  | { readonly kind: "device"; readonly device: string }
  | { readonly kind: "trace"; readonly error: string };

export interface VmmResult {
  readonly reason: StopReason;
  /** Process exit status for this stop (guest code & 0xff for guest-exit). */
  readonly exitCode: number;
  /** One line for a person: what happened and where. */
  readonly message: string;
  readonly detail: StopDetail;
  /** EXIT hypercall code per vCPU that made one. */
  readonly exitCodes: ReadonlyMap<number, number>;
  readonly vcpuRips: readonly bigint[];
  readonly exits: number;
  readonly durationMs: number;
  /** Instructions the VMM emulated for KVM (`--emulate`), counts by mnemonic; empty when off. */
  readonly emulated: Readonly<Record<string, number>>;
}

/** A filtered RDMSR/WRMSR: a value (rdmsr) or true (wrmsr) to complete it, false or "fail" to inject #GP. */
export type MsrHandler = (kind: "rdmsr" | "wrmsr", index: number, data: bigint, vcpu: number) => bigint | boolean | "fail";

/** The per-vCPU CPUID tables: what the VMM set, and what KVM_GET_CPUID2 returned after it. */
export interface CpuidRecord {
  readonly set: KvmCpuidEntry2[];
  readonly held: KvmCpuidEntry2[];
}

/** What the builder assembled; the Vmm owns all of it from then on. */
export interface VmmParts {
  readonly kvm: Kvm;
  readonly vm: Vm;
  readonly vcpus: readonly Vcpu[];
  readonly pio: PioBus;
  readonly mmio: MmioBus;
  readonly uart: Uart16550;
  readonly hypercall: HypercallDevice;
  readonly boot: BootPlan;
  readonly cpuid: readonly CpuidRecord[];
  readonly irqchip: boolean;
  readonly trace: TraceRecorder | undefined;
  readonly watchdog: WatchdogOptions;
  readonly onMsr: MsrHandler | undefined;
  /** Resources that are not the VM's (devices' files, sockets): closed after the VM. */
  readonly closers: ReadonlyArray<() => void | Promise<void>>;
  /** What the VM was built from (a snapshot records its serializable part). */
  readonly spec?: VmmSpec;
  /** The virtio devices, in window order. */
  readonly virtio: readonly AttachedVirtio[];
  /** What must be up before the first vCPU runs (host listeners). */
  readonly ready: readonly Promise<void>[];
  /** A debugger's hold on the vCPU loops (the gdb stub, debug/); undefined: none. */
  readonly debug?: VcpuDebugHook;
  /** Finish instructions KVM cannot emulate in the VMM (`--emulate`); undefined: off. */
  readonly emulation?: EmulationOptions;
  /** Each vCPU's loop on a worker thread with these exit handlers; undefined: all on this thread. */
  readonly vcpuWorker?: VmmVcpuWorkerOptions;
}

const HALT_CHECK_MS = 1000;
const RFLAGS_IF = 1n << 9n;

/**
 * One assembled virtual machine: KVM VM + memory + vCPUs + devices, with its run loop. Build it
 * with {@link VmmBuilder}. `run()` resolves when the VM stops, for any reason; a guest can never
 * make it throw or crash the process. Everything is released when run() settles or on close().
 */
export class Vmm {
  readonly kvm: Kvm;
  readonly vm: Vm;
  readonly vcpus: readonly Vcpu[];
  readonly pio: PioBus;
  readonly mmio: MmioBus;
  readonly uart: Uart16550;
  readonly hypercall: HypercallDevice;
  readonly boot: BootPlan;
  readonly cpuid: readonly CpuidRecord[];
  readonly virtio: readonly AttachedVirtio[];
  private readonly parts: VmmParts;
  private stop: { reason: StopReason; code: number; message: string; detail: StopDetail } | undefined;
  private readonly exitCodes = new Map<number, number>();
  private readonly running: Set<number>;
  private exitCount = 0;
  /** Returns from a pause or the debugger: progress that is not an exit (see progress()). */
  private resumes = 0;
  private haltCheck = false;
  private state: "ready" | "running" | "done" = "ready";
  private readonly gate = new PauseGate();
  private readonly coalesced: CoalescedSerial | undefined;
  private readonly lazyPit: LazyPit | undefined;
  /** The vCPUs' worker threads (VmmBuilder.vcpuWorkers), from run() on; undefined: runLoopAsync here. */
  private workers: VcpuWorker[] | undefined;
  /** Counts of instructions emulated by the VMM, all vCPUs together. */
  readonly emulationStats = new EmulationStats();

  constructor(parts: VmmParts) {
    this.parts = parts;
    this.kvm = parts.kvm;
    this.vm = parts.vm;
    this.vcpus = parts.vcpus;
    this.pio = parts.pio;
    this.mmio = parts.mmio;
    this.uart = parts.uart;
    this.hypercall = parts.hypercall;
    this.boot = parts.boot;
    this.cpuid = parts.cpuid;
    this.virtio = parts.virtio;
    // vCPUs the guest runs from the start; secondaries of other boot formats wait for INIT/SIPI.
    this.running = new Set(parts.boot.secondaries === "same-state" ? this.vcpus.map((_, i) => i) : [0]);
    // A trace or an observer records each access as its vCPU's exit: the ring would hand them
    // over later and without the vCPU, so they keep one exit per byte.
    const port = parts.pio.entries().find((e) => e.device === parts.uart)?.base;
    const coalesce = parts.spec?.coalesceSerial !== false && parts.trace === undefined && parts.pio.observer === null && port !== undefined;
    this.coalesced = coalesce && CoalescedSerial.offered(parts.vm) ? new CoalescedSerial(parts.vm, parts.uart, port, parts.pio, parts.mmio) : undefined;
    this.lazyPit = parts.irqchip && !parts.vm.hasPit2 ? new LazyPit(parts.vm) : undefined;
  }

  /** True while the UART's THR writes go through KVM's coalesced ring (see coalesced-serial.ts). */
  get serialCoalesced(): boolean {
    return this.coalesced?.active === true;
  }

  /** Exits taken so far by all vCPUs (on their worker threads too). */
  get exits(): number {
    let n = this.exitCount;
    if (this.workers !== undefined) for (const w of this.workers) n += w.exits;
    return n;
  }

  /** True once the VM has been asked to stop (by the guest, the watchdog or the caller). */
  get stopping(): boolean {
    return this.stop !== undefined;
  }

  /** Ask the VM to stop; the first request wins. Safe from any callback, any number of times. */
  requestStop(reason: StopReason, code: number, message: string, detail: StopDetail): void {
    if (this.stop !== undefined) return;
    this.stop = { reason, code: reason === "guest-exit" ? code & 0xff : code, message, detail };
    this.parts.debug?.vmStopping(this.stop.code);
    // Parked loops must see the stop: let them go, they end at their next check.
    this.gate.resume();
    for (const v of this.vcpus) v.kick();
  }

  /** Stop the VM from outside; run() resolves with `reason` ("stopped" by default). */
  kill(message = "stopped by the VMM", reason: StopReason = "timeout"): void {
    this.requestStop(reason, reason === "guest-exit" ? 0 : EXIT_STATUS[reason], message, reason === "timeout" ? { kind: "watchdog" } : { kind: "external" });
  }

  /** The guest's EXIT hypercall on vCPU `vcpu` (wired by the builder). */
  guestExit(code: number, vcpu: number): void {
    this.exitCodes.set(vcpu, code);
    this.running.delete(vcpu);
    this.vcpus[vcpu]?.kick();
    if (this.running.size === 0 || (vcpu === 0 && this.parts.boot.secondaries === "wait-for-sipi")) {
      const c = this.exitCodes.get(0) ?? code;
      this.requestStop("guest-exit", c, `guest called EXIT(${c})`, { kind: "exit-hypercall", vcpu });
    }
  }

  /**
   * Boot and run until the VM stops. Never rejects because of guest behaviour. Everything is
   * released at the end unless `close: false` (then read guest memory or the dirty log, and call
   * `close()` yourself).
   */
  async run(options: { close?: boolean } = {}): Promise<VmmResult> {
    if (this.state !== "ready") throw new VmmError("VMM_STATE", "a Vmm runs once");
    this.state = "running";
    try {
      await Promise.all(this.parts.ready);
    } catch (e) {
      await this.close().catch(() => {});
      throw new VmmError("VMM_STATE", `a device could not start: ${(e as Error).message}`, { cause: e });
    }
    const w = this.parts.vcpuWorker;
    if (w !== undefined) {
      const workerOptions: VcpuWorkerOptions = { module: w.module, data: w.data, memory: w.shareMemory === true ? this.vm.memory : undefined };
      const started = await Promise.allSettled(this.vcpus.map((v) => VcpuWorker.start(v, workerOptions)));
      this.workers = started.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
      const failed = started.find((r) => r.status === "rejected");
      if (failed !== undefined) {
        await this.close().catch(() => {});
        const e: unknown = failed.reason;
        throw new VmmError("VMM_STATE", `a vCPU worker could not start: ${(e as Error).message}`, { cause: e });
      }
    }
    const t0 = monotonicMs();
    this.coalesced?.start();
    const progress = (): number => this.exits + this.resumes;
    // A paused VM takes no exits by design: that is not a stall.
    const resting = (): boolean => this.gate.requested || this.parts.debug?.holding === true;
    const dog = new Watchdog(this.parts.watchdog, {
      timeout: (ms) => this.requestStop("timeout", EXIT_STATUS.timeout, `watchdog: the VM ran past its ${ms} ms budget`, { kind: "watchdog" }),
      stalled: (ms) => this.requestStop("timeout", EXIT_STATUS.timeout, `watchdog: no vCPU exited for ${ms} ms`, { kind: "watchdog" }),
      progress,
      resting,
    });
    // With the in-kernel irqchip KVM sleeps through HLT without exiting: look at quiet vCPUs now and
    // then (no exit in a whole period), so a guest halted with interrupts off ends instead of hanging.
    let seen = progress();
    const halts = this.parts.irqchip
      ? setInterval(() => {
          const p = progress();
          if (resting() || p !== seen) {
            seen = p;
            return;
          }
          this.haltCheck = true;
          for (const i of this.running) this.vcpus[i]!.kick();
        }, HALT_CHECK_MS)
      : undefined;
    try {
      await Promise.all(this.vcpus.map((v, i) => this.loop(v, i)));
    } finally {
      dog.stop();
      if (halts !== undefined) clearInterval(halts);
      this.coalesced?.stop();
    }
    const rips = this.vcpus.map((v) => {
      try {
        return v.getRegs().rip;
      } catch {
        return 0n;
      }
    });
    const s = this.stop ?? { reason: "guest-error" as const, code: EXIT_STATUS["guest-error"], message: "all vCPUs stopped without a reason", detail: { kind: "external" } as const };
    let result: VmmResult = {
      reason: s.reason,
      exitCode: s.code,
      message: s.message,
      detail: s.detail,
      exitCodes: new Map(this.exitCodes),
      vcpuRips: rips,
      exits: this.exits,
      durationMs: monotonicMs() - t0,
      emulated: this.emulationStats.toRecord(),
    };
    if (options.close !== false) {
      try {
        await this.close();
      } catch (e) {
        // Losing the trace silently would be worse than failing: the run counts as failed.
        const message = `${result.message}; then the VMM failed: ${(e as Error).message}`;
        result = { ...result, reason: "vmm-error", exitCode: EXIT_STATUS["vmm-error"], message, detail: { kind: "trace", error: (e as Error).message } };
      }
    }
    return result;
  }

  private async loop(vcpu: Vcpu, index: number): Promise<void> {
    const handlers = this.handlers(index);
    const coalesced = this.coalesced;
    const worker = this.workers?.[index];
    let kind = "";
    const shouldStop = (): boolean => this.stop !== undefined || (this.exitCodes.has(index) && !this.running.has(index));
    const unhandled = (exit: VcpuExit): true => {
      this.requestStop("guest-error", EXIT_STATUS["guest-error"], `vCPU ${index}: unexpected exit ${exit.kind}`, {
        kind: "unexpected-exit",
        vcpu: index,
        exit: JSON.stringify(exit.toJSON()),
      });
      return true;
    };
    this.gate.enter(index);
    this.parts.debug?.enter(index);
    try {
      for (;;) {
        if (worker === undefined) {
          await runLoopAsync(vcpu, handlers, {
            shouldStop,
            onExit: (exit) => {
              // THR writes KVM queued (by any vCPU) happened before this exit: the devices see them first.
              coalesced?.drain();
              kind = exit.kind;
              this.exitCount++;
            },
            unhandled,
          });
        } else {
          // The exits the worker's module does not take come here; the worker counts them all.
          await worker.run(handlers, {
            shouldStop,
            onExit: (exit) => {
              coalesced?.drain();
              kind = exit.kind;
            },
            unhandled,
          });
        }
        // Held by a debugger (all-stop): wait here until it lets this vCPU run.
        if (this.stop === undefined && this.parts.debug?.holds(index) === true) {
          await this.parts.debug.park(index);
          this.resumes++;
          continue;
        }
        // Left for a pause (an interrupted exit while one is requested): wait here, then go on.
        if (this.stop !== undefined || !this.gate.requested) break;
        await this.gate.park(index);
        this.resumes++;
      }
    } catch (e) {
      // Devices and buses isolate their own faults; anything still thrown here means the guest
      // did something the VMM cannot represent. It stops this VM, never the process.
      this.requestStop("guest-error", EXIT_STATUS["guest-error"], `vCPU ${index}: ${kind} exit could not be handled: ${(e as Error).message}`, {
        kind: "handler-fault",
        vcpu: index,
        error: (e as Error).message,
      });
    } finally {
      this.gate.leave(index);
      this.parts.debug?.leave(index);
    }
  }

  /** The exit handlers of vCPU `index`: built once, so the exit path allocates nothing. */
  private handlers(index: number): ExitHandlers {
    const pio = this.pio;
    const mmio = this.mmio;
    const guestError = (message: string, detail: StopDetail): true => {
      this.requestStop("guest-error", EXIT_STATUS["guest-error"], message, detail);
      return true;
    };
    const emulation = this.emulationFor(index);
    const lazyPit = this.lazyPit;
    const handlers: ExitHandlers = {
      io: (exit, v) => {
        const port = exit.port;
        const size = exit.size;
        if (lazyPit !== undefined && size === 1 && LazyPit.claims(port) && lazyPit.take(v, index, port)) return false;
        const data = exit.data;
        const isIn = exit.direction === "in";
        if (data.length === size) {
          // The common case, one element: no sub-view to allocate on the exit path.
          if (isIn) pio.readInto(port, data, index);
          else pio.write(port, data, index);
        } else {
          // String I/O arrives as one exit with `count` elements: each goes to the device in turn.
          for (let off = 0; off < data.length; off += size) {
            const el = data.subarray(off, off + size);
            if (isIn) pio.readInto(port, el, index);
            else pio.write(port, el, index);
          }
        }
        return this.stop !== undefined;
      },
      mmio: (exit) => {
        if (exit.isWrite) mmio.write(exit.address, exit.data, index);
        else mmio.readInto(exit.address, exit.data, index);
        return this.stop !== undefined;
      },
      rdmsr: (exit) => this.msr(exit, index),
      wrmsr: (exit) => this.msr(exit, index),
      interrupted: (_exit, v) => {
        // KVM_RUN returned at once (immediate_exit) after finishing any half-done I/O: a point
        // where the vCPU's state is whole, so a pause parks here.
        lazyPit?.replay(v, index);
        if (this.gate.requested || this.parts.debug?.holds(index) === true) return true;
        if (this.haltCheck) this.checkHalted(index);
        return this.stop !== undefined;
      },
      irq_window_open: () => false,
      hlt: (_exit, v) => {
        // Without an in-kernel irqchip HLT comes here. With interrupts off nothing can wake it.
        if ((v.getRegs().rflags & RFLAGS_IF) === 0n) {
          return guestError(`vCPU ${index} halted with interrupts off`, { kind: "halted", vcpu: index });
        }
        return false;
      },
      shutdown: () => {
        this.requestStop("triple-fault", EXIT_STATUS["triple-fault"], `vCPU ${index}: triple fault (KVM_EXIT_SHUTDOWN)`, { kind: "shutdown", vcpu: index });
        return true;
      },
      system_event: (exit) => {
        const reset = exit.typeName === "RESET";
        const reason = reset ? "reset" : "poweroff";
        this.requestStop(reason, EXIT_STATUS[reason], reset ? `vCPU ${index}: guest requested a reset` : `vCPU ${index}: guest powered off (${exit.typeName})`, {
          kind: "system-event",
          vcpu: index,
          type: exit.typeName,
        });
        return true;
      },
      internal_error: (exit, v) => {
        let why = "";
        if (emulation !== undefined && exit.suberror === KVM_INTERNAL_ERROR.EMULATION) {
          const r = emulation.handle(exit.instructionBytes);
          if (r.kind === "resumed") return this.stop !== undefined;
          why = `; not emulated: ${r.message}`;
        }
        const bytes = exit.instructionBytes?.toString("hex");
        return guestError(`vCPU ${index}: KVM internal error, suberror ${exit.suberror}${bytes ? `, instruction bytes ${bytes}` : ""}${why}`, {
          kind: "internal-error",
          vcpu: index,
          suberror: exit.suberror,
          instructionBytes: bytes,
          rip: v.getRegs().rip,
        });
      },
      fail_entry: (exit) =>
        guestError(`vCPU ${index}: VM entry failed, hardware reason 0x${exit.hardwareEntryFailureReason.toString(16)}`, {
          kind: "fail-entry",
          vcpu: index,
          hardwareEntryFailureReason: exit.hardwareEntryFailureReason,
        }),
    };
    const debug = this.parts.debug;
    if (debug !== undefined) handlers.debug = (exit) => debug.debugExit(index, exit);
    return handlers;
  }

  /** vCPU `index`'s emulator when `--emulate` is on. */
  private emulationFor(index: number): VcpuEmulation | undefined {
    const o = this.parts.emulation;
    if (o === undefined) return undefined;
    return new VcpuEmulation({
      vcpu: this.vcpus[index]!,
      memory: this.vm.memory,
      mmio: this.mmio,
      index,
      cpuid: this.cpuid[index]?.held ?? [],
      stats: this.emulationStats,
      trace: this.parts.trace,
      options: o,
    });
  }

  private msr(exit: Extract<VcpuExit, { kind: "rdmsr" | "wrmsr" }>, index: number): boolean {
    const answer = this.parts.onMsr?.(exit.kind, exit.index, exit.data, index) ?? "fail";
    if (answer === "fail" || answer === false) exit.fail();
    else exit.reply(typeof answer === "bigint" ? answer : 0n);
    return this.stop !== undefined;
  }

  /**
   * After a halt-check kick: a vCPU halted with IF clear and no NMI pending can never run again.
   * The VM ends when every vCPU still running is in that state.
   */
  private checkHalted(index: number): void {
    const v = this.vcpus[index]!;
    const dead = v.getMpState() === KVM_MP_STATE.HALTED && (v.getRegs().rflags & RFLAGS_IF) === 0n && v.getVcpuEvents().nmi.pending === 0;
    this.deadHalted[index] = dead;
    this.haltChecked.add(index);
    if (this.haltChecked.size < this.running.size) return;
    this.haltCheck = false;
    this.haltChecked.clear();
    const all = [...this.running].every((i) => this.deadHalted[i] === true);
    if (all) {
      this.requestStop("guest-error", EXIT_STATUS["guest-error"], `vCPU ${index} halted with interrupts off`, { kind: "halted", vcpu: index });
    }
  }
  private readonly deadHalted: boolean[] = [];
  private readonly haltChecked = new Set<number>();

  /**
   * Bytes for the guest's console input: the virtio-console when there is one, else the UART's
   * receive FIFO.
   */
  consoleInput(bytes: Uint8Array): void {
    const con = this.virtio.find((d) => d.device instanceof VirtioConsole)?.device;
    if (con instanceof VirtioConsole) con.input(bytes);
    else this.uart.queueInput(bytes);
  }

  /** True while paused (or pausing): no vCPU re-enters the guest until resume(). */
  get paused(): boolean {
    return this.gate.requested;
  }

  /**
   * Take every vCPU out of KVM_RUN and keep it out: resolves once all running vCPUs are parked,
   * each after a KVM_RUN that completed its pending I/O, and the UART's output is flushed. The
   * in-kernel timers keep time; what they raise meanwhile is delivered after resume(). Resolves
   * at once when the VM is not running (not yet started, or already stopped).
   */
  async pause(): Promise<void> {
    if (this.state !== "running" || this.stop !== undefined) return;
    await this.gate.request(() => {
      for (const v of this.vcpus) v.kick();
    });
    this.uart.flush();
    // Every virtio device stops touching guest memory (doorbells held, TAP and socket input
    // held, no rx delivery) and block I/O already submitted completes into guest memory before
    // the pause is over, so a snapshot taken now holds no request half done.
    await Promise.all(this.virtio.map((d) => d.transport.pause()));
  }

  /** Let the vCPUs of a paused VM run again. Does nothing when the VM is not paused. */
  resume(): void {
    for (const d of this.virtio) d.transport.resume();
    this.gate.resume();
  }

  /**
   * Save the VM into `dir` (which must not exist; written under a temporary name and renamed
   * when complete). A running VM is paused for the save and resumed after it, unless
   * `options.resume` is false. See README-snapshot.md for the format.
   */
  async snapshot(dir: string, options: SnapshotOptions = {}): Promise<SnapshotInfo> {
    const wasPaused = this.gate.requested;
    await this.pause();
    try {
      return await (await import("./snapshot/save.js")).saveSnapshot(this, dir, options);
    } finally {
      if (!wasPaused && options.resume !== false) this.resume();
    }
  }

  /** A new VM from a snapshot directory, ready to run() (it goes on where the saved one paused). */
  static restore(dir: string, options: RestoreOptions = {}): Promise<Vmm> {
    return import("./snapshot/restore.js").then((m) => m.restoreSnapshot(dir, options));
  }

  /** @internal What snapshot/ reads and restores: the parts and the run bookkeeping. */
  snapshotAccess(): { parts: VmmParts; running: Set<number>; exitCodes: Map<number, number>; started: boolean } {
    return { parts: this.parts, running: this.running, exitCodes: this.exitCodes, started: this.state !== "ready" };
  }

  /** Release everything (vCPU threads, guest memory, fds, the trace file, devices' resources). Idempotent. */
  async close(): Promise<void> {
    if (this.state === "done") return;
    this.state = "done";
    // The worker threads leave KVM_RUN and give the vCPUs back before anything is closed.
    await Promise.all((this.workers ?? []).map((w) => w.close()));
    this.coalesced?.close();
    this.uart.flush();
    this.vm.close();
    this.kvm.close();
    const errors: unknown[] = [];
    try {
      await this.parts.trace?.close();
    } catch (e) {
      errors.push(e);
    }
    for (const c of this.parts.closers) {
      try {
        await c();
      } catch (e) {
        errors.push(e);
      }
    }
    if (errors.length > 0) throw errors[0];
  }
}
