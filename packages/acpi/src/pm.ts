// The fixed ACPI power-management hardware these tables describe (ACPI 6.4 section 4.8): a PM1a
// event block (status + enable), a PM1a control block and the PM timer, all in I/O space. The vmm
// puts a device at these ports; these constants and helpers are what it needs to implement it.

/** I/O ports of the PM blocks. */
export interface PmPorts {
  /** PM1a_EVT_BLK: PM1 status (2 bytes) then PM1 enable (2 bytes). */
  readonly pm1aEvent: number;
  /** PM1a_CNT_BLK: PM1 control (2 bytes); S5 is requested here. */
  readonly pm1aControl: number;
  /** PM_TMR_BLK: the 3.579545 MHz free-running timer (4 bytes, read-only). */
  readonly pmTimer: number;
}

/** The PIIX4-like layout QEMU also uses, clear of COM ports, the PIT, the PICs and the RTC. */
export const DEFAULT_PM_PORTS: PmPorts = Object.freeze({ pm1aEvent: 0x600, pm1aControl: 0x604, pmTimer: 0x608 });

export const PM1_EVT_LEN = 4;
export const PM1_CNT_LEN = 2;
export const PM_TMR_LEN = 4;

/** The SCI's ISA IRQ (FADT SCI_INT), as PC chipsets wire it. */
export const DEFAULT_SCI_IRQ = 9;

/** SLP_TYP this package's `\_S5` package holds (both SLP_TYPa and SLP_TYPb). */
export const DEFAULT_S5_SLEEP_TYPE = 5;

/** PM1 control register bits (ACPI 6.4 table 4.16). */
export const PM1_CNT_SCI_EN = 1 << 0;
export const PM1_CNT_SLP_TYP_SHIFT = 10;
export const PM1_CNT_SLP_TYP_MASK = 0x7 << PM1_CNT_SLP_TYP_SHIFT;
export const PM1_CNT_SLP_EN = 1 << 13;

/** PM1 status register: WAK_STS, which OSPM polls after writing SLP_EN. */
export const PM1_STS_WAK = 1 << 15;

/** The PM timer's fixed frequency. */
export const PM_TIMER_HZ = 3_579_545;

/**
 * The sleep type a write of `value` to PM1a_CNT requests, or undefined when SLP_EN is clear
 * (OSPM writes SLP_TYP first without SLP_EN, then again with it; only the second one acts).
 */
export function pm1ControlSleepRequest(value: number): number | undefined {
  if ((value & PM1_CNT_SLP_EN) === 0) return undefined;
  return (value & PM1_CNT_SLP_TYP_MASK) >> PM1_CNT_SLP_TYP_SHIFT;
}

/** True when a write of `value` to PM1a_CNT asks for S5 (soft off). */
export function isPowerOffRequest(value: number, s5SleepType: number = DEFAULT_S5_SLEEP_TYPE): boolean {
  return pm1ControlSleepRequest(value) === s5SleepType;
}

/**
 * What the PM timer reads after `elapsedNs` nanoseconds: ticks at {@link PM_TIMER_HZ}, wrapping at
 * 24 bits (or 32 with the FADT's TMR_VAL_EXT).
 */
export function pmTimerValue(elapsedNs: bigint, bits: 24 | 32 = 24): number {
  if (elapsedNs < 0n) elapsedNs = 0n;
  const ticks = (elapsedNs * BigInt(PM_TIMER_HZ)) / 1_000_000_000n;
  return Number(ticks & ((1n << BigInt(bits)) - 1n));
}
