import type { VcpuExit, VcpuExitKind } from "./exits.js";
import type { Vcpu } from "./vcpu.js";

/** Per-kind handlers. Return `true` to stop the loop at this exit; any other value continues. */
export type ExitHandlers = {
  [K in VcpuExitKind]?: (exit: Extract<VcpuExit, { kind: K }>, vcpu: Vcpu) => unknown;
};

export interface RunLoopResult {
  /** The exit that ended the loop (a handler returned true, or no handler existed for its kind). */
  readonly exit: VcpuExit;
  /** Exits taken, including the last. */
  readonly exits: number;
}

/**
 * The synchronous run loop: KVM_RUN and dispatch on this thread, the fastest path. Stops at the
 * first exit without a handler, at a handler returning true, or after `maxExits`.
 */
export function runLoop(vcpu: Vcpu, handlers: ExitHandlers, options: { maxExits?: number } = {}): RunLoopResult {
  const max = options.maxExits ?? Number.POSITIVE_INFINITY;
  let n = 0;
  for (;;) {
    const exit = vcpu.run();
    n++;
    const h = handlers[exit.kind] as ((e: VcpuExit, v: Vcpu) => unknown) | undefined;
    if (h === undefined || h(exit, vcpu) === true || n >= max) return { exit, exits: n };
  }
}
