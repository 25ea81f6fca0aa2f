import type { Device, RegisterTarget } from "./bus.js";

/** System Control Port A (PS/2 "port 92"). */
export const PORT92 = 0x92;
export const PORT92_SIZE = 1;
/** Bit 0: fast reset (a write of 1 resets the machine; reads 0). */
export const PORT92_RESET = 1 << 0;
/** Bit 1: fast A20 gate. */
export const PORT92_A20 = 1 << 1;

export interface Port92Options {
  name?: string;
  /** The guest set bit 0: a machine reset. */
  onReset?: () => void;
}

/** What {@link Port92.saveState} returns. */
export type Port92State = {
  value: number;
};

/**
 * System Control Port A. Bit 1 (fast A20) and the other bits read back what was written; bit 0
 * reads 0 and a write with it set asks for a reset. A20 starts enabled, as a PC leaves it after
 * POST. The A20 bit is only stored: KVM maps guest memory without an A20 mask, so addresses never
 * wrap at 1 MiB whatever the guest writes here.
 */
export class Port92 implements Device {
  readonly name: string;
  /** How many resets the guest asked for. */
  resets = 0;
  private value = PORT92_A20;
  private readonly onReset: (() => void) | undefined;

  constructor(options: Port92Options = {}) {
    this.name = options.name ?? "port92";
    this.onReset = options.onReset;
  }

  /** Whether the guest left the fast A20 gate open. */
  get a20(): boolean {
    return (this.value & PORT92_A20) !== 0;
  }

  read(_offset: number, data: Buffer): void {
    data.fill(0);
    data[0] = this.value;
  }

  write(_offset: number, data: Buffer): void {
    const v = data[0]!;
    this.value = v & ~PORT92_RESET;
    if (v & PORT92_RESET) {
      this.resets++;
      this.onReset?.();
    }
  }

  attach(bus: RegisterTarget, port = PORT92): void {
    bus.register(port, PORT92_SIZE, this);
  }

  saveState(): Port92State {
    return { value: this.value };
  }

  restoreState(s: Port92State): void {
    this.value = s.value & 0xff & ~PORT92_RESET;
  }
}
