import type { Device } from "./bus.js";
import { DeviceError } from "./errors.js";
import { type Stateful, stateCheck } from "./stateful.js";

/** Index at this port (bit 7: NMI disable), data at the next: register 2 ports here. */
export const CMOS_PORT = 0x70;
export const CMOS_SIZE = 2;

export const RTC_SECONDS = 0x00;
export const RTC_MINUTES = 0x02;
export const RTC_HOURS = 0x04;
export const RTC_DAY_OF_WEEK = 0x06;
export const RTC_DAY_OF_MONTH = 0x07;
export const RTC_MONTH = 0x08;
export const RTC_YEAR = 0x09;
export const RTC_STATUS_A = 0x0a;
export const RTC_STATUS_B = 0x0b;
export const RTC_STATUS_C = 0x0c;
export const RTC_STATUS_D = 0x0d;
export const RTC_CENTURY = 0x32;

const B_24H = 0x02;
const B_BINARY = 0x04;

export interface CmosRtcOptions {
  name?: string;
  /** Wall clock in milliseconds since the epoch; default Date.now. The RTC reads UTC. */
  now?: () => number;
}

/**
 * CMOS RAM (128 bytes) with an MC146818-style clock that follows the host's: time registers read
 * the current UTC time in BCD or binary and 12- or 24-hour form as status B asks; writes to them
 * are ignored. Status A reads 0x26 (32.768 kHz, 1024 Hz) with UIP never set, B defaults to 24-hour
 * BCD, C reads 0 (no interrupt flags: the RTC raises no interrupts), D reads 0x80 (valid RAM).
 */
/** CMOS RAM, the index register and the NMI mask (JSON). The clock follows the host's, so it is not state. */
export interface CmosRtcState {
  [key: string]: number | boolean | string;
  /** The 128 CMOS bytes, hex. */
  ram: string;
  index: number;
  nmiDisabled: boolean;
}

export class CmosRtc implements Device, Stateful<CmosRtcState> {
  readonly name: string;
  /** NMI disable, as last written in bit 7 of the index port. */
  nmiDisabled = false;
  private readonly ram = new Uint8Array(128);
  private index = 0;
  private readonly now: () => number;

  constructor(options: CmosRtcOptions = {}) {
    this.name = options.name ?? "cmos-rtc";
    this.now = options.now ?? Date.now;
    this.ram[RTC_STATUS_A] = 0x26;
    this.ram[RTC_STATUS_B] = B_24H;
    this.ram[RTC_STATUS_D] = 0x80;
  }

  /** Presets a CMOS byte (e.g. memory-size bytes some firmware reads). */
  setByte(index: number, value: number): void {
    if (!Number.isInteger(index) || index < 0 || index > 0x7f || !Number.isInteger(value) || value < 0 || value > 0xff) {
      throw new DeviceError("DEVICE_INVALID_OPTION", `CMOS byte ${String(index)} = ${String(value)} is out of range`);
    }
    this.ram[index] = value;
  }

  saveState(): CmosRtcState {
    return { ram: Buffer.from(this.ram).toString("hex"), index: this.index, nmiDisabled: this.nmiDisabled };
  }

  restoreState(state: CmosRtcState): void {
    const o = stateCheck.object(this.name, state);
    const ram = stateCheck.hex(this.name, o, "ram", 128);
    if (ram.length !== 128) throw new DeviceError("DEVICE_BAD_STATE", `${this.name}: saved state field "ram" must be 128 bytes`);
    const index = stateCheck.int(this.name, o, "index", 0, 0x7f);
    const nmi = stateCheck.bool(this.name, o, "nmiDisabled");
    this.ram.set(ram);
    this.index = index;
    this.nmiDisabled = nmi;
  }

  read(offset: number, data: Buffer): void {
    // The index port is write-only; reading it floats the bus.
    data.fill(0xff);
    if (offset === 1) data[0] = this.readReg(this.index);
  }

  write(offset: number, data: Buffer): void {
    const v = data[0]!;
    if (offset === 0) {
      this.index = v & 0x7f;
      this.nmiDisabled = (v & 0x80) !== 0;
    } else {
      this.writeReg(this.index, v);
    }
  }

  private readReg(i: number): number {
    const b = this.ram[RTC_STATUS_B]!;
    const enc = (n: number): number => (b & B_BINARY ? n : ((n / 10) | 0) * 16 + (n % 10));
    const d = new Date(this.now());
    switch (i) {
      case RTC_SECONDS:
        return enc(d.getUTCSeconds());
      case RTC_MINUTES:
        return enc(d.getUTCMinutes());
      case RTC_HOURS: {
        const h = d.getUTCHours();
        if (b & B_24H) return enc(h);
        return enc(h % 12 || 12) | (h >= 12 ? 0x80 : 0);
      }
      case RTC_DAY_OF_WEEK:
        return enc(d.getUTCDay() + 1);
      case RTC_DAY_OF_MONTH:
        return enc(d.getUTCDate());
      case RTC_MONTH:
        return enc(d.getUTCMonth() + 1);
      case RTC_YEAR:
        return enc(d.getUTCFullYear() % 100);
      case RTC_CENTURY:
        return enc(Math.floor(d.getUTCFullYear() / 100));
      default:
        return this.ram[i]!;
    }
  }

  private writeReg(i: number, v: number): void {
    switch (i) {
      case RTC_SECONDS:
      case RTC_MINUTES:
      case RTC_HOURS:
      case RTC_DAY_OF_WEEK:
      case RTC_DAY_OF_MONTH:
      case RTC_MONTH:
      case RTC_YEAR:
      case RTC_CENTURY:
      case RTC_STATUS_C:
      case RTC_STATUS_D:
        return;
      case RTC_STATUS_A:
        // UIP (bit 7) is read-only.
        this.ram[i] = v & 0x7f;
        return;
      default:
        this.ram[i] = v;
    }
  }
}
