import { DeviceError } from "./errors.js";

/** A value that survives JSON.stringify / JSON.parse unchanged. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/**
 * A device whose state can be saved and restored, as vm-superio's SerialState: `saveState()`
 * returns plain JSON (no Buffers, no bigints) describing everything the guest could observe;
 * `restoreState()` on a freshly built device of the same kind and options makes it
 * indistinguishable from the saved one. Callbacks (IRQ lines, output sinks) are not state: a
 * restore does not call them, because the interrupt controllers' own state is restored apart.
 */
export interface Stateful<S extends JsonValue = JsonValue> {
  saveState(): S;
  restoreState(state: S): void;
}

/** True when `x` has both saveState and restoreState methods. */
export function isStateful(x: unknown): x is Stateful {
  if (typeof x !== "object" || x === null) return false;
  const o = x as { saveState?: unknown; restoreState?: unknown };
  return typeof o.saveState === "function" && typeof o.restoreState === "function";
}

/** Shape checks for `restoreState`: each throws DEVICE_BAD_STATE naming the device and field. */
export const stateCheck = {
  object(device: string, s: unknown): Record<string, unknown> {
    if (typeof s !== "object" || s === null || Array.isArray(s)) throw bad(device, "state", "an object");
    return s as Record<string, unknown>;
  },
  int(device: string, o: Record<string, unknown>, key: string, min: number, max: number): number {
    const v = o[key];
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) throw bad(device, key, `an integer ${min}..${max}`);
    return v;
  },
  intOrNull(device: string, o: Record<string, unknown>, key: string, min: number, max: number): number | null {
    return o[key] === null ? null : stateCheck.int(device, o, key, min, max);
  },
  bool(device: string, o: Record<string, unknown>, key: string): boolean {
    const v = o[key];
    if (typeof v !== "boolean") throw bad(device, key, "a boolean");
    return v;
  },
  bytes(device: string, o: Record<string, unknown>, key: string, maxLength: number): number[] {
    const v = o[key];
    if (!Array.isArray(v) || v.length > maxLength || !v.every((b) => Number.isInteger(b) && b >= 0 && b <= 0xff)) {
      throw bad(device, key, `at most ${maxLength} bytes`);
    }
    return v as number[];
  },
  hex(device: string, o: Record<string, unknown>, key: string, maxBytes: number): Uint8Array {
    const v = o[key];
    if (typeof v !== "string" || v.length % 2 !== 0 || v.length > maxBytes * 2 || !/^[0-9a-f]*$/.test(v)) {
      throw bad(device, key, `hex of at most ${maxBytes} bytes`);
    }
    return Uint8Array.from(Buffer.from(v, "hex"));
  },
};

function bad(device: string, key: string, what: string): DeviceError {
  return new DeviceError("DEVICE_BAD_STATE", `${device}: saved state field "${key}" must be ${what}`);
}
