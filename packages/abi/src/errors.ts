/**
 * Base class of every typed error thrown by tsvmm packages. `code` is stable and meant for
 * programs; `message` is for people.
 */
export class TsvmmError<C extends string = string> extends Error {
  readonly code: C;
  constructor(code: C, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

export type GuestMemoryErrorCode =
  | "GUEST_MEMORY_INVALID_ADDRESS"
  | "GUEST_MEMORY_OUT_OF_RANGE"
  | "GUEST_MEMORY_INVALID_REGION"
  /** A value to store is not an integer (NaN, Infinity, a fraction): nothing is written. */
  | "GUEST_MEMORY_INVALID_VALUE"
  /** The region's backing was released (e.g. the VM was closed): its Buffer is detached. */
  | "GUEST_MEMORY_RELEASED";

/** An access by guest-physical address that does not lie wholly inside one region. */
export class GuestMemoryError extends TsvmmError<GuestMemoryErrorCode> {
  readonly address: bigint | undefined;
  readonly length: number | undefined;
  constructor(code: GuestMemoryErrorCode, message: string, address?: bigint, length?: number) {
    super(code, message);
    this.address = address;
    this.length = length;
  }
}

export type LayoutErrorCode = "LAYOUT_BUFFER_TOO_SMALL" | "LAYOUT_VALUE_OUT_OF_RANGE" | "LAYOUT_TOO_MANY_ENTRIES";

/** Encoding or decoding a kernel struct failed: the buffer is short or a value does not fit. */
export class LayoutError extends TsvmmError<LayoutErrorCode> {}
