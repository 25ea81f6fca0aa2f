import type { VcpuExit, VcpuExitKind } from "./exits.js";
import type { Vcpu } from "./vcpu.js";

/**
 * Per-kind exit handlers: the one place a VMM says what each exit means. Return `true` to stop
 * the loop at this exit; any other value continues. An exit whose kind has no handler goes to
 * `unhandled` (default: stop there), so nothing is ever silently re-entered.
 */
export type ExitHandlers = {
  [K in VcpuExitKind]?: (exit: Extract<VcpuExit, { kind: K }>, vcpu: Vcpu) => unknown;
};

export interface RunLoopOptions {
  /** Stop after this many exits (the last one included). */
  maxExits?: number;
  /** Checked before every KVM_RUN: true ends the loop without entering the guest again. */
  shouldStop?: () => boolean;
  /** Called for exits whose kind has no handler; return true to stop (the default when absent). */
  unhandled?: (exit: VcpuExit, vcpu: Vcpu) => unknown;
  /** Called with each exit before its handler (counting, tracing). */
  onExit?: (exit: VcpuExit, vcpu: Vcpu) => void;
}

export interface RunLoopResult {
  /** The exit that ended the loop, or undefined when `shouldStop` ended it before a KVM_RUN. */
  readonly exit: VcpuExit | undefined;
  /** Exits taken, including the last. */
  readonly exits: number;
}

/** @internal The dispatch of one exit: true when the loop must stop. Shared by both loops and VcpuWorker. */
export function dispatch(exit: VcpuExit, vcpu: Vcpu, handlers: ExitHandlers, o: RunLoopOptions): boolean {
  o.onExit?.(exit, vcpu);
  const h = handlers[exit.kind] as ((e: VcpuExit, v: Vcpu) => unknown) | undefined;
  if (h !== undefined) return h(exit, vcpu) === true;
  return o.unhandled === undefined ? true : o.unhandled(exit, vcpu) === true;
}

/**
 * The synchronous run loop: KVM_RUN and dispatch on this thread, the fastest path (it blocks
 * the thread while the guest runs).
 */
export function runLoop(vcpu: Vcpu, handlers: ExitHandlers, options: RunLoopOptions = {}): RunLoopResult {
  const max = options.maxExits ?? Number.POSITIVE_INFINITY;
  let n = 0;
  for (;;) {
    if (options.shouldStop?.() === true) return { exit: undefined, exits: n };
    const exit = vcpu.run();
    n++;
    if (dispatch(exit, vcpu, handlers, options) || n >= max) return { exit, exits: n };
  }
}

/**
 * The same loop with KVM_RUN on the vCPU's runner thread (`Vcpu.runEach`): the event loop stays
 * free while the guest runs, so several vCPUs and timers share one JavaScript thread. Each exit is
 * dispatched on this thread as it comes, and KVM_RUN is re-entered as soon as its handler returns:
 * one thread hop per exit, no Promise per exit. `kick()` on the vCPU makes a pending KVM_RUN return
 * as an `interrupted` exit.
 */
export function runLoopAsync(vcpu: Vcpu, handlers: ExitHandlers, options: RunLoopOptions = {}): Promise<RunLoopResult> {
  const max = options.maxExits ?? Number.POSITIVE_INFINITY;
  const shouldStop = options.shouldStop;
  let n = 0;
  let last: VcpuExit | undefined;
  let stoppedBeforeRun = false;
  try {
    if (shouldStop?.() === true) return Promise.resolve({ exit: undefined, exits: 0 });
  } catch (e) {
    return Promise.reject(e);
  }
  return vcpu
    .runEach((exit) => {
      n++;
      if (dispatch(exit, vcpu, handlers, options) || n >= max) {
        last = exit;
        return true;
      }
      if (shouldStop?.() === true) {
        stoppedBeforeRun = true;
        return true;
      }
      return false;
    })
    .then(() => ({ exit: stoppedBeforeRun ? undefined : last, exits: n }));
}
