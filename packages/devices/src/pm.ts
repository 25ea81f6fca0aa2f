import type { Device, RegisterTarget } from "./bus.js";
import { DeviceError } from "./errors.js";

// ACPI fixed power-management hardware (ACPI 6.4 section 4.8): the PM1a event block (status,
// enable), the PM1a control block and the PM timer, as an FADT with full fixed hardware
// describes them. The port numbers and the S5 sleep type come from whoever built the tables
// (`@tsvmm/acpi` builds them; this package may not import it), so they are options here.

/** PM1 status bits (ACPI 6.4 table 4.12). */
export const PM1_STS_TMR = 1 << 0;
export const PM1_STS_WAK = 1 << 15;
/** PM1 control bits (ACPI 6.4 table 4.16). */
export const PM1_CNT_SCI_EN = 1 << 0;
export const PM1_CNT_SLP_TYP_SHIFT = 10;
export const PM1_CNT_SLP_TYP_MASK = 0x7 << PM1_CNT_SLP_TYP_SHIFT;
export const PM1_CNT_SLP_EN = 1 << 13;
/** Bits of PM1 control that are write-only (GBL_RLS, SLP_EN): they read as 0. */
const PM1_CNT_WRITE_ONLY = (1 << 2) | PM1_CNT_SLP_EN;

/** The PM timer's fixed frequency (ACPI 6.4 section 4.8.3.3). */
export const PM_TIMER_FREQUENCY_HZ = 3_579_545;

export const PM_EVENT_SIZE = 4;
export const PM_CONTROL_SIZE = 2;
export const PM_TIMER_SIZE = 4;

/** Default ports: the PIIX4-like layout `@tsvmm/acpi` puts in its FADT by default. */
export const PM_DEFAULT_PORTS = Object.freeze({ pm1aEvent: 0x600, pm1aControl: 0x604, pmTimer: 0x608 });

export interface PmDeviceOptions {
  name?: string;
  /** SLP_TYP the firmware's `\_S5` package holds: a write of SLP_EN with it powers off. Default 5. */
  s5SleepType?: number;
  /** A 32-bit timer (FADT TMR_VAL_EXT) instead of 24-bit. */
  timer32Bit?: boolean;
  /** Monotonic nanoseconds (default `process.hrtime.bigint`); the timer counts from construction. */
  clock?: () => bigint;
  /** The guest asked for S5 (soft off). */
  onPowerOff?: () => void;
  /**
   * The guest asked for another sleep state. Without a handler the request completes at once:
   * WAK_STS is set so OSPM, which polls it, sees the machine "wake" straight away.
   */
  onSleep?: (sleepType: number) => void;
}

/** What {@link PmDevice.saveState} returns: plain JSON (a type alias, so it is indexable as JSON). */
export type PmDeviceState = {
  status: number;
  enable: number;
  control: number;
  /** Timer ticks at the time of the save, as a decimal string (a bigint is not JSON). */
  timerTicks: string;
};

function readBytes(value: number, width: number, offset: number, data: Buffer): void {
  for (let i = 0; i < data.length; i++) {
    const at = offset + i;
    data[i] = at < width ? (value >>> (8 * at)) & 0xff : 0;
  }
}

function mergeBytes(old: number, width: number, offset: number, data: Buffer): { value: number; mask: number } {
  let value = old;
  let mask = 0;
  for (let i = 0; i < data.length && offset + i < width; i++) {
    const shift = 8 * (offset + i);
    value = (value & ~(0xff << shift)) | (data[i]! << shift);
    mask |= 0xff << shift;
  }
  return { value: value >>> 0, mask: mask >>> 0 };
}

/**
 * PM1a status/enable, PM1a control and the PM timer. Three faces (`event`, `control`, `timer`)
 * since the FADT places each block on its own; `attach` registers them at the given ports.
 * Pure: the VMM decides what power-off means through `onPowerOff`.
 */
export class PmDevice {
  readonly name: string;
  readonly event: Device;
  readonly control: Device;
  readonly timer: Device;
  /** PM1 status (write 1 to clear). */
  status = 0;
  /** PM1 enable. */
  enable = 0;
  /** How many S5 requests the guest made. */
  powerOffRequests = 0;
  private controlBits = PM1_CNT_SCI_EN;
  private readonly s5: number;
  private readonly timerMask: bigint;
  private readonly clock: () => bigint;
  private base: bigint;
  private readonly onPowerOff: (() => void) | undefined;
  private readonly onSleep: ((t: number) => void) | undefined;

  constructor(options: PmDeviceOptions = {}) {
    this.name = options.name ?? "acpi-pm";
    const s5 = options.s5SleepType ?? 5;
    if (!Number.isInteger(s5) || s5 < 0 || s5 > 7) throw new DeviceError("DEVICE_INVALID_OPTION", `s5SleepType ${String(s5)} is not 0..7`);
    this.s5 = s5;
    this.timerMask = options.timer32Bit ? 0xffff_ffffn : 0xff_ffffn;
    this.clock = options.clock ?? process.hrtime.bigint;
    this.base = this.clock();
    this.onPowerOff = options.onPowerOff;
    this.onSleep = options.onSleep;
    this.event = {
      name: `${this.name}.pm1a-event`,
      stateOwner: this,
      read: (offset, data) => readBytes(((this.enable << 16) | this.status) >>> 0, PM_EVENT_SIZE, offset, data),
      write: (offset, data) => {
        const { value, mask } = mergeBytes(((this.enable << 16) | this.status) >>> 0, PM_EVENT_SIZE, offset, data);
        // Status bits are write-1-to-clear: only the bytes written count, and only their 1s.
        this.status &= ~(value & mask & 0xffff);
        if (mask & 0xffff_0000) this.enable = value >>> 16;
      },
    };
    this.control = {
      name: `${this.name}.pm1a-control`,
      stateOwner: this,
      read: (offset, data) => readBytes(this.controlBits, PM_CONTROL_SIZE, offset, data),
      write: (offset, data) => this.writeControl(mergeBytes(this.controlBits, PM_CONTROL_SIZE, offset, data).value),
    };
    this.timer = {
      name: `${this.name}.pm-timer`,
      stateOwner: this,
      read: (offset, data) => readBytes(this.timerValue(), PM_TIMER_SIZE, offset, data),
      // Read-only: writes have no effect.
      write: () => {},
    };
  }

  /** PM1 control as the guest reads it (SCI_EN always set: no SMI handshake, the machine is in ACPI mode). */
  get controlValue(): number {
    return this.controlBits;
  }

  /** The PM timer now: ticks at 3.579545 MHz since construction, wrapped to 24 (or 32) bits. */
  timerValue(): number {
    return Number(this.ticks() & this.timerMask);
  }

  private ticks(): bigint {
    const ns = this.clock() - this.base;
    return ns <= 0n ? 0n : (ns * BigInt(PM_TIMER_FREQUENCY_HZ)) / 1_000_000_000n;
  }

  private writeControl(v: number): void {
    // SCI_EN stays set: it is owned by hardware once SMI_CMD is 0.
    this.controlBits = ((v & ~PM1_CNT_WRITE_ONLY) | PM1_CNT_SCI_EN) & 0xffff;
    if ((v & PM1_CNT_SLP_EN) === 0) return;
    const type = (v & PM1_CNT_SLP_TYP_MASK) >> PM1_CNT_SLP_TYP_SHIFT;
    if (type === this.s5) {
      this.powerOffRequests++;
      this.onPowerOff?.();
      return;
    }
    if (this.onSleep !== undefined) this.onSleep(type);
    else this.status |= PM1_STS_WAK;
  }

  /** Registers the three blocks on a PIO bus (default ports: 0x600, 0x604, 0x608). */
  attach(bus: RegisterTarget, ports: { pm1aEvent: number; pm1aControl: number; pmTimer: number } = PM_DEFAULT_PORTS): void {
    bus.register(ports.pm1aEvent, PM_EVENT_SIZE, this.event);
    bus.register(ports.pm1aControl, PM_CONTROL_SIZE, this.control);
    bus.register(ports.pmTimer, PM_TIMER_SIZE, this.timer);
  }

  saveState(): PmDeviceState {
    return { status: this.status, enable: this.enable, control: this.controlBits, timerTicks: this.ticks().toString() };
  }

  /** The timer continues from the saved count. */
  restoreState(s: PmDeviceState): void {
    this.status = s.status & 0xffff;
    this.enable = s.enable & 0xffff;
    this.controlBits = ((s.control & ~PM1_CNT_WRITE_ONLY) | PM1_CNT_SCI_EN) & 0xffff;
    if (typeof s.timerTicks !== "string" || !/^[0-9]{1,20}$/.test(s.timerTicks)) {
      throw new DeviceError("DEVICE_INVALID_OPTION", `${this.name}: saved timerTicks must be a decimal string`);
    }
    const ticks = BigInt(s.timerTicks);
    // Rounded up so the restored count is not one tick behind the saved one.
    this.base = this.clock() - (ticks * 1_000_000_000n + BigInt(PM_TIMER_FREQUENCY_HZ) - 1n) / BigInt(PM_TIMER_FREQUENCY_HZ);
  }
}
