import type { GdbArchitecture, X86Registers } from "./registers.js";

/** A value or a promise of it: a target may answer synchronously or not. */
export type Awaitable<T> = T | Promise<T>;

/**
 * What gdb asks for, in the words of Z0–Z4: `sw` (Z0) and `hw` (Z1) stop before executing the
 * instruction at `address`; `write` (Z2), `read` (Z3) and `access` (Z4) stop after an
 * instruction wrote / read / read-or-wrote any byte of [address, address + length).
 * For `sw` and `hw`, `length` is gdb's "kind": the breakpoint instruction's size (1 on x86).
 */
export type BreakpointKind = "sw" | "hw" | "write" | "read" | "access";

export interface Breakpoint {
  readonly kind: BreakpointKind;
  readonly address: bigint;
  readonly length: number;
}

/**
 * `ok`; `no-slots`: the kind is supported but every resource it needs is in use (gdb is told
 * with an error reply and says it could not insert the breakpoint); `unsupported`: this kind
 * is never possible (gdb is told with the empty reply and may fall back, e.g. emulate `read`
 * watchpoints with `access` ones); `error`: anything else (bad address or length).
 */
export type BreakpointResult = "ok" | "no-slots" | "unsupported" | "error";

/** What to do with one vCPU on resume. vCPUs that a resume does not name stay stopped. */
export interface ResumeAction {
  readonly vcpu: number;
  readonly action: "continue" | "step";
  /** gdb's signal number to "deliver" (C/S packets, `signal` command); 0 or absent: none. */
  readonly signal?: number;
}

/** Why a stopped vCPU stopped, beyond its signal (reported to gdb in the T stop reply). */
export type StopCause =
  /** An execution breakpoint gdb set with Z0; the vCPU's PC is the breakpoint address. */
  | { readonly type: "swbreak" }
  /** An execution breakpoint gdb set with Z1; PC is the breakpoint address. */
  | { readonly type: "hwbreak" }
  /** A data watchpoint fired; `address` is a watched byte the instruction accessed (or the watched range's start). */
  | { readonly type: "watch" | "rwatch" | "awatch"; readonly address: bigint };

/**
 * What ended a resume (or what `halt` found). `stopped`: every vCPU is stopped (all-stop) and
 * `vcpu` is the one to report (gdb switches to it). `exited`/`terminated`: the VM is gone.
 */
export type StopEvent =
  | { readonly kind: "stopped"; readonly vcpu: number; readonly signal: number; readonly cause?: StopCause }
  | { readonly kind: "exited"; readonly status: number }
  | { readonly kind: "terminated"; readonly signal: number };

/**
 * The machine gdb debugs, in all-stop mode: either every vCPU runs or every vCPU is stopped.
 * The server calls nothing but `interrupt` (and `detach` on a lost connection) while a
 * `resume` is outstanding; every other method is called with all vCPUs stopped. A method may
 * throw (or reject): gdb gets an error reply and the server carries on.
 */
export interface DebugTarget {
  /** Number of vCPUs; gdb thread N+1 is vCPU N. */
  readonly vcpuCount: number;
  /** Register layout to describe to gdb; asked once per connection, for the current vCPU. */
  architecture(vcpu: number): GdbArchitecture;
  /**
   * Stop every vCPU if running and say where they are, as a stop event. Called when gdb
   * connects (attach); a VM waiting for the debugger answers at once.
   */
  halt(): Promise<StopEvent>;
  readRegisters(vcpu: number): Awaitable<X86Registers>;
  writeRegisters(vcpu: number, regs: X86Registers): Awaitable<void>;
  /**
   * Read guest-virtual memory as `vcpu` sees it (its page tables, its mode). May return fewer
   * bytes than asked when the range runs into an unmapped page; returning no bytes or
   * throwing reports an error to gdb.
   */
  readMemory(vcpu: number, address: bigint, length: number): Awaitable<Uint8Array>;
  /** Write guest-virtual memory; throw if any byte is unmapped (a prefix may have been written). */
  writeMemory(vcpu: number, address: bigint, data: Uint8Array): Awaitable<void>;
  /** Insert on every vCPU (gdb's breakpoints are per-VM). */
  setBreakpoint(bp: Breakpoint): Awaitable<BreakpointResult>;
  removeBreakpoint(bp: Breakpoint): Awaitable<BreakpointResult>;
  /**
   * Run the named vCPUs as told and resolve when the VM next stops: a breakpoint, a finished
   * step, `interrupt()`, or the VM's exit. When the promise resolves, all vCPUs are stopped.
   */
  resume(actions: readonly ResumeAction[]): Promise<StopEvent>;
  /** Ctrl-C: make the outstanding `resume` resolve soon with a stop (signal 2, SIGINT). No-op otherwise. */
  interrupt(): void;
  /** `kill`: end the VM. */
  kill(): Awaitable<void>;
  /**
   * gdb leaves (detach, quit, or a lost connection): drop guest-debug state and let every vCPU
   * run on its own. The server has removed the breakpoints gdb inserted before calling this.
   */
  detach(): Awaitable<void>;
  /** Optional text gdb shows in `info threads` (qThreadExtraInfo); default "vCPU N". */
  threadName?(vcpu: number): string;
}

/** gdb's own signal numbers (GDB_SIGNAL_* of gdb's signals.def); a few differ from Linux's (BUS is 10). */
export const GdbSignal = {
  NONE: 0,
  HUP: 1,
  INT: 2,
  QUIT: 3,
  ILL: 4,
  TRAP: 5,
  ABRT: 6,
  BUS: 10,
  FPE: 8,
  KILL: 9,
  SEGV: 11,
  TERM: 15,
} as const;
