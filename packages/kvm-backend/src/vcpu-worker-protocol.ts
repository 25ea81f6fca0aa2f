// What a VcpuWorker and its thread share: the control words (an Int32Array over a
// SharedArrayBuffer) and the messages. Words carry what must be seen while the other thread is
// blocked (a kick, a stop, the reply to a forwarded exit); messages carry the rest.

/** Indices into the control words. */
export const CTL = {
  /** WORKER_STATE below; the thread notifies on each change. */
  STATE: 0,
  /** Non-zero: end the loop before the next KVM_RUN (stop(), close()). */
  STOP: 1,
  /** gettid() of the worker thread, for the kick signal. */
  TID: 2,
  /** Sequence number of the last exit the thread forwarded. */
  REQ_SEQ: 3,
  /** Sequence number of the last forwarded exit the owner answered; the thread waits on it. */
  REPLY_SEQ: 4,
  /** FORWARD_REPLY: the answer. */
  REPLY: 5,
  /** Exits taken so far in the current run, written before each forward. */
  EXITS: 6,
  /** The run a forwarded exit belongs to. */
  FWD_RUN: 7,
  /** 1 when the forwarded exit is KVM_RUN's EINTR (an `interrupted` exit). */
  FWD_INTERRUPTED: 8,
} as const;
export const CTL_WORDS = 10;

/** How long the thread polls for the owner's answer to a forwarded exit before it sleeps (µs). */
export const FORWARD_SPIN_MICROS = 50;

export const WORKER_STATE = {
  /** Between runs: the thread waits for a message, no KVM_RUN in flight. */
  IDLE: 0,
  /** In its run loop: KVM_RUN or a handler of the worker's. */
  RUNNING: 1,
  /** In its run loop, blocked until the owner answers a forwarded exit. */
  FORWARDING: 2,
} as const;

export const FORWARD_REPLY = { CONTINUE: 0, STOP: 1, CLOSED: 2 } as const;

/** workerData of a vCPU worker thread. */
export interface VcpuWorkerData {
  fd: number;
  id: number;
  mmapSize: number;
  /** URL of the module whose default export makes the worker's exit handlers. */
  module: string;
  data: unknown;
  ctl: SharedArrayBuffer;
  /** One float64: every exit the thread's loop has taken, all runs (a plain aligned store per exit). */
  total: SharedArrayBuffer;
  /** The owner's ForwardPort, where forwarded exits are posted (REQ_SEQ and FWD_* say which). */
  forwardPort: number;
  /** VcpuWorkerOptions.memory's regions, each by the host address of its mapping. */
  memory: { base: number; size: number; name: string | undefined; address: bigint }[] | undefined;
}

/** An error thrown in the thread, as it crosses (structured clone drops a KvmError's fields). */
export interface WorkerErrorShape {
  name: string;
  message: string;
  stack: string | undefined;
  code: string | undefined;
  errno: number | undefined;
  ioctl: string | undefined;
}

export type ToOwner =
  | { t: "ready" }
  | { t: "failed"; error: WorkerErrorShape }
  /** `last`: how the loop ended — "exit" (the exit in kvm_run), "interrupted", or null (stopped before a KVM_RUN). */
  | { t: "end"; run: number; exits: number; last: "exit" | "interrupted" | null }
  | { t: "error"; run: number; exits: number; error: WorkerErrorShape };

/** `run` numbers the runs, so the owner can tell a run's messages from an earlier one's. */
export type ToWorker = { t: "run"; run: number; maxExits: number } | { t: "close" };

export function errorShape(e: unknown): WorkerErrorShape {
  const o = (typeof e === "object" && e !== null ? e : {}) as Record<string, unknown>;
  const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);
  return {
    name: str(o.name) ?? "Error",
    message: str(o.message) ?? String(e),
    stack: str(o.stack),
    code: str(o.code),
    errno: typeof o.errno === "number" ? o.errno : undefined,
    ioctl: str(o.ioctl),
  };
}
