import { performance } from "node:perf_hooks";

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
  const due = performance.now() + ms;
  let timer: NodeJS.Timeout | undefined;
  const arm = (): void => {
    const left = due - performance.now();
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
  /** performance.now() of the last exit any vCPU took. */
  lastExitAt(): number;
}

/** The run-time budget and the stall check of one run. */
export class Watchdog {
  private readonly cancel: Array<() => void> = [];

  constructor(options: WatchdogOptions, hooks: WatchdogHooks) {
    const { timeoutMs, stallMs } = options;
    if (timeoutMs !== undefined) this.cancel.push(longTimeout(timeoutMs, () => hooks.timeout(timeoutMs)));
    if (stallMs !== undefined) {
      const t = setInterval(() => {
        if (performance.now() - hooks.lastExitAt() > stallMs) hooks.stalled(stallMs);
      }, Math.max(10, Math.min(Math.floor(stallMs / 4), MAX_TIMER_MS)));
      this.cancel.push(() => clearInterval(t));
    }
  }

  stop(): void {
    for (const c of this.cancel.splice(0)) c();
  }
}
