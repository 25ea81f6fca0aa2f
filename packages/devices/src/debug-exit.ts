import type { Device } from "./bus.js";
import { DeviceError } from "./errors.js";
import { type Stateful, stateCheck } from "./stateful.js";

/** The port kvm-unit-tests and many test kernels use (QEMU `-device isa-debug-exit,iobase=0xf4`). */
export const DEBUG_EXIT_PORT = 0xf4;
/** The range size that accepts 1-, 2- and 4-byte writes at DEBUG_EXIT_PORT. */
export const DEBUG_EXIT_SIZE = 4;

/**
 * How a written value becomes an exit code:
 * - `qemu`: `(value << 1) | 1`, as QEMU's isa-debug-exit (so a guest can never produce 0);
 * - `raw`: the value itself.
 */
export type DebugExitConvention = "qemu" | "raw";

export interface DebugExitOptions {
  name?: string;
  convention?: DebugExitConvention;
  /** Called on every write with the exit code and the value written. */
  onExit?: (code: number, value: number) => void;
}

/**
 * A write ends the VM: the device computes the exit code and calls `onExit`; stopping the vCPUs
 * is the VMM's business. The code can exceed 8 bits (a 4-byte qemu-convention write gives up to
 * 2^33 - 1); a process exit status keeps `code & 0xff`. Reads return 0.
 */
export interface DebugExitState {
  [key: string]: number | null;
  exitCode: number | null;
}

export class DebugExit implements Device, Stateful<DebugExitState> {
  readonly name: string;
  readonly convention: DebugExitConvention;
  /** The code of the last write, or null if the guest has not written. */
  exitCode: number | null = null;
  private readonly listeners: ((code: number, value: number) => void)[] = [];

  constructor(options: DebugExitOptions = {}) {
    this.name = options.name ?? "debug-exit";
    const convention = options.convention ?? "qemu";
    if (convention !== "qemu" && convention !== "raw") {
      throw new DeviceError("DEVICE_INVALID_OPTION", `debug-exit convention must be "qemu" or "raw", got ${String(convention)}`);
    }
    this.convention = convention;
    if (options.onExit !== undefined) this.listeners.push(options.onExit);
  }

  /** Adds an exit listener; returns a remover. */
  onExit(listener: (code: number, value: number) => void): () => void {
    this.listeners.push(listener);
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  /** The exit code a written value gives under this device's convention. */
  codeFor(value: number): number {
    // Arithmetic, not bit operators: a 32-bit value shifted left would overflow int32.
    return this.convention === "qemu" ? value * 2 + 1 : value;
  }

  saveState(): DebugExitState {
    return { exitCode: this.exitCode };
  }

  restoreState(state: DebugExitState): void {
    const o = stateCheck.object(this.name, state);
    this.exitCode = stateCheck.intOrNull(this.name, o, "exitCode", 0, 2 ** 33);
  }

  read(_offset: number, data: Buffer): void {
    data.fill(0);
  }

  write(_offset: number, data: Buffer): void {
    const size = data.length;
    if (size !== 1 && size !== 2 && size !== 4) {
      throw new DeviceError("DEVICE_INVALID_ACCESS", `debug-exit takes 1-, 2- or 4-byte writes, got ${size}`);
    }
    const value = data.readUIntLE(0, size);
    const code = this.codeFor(value);
    this.exitCode = code;
    for (const l of [...this.listeners]) l(code, value);
  }
}
