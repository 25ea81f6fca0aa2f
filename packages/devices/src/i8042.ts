import type { Device, RegisterTarget } from "./bus.js";
import { type Stateful, stateCheck } from "./stateful.js";

export const I8042_DATA_PORT = 0x60;
export const I8042_COMMAND_PORT = 0x64;

const STATUS_OBF = 0x01;
const STATUS_SYS = 0x04;
const STATUS_CMD = 0x08;
const STATUS_UNLOCKED = 0x10;

const CTR_SYS = 0x04;
const CTR_KBD_DISABLE = 0x10;
const CTR_AUX_DISABLE = 0x20;
/** Keyboard and aux interrupts on, system flag, scancode translation: a PC after POST. */
const CTR_DEFAULT = 0x47;
/** Output port: reset line inactive (bit 0), A20 enabled (bit 1). */
const OUTPORT_DEFAULT = 0x03;

export interface I8042Options {
  name?: string;
  /** The guest pulsed the CPU reset line (0xFE, any even 0xF0-0xFF, or 0xD1 with bit 0 clear). */
  onReset?: () => void;
}


/**
 * The i8042 keyboard controller, enough for Linux: reset through the controller, its self-tests,
 * the command byte and the output port. No keyboard or mouse is attached: bytes written to them
 * are dropped, and the controller raises no interrupts. Two faces, `data` (port 0x60) and
 * `command` (port 0x64), because port 0x61 between them belongs to another device.
 */
/** The controller's state (JSON). */
export interface I8042State {
  [key: string]: number | boolean | number[];
  queue: number[];
  ctr: number;
  outport: number;
  lastWasCommand: boolean;
  pending: number;
  resets: number;
}

export class I8042 implements Stateful<I8042State> {
  readonly name: string;
  readonly data: Device;
  readonly command: Device;
  /** How many times the guest asked for a reset. */
  resets = 0;
  private readonly onReset: (() => void) | undefined;
  private readonly queue: number[] = [];
  private ctr = CTR_DEFAULT;
  private outport = OUTPORT_DEFAULT;
  private lastWasCommand = true;
  private pending = 0;

  constructor(options: I8042Options = {}) {
    this.name = options.name ?? "i8042";
    this.onReset = options.onReset;
    this.data = {
      name: `${this.name}-data`,
      stateOwner: this,
      read: (_o, d) => d.fill(0).writeUInt8(this.readData(), 0),
      write: (_o, d) => this.writeData(d[0]!),
    };
    this.command = {
      name: `${this.name}-command`,
      stateOwner: this,
      read: (_o, d) => d.fill(0).writeUInt8(this.status(), 0),
      write: (_o, d) => this.writeCommand(d[0]!),
    };
  }

  /** Registers `data` and `command` on a PIO bus at the PC ports (or the ones given). */
  attach(bus: RegisterTarget, dataPort = I8042_DATA_PORT, commandPort = I8042_COMMAND_PORT): void {
    bus.register(dataPort, 1, this.data);
    bus.register(commandPort, 1, this.command);
  }

  /** The controller command byte (read with 0x20, written with 0x60). */
  get commandByte(): number {
    return this.ctr;
  }

  /** Whether A20 is enabled through the output port. */
  get a20(): boolean {
    return (this.outport & 0x02) !== 0;
  }

  saveState(): I8042State {
    return { queue: [...this.queue], ctr: this.ctr, outport: this.outport, lastWasCommand: this.lastWasCommand, pending: this.pending, resets: this.resets };
  }

  restoreState(state: I8042State): void {
    const o = stateCheck.object(this.name, state);
    const queue = stateCheck.bytes(this.name, o, "queue", 64);
    const ctr = stateCheck.int(this.name, o, "ctr", 0, 0xff);
    const outport = stateCheck.int(this.name, o, "outport", 0, 0xff);
    const lastWasCommand = stateCheck.bool(this.name, o, "lastWasCommand");
    const pending = stateCheck.int(this.name, o, "pending", 0, 0xff);
    const resets = stateCheck.int(this.name, o, "resets", 0, Number.MAX_SAFE_INTEGER);
    this.queue.length = 0;
    this.queue.push(...queue);
    this.ctr = ctr;
    this.outport = outport;
    this.lastWasCommand = lastWasCommand;
    this.pending = pending;
    this.resets = resets;
  }

  private status(): number {
    return (
      (this.queue.length > 0 ? STATUS_OBF : 0) |
      (this.ctr & CTR_SYS ? STATUS_SYS : 0) |
      (this.lastWasCommand ? STATUS_CMD : 0) |
      STATUS_UNLOCKED
    );
  }

  private readData(): number {
    return this.queue.shift() ?? 0;
  }

  private reset(): void {
    this.resets++;
    this.onReset?.();
  }

  private writeCommand(cmd: number): void {
    this.lastWasCommand = true;
    this.pending = 0;
    if (cmd === 0x20) this.queue.push(this.ctr);
    else if (cmd > 0x20 && cmd < 0x40) this.queue.push(0);
    else if (cmd >= 0x60 && cmd < 0x80) this.pending = cmd;
    else if (cmd >= 0xf0) {
      // Pulse output-port lines low; bit 0 of the command clear pulses the reset line.
      if (!(cmd & 1)) this.reset();
    } else {
      switch (cmd) {
        case 0xa7:
          this.ctr |= CTR_AUX_DISABLE;
          break;
        case 0xa8:
          this.ctr &= ~CTR_AUX_DISABLE;
          break;
        case 0xa9: // aux interface test: 0 = no error
        case 0xab: // keyboard interface test
          this.queue.push(0x00);
          break;
        case 0xaa: // controller self-test
          this.ctr |= CTR_SYS;
          this.queue.push(0x55);
          break;
        case 0xad:
          this.ctr |= CTR_KBD_DISABLE;
          break;
        case 0xae:
          this.ctr &= ~CTR_KBD_DISABLE;
          break;
        case 0xd0:
          this.queue.push(this.outport);
          break;
        case 0xd1: // write output port
        case 0xd2: // write keyboard output buffer (echo)
        case 0xd3: // write aux output buffer (echo; Linux's AUX loop test)
        case 0xd4: // write to aux device
          this.pending = cmd;
          break;
        case 0xdd:
          this.outport &= ~0x02;
          break;
        case 0xdf:
          this.outport |= 0x02;
          break;
        default:
          break;
      }
    }
  }

  private writeData(v: number): void {
    this.lastWasCommand = false;
    const cmd = this.pending;
    this.pending = 0;
    if (cmd === 0x60) this.ctr = v;
    else if (cmd === 0xd1) {
      this.outport = v;
      if (!(v & 1)) this.reset();
    } else if (cmd === 0xd2 || cmd === 0xd3) this.queue.push(v);
    // Anything else goes to a keyboard or mouse that is not there.
  }
}
