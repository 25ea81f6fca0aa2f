import type { Device, RegisterTarget } from "./bus.js";
import { DeviceError } from "./errors.js";
import { type Stateful, stateCheck } from "./stateful.js";


/** QEMU's x86 ISA test device ("pc-testdev"), which kvm-unit-tests' x86 tests expect. */
export const PC_TESTDEV_IO_PORT = 0xe0;
export const PC_TESTDEV_IO_SIZE = 4;
export const PC_TESTDEV_FLUSH_PORT = 0xe4;
export const PC_TESTDEV_FLUSH_SIZE = 4;
export const PC_TESTDEV_IRQ_PORT = 0x2000;
/** One port per IOAPIC input. */
export const PC_TESTDEV_IRQ_LINES = 24;

export interface PcTestDevOptions {
  name?: string;
  /** Drives interrupt line `line` (an IOAPIC GSI) to `level`; without it the lines are only recorded. */
  irq?: (line: number, level: boolean) => void;
}

/**
 * The parts of QEMU's pc-testdev that kvm-unit-tests' x86 tests use:
 * - a 32-bit scratch register at 0xe0–0xe3 that reads back what was written, at any width and
 *   byte offset (string-I/O and emulator tests);
 * - a flush-page port at 0xe4: QEMU drops its cached translation of the written address; a KVM
 *   VMM caches none, so the write is accepted and kept in `lastFlush`;
 * - 24 interrupt lines at 0x2000 + n: writing a non-zero value raises line n, zero lowers it
 *   (the IOAPIC tests and the real-mode `sti; hlt` test wake themselves with these).
 * Reads of the flush and IRQ ports return 0.
 */
export interface PcTestDevState {
  [key: string]: number | null | boolean[];
  scratch: number;
  lastFlush: number | null;
  /** Level each IRQ line was last driven to. */
  lines: boolean[];
}

export class PcTestDev implements Stateful<PcTestDevState> {
  readonly name: string;
  readonly io: Device;
  readonly flush: Device;
  readonly irq: Device;
  /** The 32-bit scratch register behind 0xe0. */
  scratch = 0;
  lastFlush: number | null = null;
  /** The level each line was last driven to. */
  readonly lines: boolean[] = new Array<boolean>(PC_TESTDEV_IRQ_LINES).fill(false);
  private readonly setIrq: ((line: number, level: boolean) => void) | undefined;

  constructor(options: PcTestDevOptions = {}) {
    this.name = options.name ?? "pc-testdev";
    this.setIrq = options.irq;
    this.io = {
      name: `${this.name}.io`,
      stateOwner: this,
      read: (offset, data) => {
        for (let i = 0; i < data.length; i++) {
          const at = offset + i;
          data[i] = at < 4 ? (this.scratch >>> (8 * at)) & 0xff : 0;
        }
      },
      write: (offset, data) => {
        for (let i = 0; i < data.length && offset + i < 4; i++) {
          const shift = 8 * (offset + i);
          this.scratch = ((this.scratch & ~(0xff << shift)) | (data[i]! << shift)) >>> 0;
        }
      },
    };
    this.flush = {
      name: `${this.name}.flush`,
      stateOwner: this,
      read: (_offset, data) => {
        data.fill(0);
      },
      write: (_offset, data) => {
        this.lastFlush = data.length >= 4 ? data.readUInt32LE(0) : data.length === 2 ? data.readUInt16LE(0) : data[0]!;
      },
    };
    this.irq = {
      name: `${this.name}.irq`,
      stateOwner: this,
      read: (_offset, data) => {
        data.fill(0);
      },
      write: (offset, data) => {
        // Only the addressed port counts (a wide write does not also drive the next lines).
        const level = data.some((b) => b !== 0);
        this.lines[offset] = level;
        this.setIrq?.(offset, level);
      },
    };
  }

  saveState(): PcTestDevState {
    return { scratch: this.scratch, lastFlush: this.lastFlush, lines: [...this.lines] };
  }

  /** Lines are not driven again: the interrupt controllers' restored state already has them. */
  restoreState(state: PcTestDevState): void {
    const o = stateCheck.object(this.name, state);
    const scratch = stateCheck.int(this.name, o, "scratch", 0, 0xffffffff);
    const lastFlush = stateCheck.intOrNull(this.name, o, "lastFlush", 0, 0xffffffff);
    const lines = o.lines;
    if (!Array.isArray(lines) || lines.length !== PC_TESTDEV_IRQ_LINES || !lines.every((l) => typeof l === "boolean")) {
      throw new DeviceError("DEVICE_BAD_STATE", `${this.name}: saved state field "lines" must be ${PC_TESTDEV_IRQ_LINES} booleans`);
    }
    this.scratch = scratch;
    this.lastFlush = lastFlush;
    for (let i = 0; i < PC_TESTDEV_IRQ_LINES; i++) this.lines[i] = lines[i] as boolean;
  }

  /** Registers the three ranges on a PIO bus at QEMU's ports. */
  attach(bus: RegisterTarget): void {
    bus.register(PC_TESTDEV_IO_PORT, PC_TESTDEV_IO_SIZE, this.io);
    bus.register(PC_TESTDEV_FLUSH_PORT, PC_TESTDEV_FLUSH_SIZE, this.flush);
    bus.register(PC_TESTDEV_IRQ_PORT, PC_TESTDEV_IRQ_LINES, this.irq);
  }
}
