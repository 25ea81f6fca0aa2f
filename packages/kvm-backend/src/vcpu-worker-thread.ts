// The thread of a VcpuWorker: it maps the lent vCPU's kvm_run, loads the handlers module, and on
// each "run" message issues KVM_RUN synchronously here, dispatching each exit to the module's
// handlers; an exit they do not take goes to the owner's thread (forward) while this one waits.
import { type MessagePort, parentPort, workerData } from "node:worker_threads";
import { GuestMemoryMap } from "@tsvmm/abi";
import { KvmError } from "./errors.js";
import { RUN_IMMEDIATE_EXIT, type VcpuExit } from "./exits.js";
import { native } from "./native.js";
import type { ExitHandlers } from "./run-loop.js";
import { Vcpu } from "./vcpu.js";
import type { VcpuWorkerContext } from "./vcpu-worker.js";
import { CTL, errorShape, FORWARD_REPLY, FORWARD_SPIN_MICROS, type ToOwner, type ToWorker, type VcpuWorkerData, WORKER_STATE } from "./vcpu-worker-protocol.js";

if (parentPort === null) throw new Error("vcpu-worker-thread runs as a worker thread only");
const port: MessagePort = parentPort;
const wd = workerData as VcpuWorkerData;
const ctl = new Int32Array(wd.ctl);
const total = new Float64Array(wd.total);
const post = (m: ToOwner): void => port.postMessage(m);

function setState(s: number): void {
  Atomics.store(ctl, CTL.STATE, s);
  Atomics.notify(ctl, CTL.STATE);
}

const addon = native();
/** See run(): how often KVM_RUN returns to this thread's JavaScript at the least. */
const TICK_MICROS = 20_000;

// The run in progress (its number, and its exits so far): a forward carries both.
let runId = 0;
let runExits = 0;
let totalExits = 0;

/** Hand `exit` to the owner's handlers and block until they answer: true ends the loop. */
function forward(exit: VcpuExit): boolean {
  const seq = (Atomics.load(ctl, CTL.REQ_SEQ) + 1) | 0;
  Atomics.store(ctl, CTL.FWD_RUN, runId);
  Atomics.store(ctl, CTL.FWD_INTERRUPTED, exit.kind === "interrupted" ? 1 : 0);
  Atomics.store(ctl, CTL.EXITS, runExits);
  Atomics.store(ctl, CTL.REQ_SEQ, seq);
  setState(WORKER_STATE.FORWARDING);
  // A closed port (the owner is closing) answers through the control words all the same.
  addon.postForward(wd.forwardPort);
  for (;;) {
    const answered = Atomics.load(ctl, CTL.REPLY_SEQ);
    if (answered === seq) break;
    // The owner usually answers within microseconds: poll before sleeping on the futex.
    const now = addon.spinWhile(ctl, CTL.REPLY_SEQ, answered, FORWARD_SPIN_MICROS);
    if (now === seq) break;
    Atomics.wait(ctl, CTL.REPLY_SEQ, now);
  }
  setState(WORKER_STATE.RUNNING);
  return Atomics.load(ctl, CTL.REPLY) !== FORWARD_REPLY.CONTINUE;
}

/** VcpuWorkerOptions.memory as this thread sees it: the same pages, through SharedArrayBuffers. */
function sharedMemory(): GuestMemoryMap | undefined {
  if (wd.memory === undefined) return undefined;
  return new GuestMemoryMap(
    wd.memory.map((r) => {
      const sab = addon.shareMapping(r.address, r.size);
      const what = r.name ?? `at 0x${r.base.toString(16)}`;
      if (typeof sab === "number") throw new KvmError("KVM_INVALID_ARGUMENT", `memory region ${what} is not a whole mapping of @tsvmm/kvm-backend's (a slot's memory or a GuestRam), or it was unmapped`);
      return { base: r.base, size: r.size, name: r.name, buffer: Buffer.from(sab) };
    }),
  );
}

async function main(): Promise<void> {
  Atomics.store(ctl, CTL.TID, addon.threadId());
  // As ps and top show it, beside the runner threads (tsvmm-vcpu).
  addon.nameThread("tsvmm-vcpu-wkr");
  let vcpu: Vcpu;
  let handlers: ExitHandlers;
  try {
    vcpu = new Vcpu(wd.fd, wd.id, wd.mmapSize, () => {}, 0, false);
    const mod = (await import(wd.module)) as { default?: unknown };
    if (typeof mod.default !== "function") throw new TypeError(`${wd.module} has no default export making exit handlers`);
    const ctx: VcpuWorkerContext = { vcpu, data: wd.data, memory: sharedMemory(), forward };
    const made: unknown = await (mod.default as (c: VcpuWorkerContext) => unknown)(ctx);
    if (typeof made !== "object" || made === null) throw new TypeError(`${wd.module}'s default export returned no exit handlers`);
    handlers = made as ExitHandlers;
  } catch (e) {
    post({ t: "failed", error: errorShape(e) });
    return;
  }

  const run = (id: number, maxExits: number): void => {
    setState(WORKER_STATE.RUNNING);
    runId = id;
    // While the loop runs, KVM_RUN returns at least every TICK_MICROS even for a guest that spins
    // without exits: Node ends this thread (terminate(), process.exit() in the owner) by stopping its
    // JavaScript, which a thread inside KVM_RUN never reaches otherwise — the owner's exit hung.
    addon.tick(TICK_MICROS);
    try {
      loop(id, maxExits);
    } finally {
      addon.tick(0);
    }
  };

  const loop = (id: number, maxExits: number): void => {
    let n = 0;
    let last: "exit" | "interrupted" | null = null;
    try {
      let stopping = false;
      for (;;) {
        if (!stopping && Atomics.load(ctl, CTL.STOP) !== 0) {
          if (n === 0) {
            // Nothing of this run is waiting in KVM. A stop consumes its kick: the next run starts clean.
            vcpu.runBuffer[RUN_IMMEDIATE_EXIT] = 0;
            break;
          }
          // Between two exits the last one's I/O may wait in KVM to be completed (an IN's value
          // goes to RAX at the next KVM_RUN). One more KVM_RUN with immediate_exit completes it and
          // returns at once, so the vCPU is stopped whole (a pause before a snapshot needs that).
          // Completing string I/O can exit again: that exit is dispatched and the next run completes.
          stopping = true;
          vcpu.runBuffer[RUN_IMMEDIATE_EXIT] = 1;
        }
        const exit = vcpu.run();
        // The tick, not a kick or a stop: nothing for anyone, re-enter.
        if (exit.kind === "interrupted" && !vcpu.kickedOut && !stopping && Atomics.load(ctl, CTL.STOP) === 0) continue;
        runExits = ++n;
        total[0] = ++totalExits;
        if (exit.kind === "interrupted" && (stopping || Atomics.load(ctl, CTL.STOP) !== 0)) {
          last = "interrupted";
          break;
        }
        const h = handlers[exit.kind] as ((e: VcpuExit, v: Vcpu) => unknown) | undefined;
        const stop = h === undefined ? forward(exit) : h(exit, vcpu) === true;
        if (stopping) vcpu.runBuffer[RUN_IMMEDIATE_EXIT] = 1;
        if (stop || n >= maxExits) {
          last = exit.kind === "interrupted" ? "interrupted" : "exit";
          break;
        }
      }
    } catch (e) {
      setState(WORKER_STATE.IDLE);
      post({ t: "error", run: id, exits: n, error: errorShape(e) });
      return;
    }
    setState(WORKER_STATE.IDLE);
    post({ t: "end", run: id, exits: n, last });
  };

  port.on("message", (m: ToWorker) => {
    if (m.t === "run") run(m.run, m.maxExits);
    else {
      vcpu.close();
      port.close();
    }
  });
  post({ t: "ready" });
}

void main();
