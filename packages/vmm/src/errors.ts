import { TsvmmError } from "@tsvmm/abi";

export type VmmErrorCode =
  /** The JSON VM configuration does not match the schema; the message names the key. */
  | "VMM_CONFIG_INVALID"
  /** A file named by the configuration or the command line cannot be read. */
  | "VMM_FILE_UNREADABLE"
  /** The kernel image is in no format tsvmm can boot, or the format asked for does not match. */
  | "VMM_KERNEL_FORMAT"
  /** The builder was asked for something inconsistent (e.g. no kernel). */
  | "VMM_BUILD_INVALID"
  /** run() on a VMM that already ran or was closed. */
  | "VMM_STATE";

export class VmmError extends TsvmmError<VmmErrorCode> {}
