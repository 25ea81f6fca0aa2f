import { TsvmmError } from "@tsvmm/abi";

export type BusErrorCode = "BUS_INVALID_RANGE" | "BUS_OVERLAP" | "BUS_NOT_REGISTERED" | "BUS_INVALID_ACCESS";

/** Misuse of a bus by the VMM: a bad range, an overlap, an unknown registration, a bad access. */
export class BusError extends TsvmmError<BusErrorCode> {}

/** Registering a range that overlaps one already on the bus. Names both devices. */
export class BusOverlapError extends BusError {
  readonly device: string;
  readonly existing: string;
  readonly base: number;
  readonly length: number;
  readonly existingBase: number;
  readonly existingLength: number;
  constructor(
    device: string,
    base: number,
    length: number,
    existing: string,
    existingBase: number,
    existingLength: number,
    space: string,
  ) {
    super(
      "BUS_OVERLAP",
      `${space} range ${hex(base)}+${hex(length)} of device "${device}" overlaps ${hex(existingBase)}+${hex(existingLength)} of device "${existing}"`,
    );
    this.device = device;
    this.existing = existing;
    this.base = base;
    this.length = length;
    this.existingBase = existingBase;
    this.existingLength = existingLength;
  }
}

/**
 * A device threw while handling an access. The bus catches it (the guest sees the default
 * handler's value), wraps it in this error and hands it to the bus's `onDeviceFault` callback.
 */
export class DeviceFaultError extends TsvmmError<"DEVICE_FAULT"> {
  readonly device: string;
  readonly address: number;
  readonly size: number;
  readonly isWrite: boolean;
  constructor(device: string, address: number, size: number, isWrite: boolean, cause: unknown) {
    const why = cause instanceof Error ? cause.message : String(cause);
    super(
      "DEVICE_FAULT",
      `device "${device}" threw on a ${size}-byte ${isWrite ? "write" : "read"} at ${hex(address)}: ${why}`,
      { cause },
    );
    this.device = device;
    this.address = address;
    this.size = size;
    this.isWrite = isWrite;
  }
}

export type DeviceErrorCode =
  | "DEVICE_INVALID_OPTION"
  | "DEVICE_INVALID_ACCESS"
  /** `restoreState` was given a state that is not one this device's `saveState` can produce. */
  | "DEVICE_BAD_STATE";

/** Bad options given to a device model, or an access a device model cannot take. */
export class DeviceError extends TsvmmError<DeviceErrorCode> {}

export type TraceErrorCode =
  | "TRACE_BAD_LINE"
  | "TRACE_INVALID_EVENT"
  | "TRACE_CLOSED"
  | "TRACE_WRITE_FAILED"
  /** The trace file cannot be opened for appending (missing directory, permissions, not a file). */
  | "TRACE_OPEN_FAILED";

/** Recording or replaying an exit trace failed. `line` is 1-based when the error is about a line. */
export class TraceError extends TsvmmError<TraceErrorCode> {
  readonly line: number | undefined;
  constructor(code: TraceErrorCode, message: string, line?: number, options?: { cause?: unknown }) {
    super(code, message, options);
    this.line = line;
  }
}

export function hex(n: number): string {
  return `0x${n.toString(16)}`;
}
