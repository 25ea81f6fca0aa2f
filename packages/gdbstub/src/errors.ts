import { TsvmmError } from "@tsvmm/abi";

/** Every error code `@tsvmm/gdbstub` throws. Stable: programs may switch on them. */
export type GdbStubErrorCode =
  /** An argument is outside its domain (register number, length, thread, …). */
  | "GDBSTUB_INVALID_ARGUMENT"
  /** A packet's payload could not be parsed (bad hex, missing field). */
  | "GDBSTUB_MALFORMED_PACKET"
  /** `GdbServer.listen` on a non-loopback address without `allowRemote: true`. */
  | "GDBSTUB_REMOTE_REFUSED"
  /** `GdbServer.listen` called twice, or after `close`. */
  | "GDBSTUB_SERVER_STATE"
  /** A debug-register range cannot be expressed with the slots of DR0–DR3 (length, alignment). */
  | "GDBSTUB_DEBUG_REGISTER";

export class GdbStubError extends TsvmmError<GdbStubErrorCode> {}
