import { TsvmmError } from "@tsvmm/abi";

export type BitmapErrorCode =
  | "MSR_INVALID_INDEX"
  | "MSR_INVALID_ACCESS"
  | "MSR_NOT_COVERED"
  | "IO_INVALID_PORT"
  | "IO_INVALID_SIZE"
  | "BITMAP_INVALID_RANGE"
  | "BITMAP_BAD_LENGTH"
  | "BITMAP_KIND_MISMATCH"
  | "BITMAP_BAD_JSON";

/** Bad input to a bitmap, policy, or their serialized forms. */
export class BitmapError extends TsvmmError<BitmapErrorCode> {}

export { KvmMsrFilterError, type KvmMsrFilterErrorCode } from "@tsvmm/abi";
