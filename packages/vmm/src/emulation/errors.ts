import { TsvmmError } from "@tsvmm/abi";

export type EmulationErrorCode =
  /** The vCPU is in a state the VMM's emulation does not cover (e.g. 32-bit paging): the VM stops as without emulation. */
  | "EMULATION_UNSUPPORTED"
  /** Delivering an event by hand through the guest's IDT failed twice (the processor would shut down). */
  | "EMULATION_DELIVERY_FAILED";

export class EmulationError extends TsvmmError<EmulationErrorCode> {}
