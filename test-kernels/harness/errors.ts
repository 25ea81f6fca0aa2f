import { TsvmmError } from "@tsvmm/abi";

export type HarnessErrorCode =
  /** The guest file is not an ELF this harness loads (class, machine, note, ranges). */
  | "HARNESS_BAD_ELF"
  /** A case configuration asks for something impossible (memory layout, vCPU count). */
  | "HARNESS_BAD_CONFIG";

export class HarnessError extends TsvmmError<HarnessErrorCode> {}
