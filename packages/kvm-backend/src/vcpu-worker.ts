import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { Worker } from "node:worker_threads";
import type { GuestMemoryMap } from "@tsvmm/abi";
import { KvmError, type KvmErrorCode } from "./errors.js";
import { RUN_IMMEDIATE_EXIT, type VcpuExit } from "./exits.js";
import { native } from "./native.js";
import { dispatch, type ExitHandlers, type RunLoopResult } from "./run-loop.js";
import type { Vcpu } from "./vcpu.js";
import {
  CTL, CTL_WORDS, FORWARD_REPLY, type ToOwner, type ToWorker, type VcpuWorkerData, WORKER_STATE, type WorkerErrorShape,
} from "./vcpu-worker-protocol.js";

/** What the handlers module's default export gets, on the worker thread. */
export interface VcpuWorkerContext<D = unknown> {
  /** The worker thread's view of the vCPU (same fd, its own kvm_run mapping); it is not closed by the module. */
  readonly vcpu: Vcpu;
  /** VcpuWorkerOptions.data, structured-cloned: SharedArrayBuffers in it are shared with the owner. */
  readonly data: D;
  /**
   * VcpuWorkerOptions.memory on this thread: the same guest RAM (no copy), with the same regions;
   * undefined when none was given. After the VM has closed it reads zeros (see VcpuWorkerOptions.memory).
   */
  readonly memory: GuestMemoryMap | undefined;
  /**
   * Hand this exit to the owner's handlers (VcpuWorker.run's) and block this thread until they have
   * run: true when they ended the loop. Exits of a kind the module has no handler for go this way
   * by themselves.
   */
  forward(exit: VcpuExit): boolean;
}

/**
 * The type of the handlers module's default export: it makes the exit handlers run on the
 * worker thread (synchronously, once per exit; return true to end the loop, as with runLoop).
 */
export type VcpuWorkerHandlersFactory<D = unknown> = (ctx: VcpuWorkerContext<D>) => ExitHandlers | Promise<ExitHandlers>;

export interface VcpuWorkerOptions {
  /** URL (file:, data:) or path of an ES module whose default export is a VcpuWorkerHandlersFactory. */
  module: string | URL;
  /** Passed to the factory (structured clone: share device state as SharedArrayBuffers). */
  data?: unknown;
  /**
   * Guest RAM for the handlers (`ctx.memory`): usually the VM's `vm.memory`, each region of which
   * must be a whole mapping this package made (a slot's memory, a GuestRam). The worker gets the
   * same pages, not a copy, as the regions are now (a slot added later is not in it). When the VM
   * closes while the thread still holds them, their pages go back to the kernel and are replaced
   * by zeros, so a late access reads 0 instead of faulting; the address range is unmapped when
   * the thread lets go (its exit).
   */
  memory?: GuestMemoryMap;
}

export interface VcpuWorkerRunOptions {
  /** Stop after this many exits (the last one included), counted on the worker thread. */
  maxExits?: number;
  /** For forwarded exits no handler of run() takes; return true to stop (the default when absent). */
  unhandled?: (exit: VcpuExit, vcpu: Vcpu) => unknown;
  /** Called with each forwarded exit before its handler (exits taken on the worker: `VcpuWorker.exits`). */
  onExit?: (exit: VcpuExit, vcpu: Vcpu) => void;
  /**
   * Checked before the run starts and after each forwarded exit: true ends the run. The worker's
   * own exits do not come here; `kick()` makes one that does.
   */
  shouldStop?: () => boolean;
}

// The thread's entry, built beside this package's index (tsup entry `vcpu-worker-thread`). From
// source (src/) and from dist/ alike the package root is one up.
// node:worker_threads takes ~1.5 ms to load here, and every importer of this package would pay it
// (the vmm bin's start-up, bench tsvmm-run-hello): only a VcpuWorker loads it.
function workerThreads(): typeof import("node:worker_threads") {
  return process.getBuiltinModule("node:worker_threads");
}

function threadEntry(): string {
  const here = typeof __dirname === "string" ? __dirname : dirname(fileURLToPath(import.meta.url));
  return join(here, "..", "dist", "vcpu-worker-thread.js");
}

function fromWorker(e: WorkerErrorShape, id: number, where: string): KvmError {
  const cause = Object.assign(new Error(e.message), { name: e.name, stack: e.stack, code: e.code });
  // A KvmError of the worker's (KVM_RUN failing there) is the same error here, code and errno kept.
  if (e.name === "KvmError" && e.code !== undefined) return new KvmError(e.code as KvmErrorCode, e.message, { errno: e.errno, ioctl: e.ioctl, cause });
  return new KvmError("KVM_WORKER_FAILED", `vCPU ${id}'s worker thread: ${where}: ${e.name}: ${e.message}`, { cause });
}

/** VcpuWorkerOptions.memory's regions for the thread: each by its mapping's address (checked there). */
function sharedRegions(memory: GuestMemoryMap | undefined): VcpuWorkerData["memory"] {
  if (memory === undefined) return undefined;
  const regions: unknown = (memory as { regions?: unknown } | null)?.regions;
  if (!Array.isArray(regions)) throw new KvmError("KVM_INVALID_ARGUMENT", "memory must be a GuestMemoryMap (vm.memory)");
  return (regions as GuestMemoryMap["regions"]).map((r) => ({ base: r.base, size: r.size, name: r.name, address: native().address(r.buffer) }));
}

/** How long close() waits for the thread to leave KVM_RUN (a spinning guest sees the signal at a host tick). */
const RECLAIM_MS = 2000;

/**
 * One vCPU whose run loop runs synchronously on a worker thread of its own, with exit handlers that
 * live there (a handlers module: devices whose state is in SharedArrayBuffers, reached with
 * Atomics), and every exit they do not take handed to handlers on this thread — the slow path —
 * while the worker waits. The event loop here stays free; vCPUs of one VM run truly in parallel,
 * each at the synchronous loop's speed.
 *
 * While the worker holds it, the Vcpu refuses run()/runAsync(), its kick() reaches the worker, and
 * its close() (or its VM's) first takes it back. Handlers here get the exit and this thread's Vcpu,
 * as with runLoop: state ioctls and the exit's data work as usual.
 */
export class VcpuWorker {
  private readonly ctl: Int32Array;
  private readonly total: Float64Array;
  private readonly worker: Worker;
  private readonly port: { id(): number; close(): void };
  private current: { id: number; resolve: (r: RunLoopResult) => void; reject: (e: unknown) => void; handlers: ExitHandlers; options: VcpuWorkerRunOptions } | undefined;
  private runs = 0;
  private state: "starting" | "ready" | "closed" | "dead" = "starting";
  private readonly ready: Promise<void>;
  private readonly exited: Promise<void>;

  private constructor(
    readonly vcpu: Vcpu,
    options: VcpuWorkerOptions,
  ) {
    const entry = threadEntry();
    if (!existsSync(entry)) {
      throw new KvmError("KVM_WORKER_FAILED", `the vCPU worker's entry ${entry} is missing; build @tsvmm/kvm-backend (npm run build)`);
    }
    // A URL (file:, data:) as given; anything else is a path.
    const module = options.module instanceof URL ? options.module.href : /^[a-z][a-z0-9+.-]+:/i.test(options.module) ? options.module : pathToFileURL(options.module).href;
    this.ctl = new Int32Array(new SharedArrayBuffer(CTL_WORDS * 4));
    this.total = new Float64Array(new SharedArrayBuffer(8));
    const memory = sharedRegions(options.memory);
    const lent = vcpu.lend({ kick: () => this.signal(), reclaim: () => this.reclaim() });
    this.port = new (native().ForwardPort)(() => this.onForward());
    const data: VcpuWorkerData = {
      forwardPort: this.port.id(), fd: lent.fd, id: vcpu.id, mmapSize: lent.mmapSize, module, data: options.data, ctl: this.ctl.buffer as SharedArrayBuffer, total: this.total.buffer as SharedArrayBuffer, memory };
    try {
      this.worker = new (workerThreads().Worker)(entry, { workerData: data, name: `tsvmm-vcpu-${vcpu.id}` });
    } catch (e) {
      this.port.close();
      vcpu.endLease();
      throw new KvmError("KVM_WORKER_FAILED", `vCPU ${vcpu.id}'s worker thread did not start`, { cause: e });
    }
    this.exited = new Promise((resolve) => this.worker.once("exit", () => resolve()));
    this.ready = new Promise<void>((resolve, reject) => {
      this.worker.on("message", (m: ToOwner) => {
        if (m.t === "ready") {
          this.state = "ready";
          this.worker.unref();
          resolve();
        } else if (m.t === "failed") {
          this.die();
          reject(fromWorker(m.error, vcpu.id, `loading ${module}`));
        } else this.onMessage(m);
      });
      const lost = (e: unknown): void => {
        const was = this.state;
        this.die();
        const err = new KvmError("KVM_WORKER_FAILED", `vCPU ${vcpu.id}'s worker thread ${e === undefined ? "exited" : "failed"}`, { cause: e });
        if (was === "starting") reject(err);
        this.settle(err);
      };
      this.worker.on("error", lost);
      this.worker.on("exit", () => {
        if (this.state !== "closed" && this.state !== "dead") lost(undefined);
      });
    });
  }

  /**
   * Start a worker thread for `vcpu`, load `options.module` there and make its handlers. Rejects
   * with KVM_WORKER_FAILED if the thread or the module fails, KVM_VCPU_BUSY if the vCPU is running.
   */
  static async start(vcpu: Vcpu, options: VcpuWorkerOptions): Promise<VcpuWorker> {
    const w = new VcpuWorker(vcpu, options);
    try {
      await w.ready;
    } catch (e) {
      await w.close();
      throw e;
    }
    return w;
  }

  /** Exits the worker's loop has taken, all runs together (forwarded ones included). */
  get exits(): number {
    return this.total[0]!;
  }

  /** True while a run() is in flight. */
  get running(): boolean {
    return this.current !== undefined;
  }

  /**
   * Run the vCPU on the worker until a handler (the worker's or one here) returns true, maxExits
   * is reached, or stop(). Resolves with the exit that ended it, decoded from kvm_run on this
   * thread (undefined when stop() ended it before a KVM_RUN) and the number of exits taken.
   */
  run(handlers: ExitHandlers = {}, options: VcpuWorkerRunOptions = {}): Promise<RunLoopResult> {
    if (this.state === "closed" || this.state === "dead") return Promise.reject(new KvmError("KVM_CLOSED", `vCPU ${this.vcpu.id}'s worker is closed`));
    if (this.current !== undefined) return Promise.reject(new KvmError("KVM_VCPU_BUSY", `vCPU ${this.vcpu.id} is already running on its worker`));
    const maxExits = options.maxExits ?? Number.POSITIVE_INFINITY;
    if (!(maxExits >= 1)) return Promise.reject(new KvmError("KVM_INVALID_ARGUMENT", `maxExits must be at least 1, not ${maxExits}`));
    try {
      if (options.shouldStop?.() === true) return Promise.resolve({ exit: undefined, exits: 0 });
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise<RunLoopResult>((resolve, reject) => {
      const id = ++this.runs;
      this.current = { id, resolve, reject, handlers, options };
      Atomics.store(this.ctl, CTL.STOP, 0);
      this.worker.ref();
      this.send({ t: "run", run: id, maxExits });
    });
  }

  /**
   * End the run in flight with the vCPU whole (see the package README): the KVM_RUN in flight
   * returns, or one more with immediate_exit completes the last exit's I/O; the run resolves with
   * an `interrupted` exit that is not dispatched. Does nothing between runs.
   */
  stop(): void {
    // Between runs there is nothing to stop, and a kick left in kvm_run would cut the next run short.
    if (this.state !== "ready" || this.current === undefined) return;
    Atomics.store(this.ctl, CTL.STOP, 1);
    this.vcpu.runBuffer[RUN_IMMEDIATE_EXIT] = 1;
    this.signal();
  }

  /** Make the worker's KVM_RUN in flight, or its next, return an `interrupted` exit (Vcpu.kick). */
  kick(): void {
    this.vcpu.kick();
  }

  /**
   * Stop the run (a run in flight rejects with KVM_CLOSED), end the thread and give the vCPU back
   * to its owner: run()/runAsync() work on it again. Idempotent.
   */
  async close(): Promise<void> {
    if (this.state !== "closed" && this.state !== "dead") {
      this.reclaim();
      this.vcpu.endLease();
    }
    await this.exited;
  }

  private send(m: ToWorker): void {
    this.worker.postMessage(m);
  }

  private signal(): void {
    const s = Atomics.load(this.ctl, CTL.STATE);
    const tid = Atomics.load(this.ctl, CTL.TID);
    if (s === WORKER_STATE.RUNNING && tid > 0) native().signalThread(tid);
  }

  /** The thread posted a forwarded exit to this thread's ForwardPort (coalesced: check the words). */
  private onForward(): void {
    const seq = Atomics.load(this.ctl, CTL.REQ_SEQ);
    // Answered already (by reclaim()), or a post that a closed worker left behind.
    if (Atomics.load(this.ctl, CTL.REPLY_SEQ) === seq || Atomics.load(this.ctl, CTL.STATE) !== WORKER_STATE.FORWARDING) return;
    const run = Atomics.load(this.ctl, CTL.FWD_RUN);
    const interrupted = Atomics.load(this.ctl, CTL.FWD_INTERRUPTED) !== 0;
    const cur = this.current;
    if (cur === undefined || cur.id !== run) {
      this.reply(seq, FORWARD_REPLY.STOP);
      return;
    }
    let exit: VcpuExit | undefined;
    let stop: boolean;
    let failure: unknown;
    try {
      exit = this.vcpu.lentExit(interrupted);
      stop = dispatch(exit, this.vcpu, cur.handlers, cur.options);
      // As with runLoopAsync: a run ended by shouldStop ended before a KVM_RUN, not at an exit.
      if (!stop && cur.options.shouldStop?.() === true) {
        stop = true;
        exit = undefined;
      }
    } catch (e) {
      failure = e;
      stop = true;
    }
    this.reply(seq, stop ? FORWARD_REPLY.STOP : FORWARD_REPLY.CONTINUE);
    if (!stop) return;
    // The run ends here: the worker re-enters nothing after a "stop" answer, so it settles now
    // instead of a hop later, when the worker's end arrives (a kick's `interrupted` exit, a
    // pause). The exit stays valid in kvm_run until the next run.
    this.finish();
    if (failure !== undefined) cur.reject(failure);
    else cur.resolve({ exit, exits: Atomics.load(this.ctl, CTL.EXITS) });
  }

  private onMessage(m: ToOwner): void {
    const cur = this.current;
    if (m.t !== "end" && m.t !== "error") return;
    if (cur === undefined || cur.id !== m.run) return;
    this.finish();
    if (m.t === "error") cur.reject(fromWorker(m.error, this.vcpu.id, "in the run loop"));
    else {
      const exit = m.last === null ? undefined : this.vcpu.lentExit(m.last === "interrupted");
      cur.resolve({ exit, exits: m.exits });
    }
  }

  private finish(): void {
    this.current = undefined;
    if (this.state === "ready") this.worker.unref();
  }

  private reply(seq: number, value: number): void {
    this.vcpu.lentExitHandled();
    Atomics.store(this.ctl, CTL.REPLY, value);
    Atomics.store(this.ctl, CTL.REPLY_SEQ, seq);
    Atomics.notify(this.ctl, CTL.REPLY_SEQ);
  }

  /**
   * Synchronously: the worker out of KVM_RUN and its loop for good (the vCPU or its VM is closing,
   * and the fd number must not be reused under a KVM_RUN of the worker's). A forwarded exit waiting
   * for an answer gets "closed".
   */
  private reclaim(): void {
    if (this.state === "closed" || this.state === "dead") return;
    const wasStarting = this.state === "starting";
    this.state = "closed";
    Atomics.store(this.ctl, CTL.STOP, 1);
    this.vcpu.runBuffer[RUN_IMMEDIATE_EXIT] = 1;
    const until = Date.now() + RECLAIM_MS;
    for (;;) {
      const s = Atomics.load(this.ctl, CTL.STATE);
      if (s === WORKER_STATE.IDLE) {
        // Out of its loop for good (STOP stays set): the kick is spent, the owner starts clean.
        this.vcpu.runBuffer[RUN_IMMEDIATE_EXIT] = 0;
        break;
      }
      if (s === WORKER_STATE.FORWARDING) this.reply(Atomics.load(this.ctl, CTL.REQ_SEQ), FORWARD_REPLY.CLOSED);
      else this.signal();
      if (Date.now() >= until) break;
      Atomics.wait(this.ctl, CTL.STATE, s, 5);
    }
    const cur = this.current;
    this.current = undefined;
    cur?.reject(new KvmError("KVM_CLOSED", `vCPU ${this.vcpu.id}'s worker was closed while running`));
    if (!wasStarting) this.send({ t: "close" });
    this.port.close();
    void this.worker.terminate();
  }

  /** The thread is gone or unusable: give the vCPU back. */
  private die(): void {
    if (this.state === "closed" || this.state === "dead") return;
    this.state = "dead";
    this.port.close();
    this.vcpu.endLease();
    void this.worker.terminate();
  }

  private settle(e: unknown): void {
    const cur = this.current;
    this.current = undefined;
    cur?.reject(e);
  }
}
