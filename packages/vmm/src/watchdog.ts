/**
 * Monotonic milliseconds. process.hrtime rather than performance.now: the first use of `performance`
 * loads all of Node's perf_hooks (~0.7 ms of every `tsvmm run`).
 */
export function monotonicMs(): number {
  const [s, ns] = process.hrtime();
  return s * 1e3 + ns / 1e6;
}

export interface WatchdogOptions {
  /** Stop the VM once it has run this long (any length: budgets past Node's 2^31-1 ms timer limit are chained). */
  timeoutMs?: number;
  /** Stop the VM when no vCPU has exited to the VMM for this long (a guest that stopped answering). */
  stallMs?: number;
}

/** Node holds a timer for at most 2^31-1 ms; a longer one fires at once with a warning. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** setTimeout for any delay: chains timers of at most MAX_TIMER_MS. Returns the canceller. */
export function longTimeout(ms: number, fire: () => void): () => void {
  const due = monotonicMs() + ms;
  let timer: NodeJS.Timeout | undefined;
  const arm = (): void => {
    const left = due - monotonicMs();
    if (left <= 0) {
      timer = undefined;
      fire();
      return;
    }
    timer = setTimeout(arm, Math.min(Math.ceil(left), MAX_TIMER_MS));
  };
  arm();
  return () => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
  };
}

export interface WatchdogHooks {
  timeout(ms: number): void;
  stalled(ms: number): void;
  /**
   * A number that changes whenever a vCPU makes progress: an exit, and the end of a rest (a return
   * from a pause). A counter, not a time: nothing is clocked per exit, and the check notes when it
   * saw it move.
   */
  progress(): number;
  /** True while no exits are expected (paused, held by a debugger): not a stall. */
  resting(): boolean;
}

/** The run-time budget and the stall check of one run. */
export class Watchdog {
  private readonly cancel: Array<() => void> = [];

  constructor(options: WatchdogOptions, hooks: WatchdogHooks) {
    const { timeoutMs, stallMs } = options;
    if (timeoutMs !== undefined) this.cancel.push(longTimeout(timeoutMs, () => hooks.timeout(timeoutMs)));
    if (stallMs !== undefined) {
      // Progress is seen up to one period after it happens, so a stall is reported up to one
      // period late, never early.
      let seen = hooks.progress();
      let since = monotonicMs();
      const t = setInterval(() => {
        const now = monotonicMs();
        const p = hooks.progress();
        if (p !== seen || hooks.resting()) {
          seen = p;
          since = now;
        } else if (now - since > stallMs) {
          hooks.stalled(stallMs);
        }
      }, Math.max(10, Math.min(Math.floor(stallMs / 4), MAX_TIMER_MS)));
      this.cancel.push(() => clearInterval(t));
    }
  }

  stop(): void {
    for (const c of this.cancel.splice(0)) c();
  }
}
