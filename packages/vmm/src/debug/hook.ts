import type { VcpuExit } from "@tsvmm/kvm-backend";

export type DebugExitView = Extract<VcpuExit, { kind: "debug" }>;

/**
 * What the Vmm's vCPU loops ask a debugger (the seam between vmm.ts and the gdb target). A
 * loop calls `enter` once, asks `holds` at every `interrupted` exit and after its run loop
 * returns, parks in `park` while held, passes KVM_EXIT_DEBUG to `debugExit`, and calls
 * `leave` when it ends for good. `vmStopping` comes with the VM's stop request.
 */
export interface VcpuDebugHook {
  /** True while the debugger keeps vCPUs out of the guest (the stall and halt checks pause meanwhile). */
  readonly holding: boolean;
  enter(index: number): void;
  leave(index: number): void;
  /** The vCPU must not enter the guest again now: its loop parks. */
  holds(index: number): boolean;
  /** Resolves when the debugger lets the vCPU run (or the VM stops). */
  park(index: number): Promise<void>;
  /** A KVM_EXIT_DEBUG of vCPU `index`; true ends the run loop so the vCPU parks. */
  debugExit(index: number, exit: DebugExitView): boolean;
  /** The VM is stopping with this exit status: release every parked vCPU. */
  vmStopping(exitStatus: number): void;
}
