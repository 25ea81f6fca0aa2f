import { TsvmmError } from "@tsvmm/abi";

export type SvmErrorCode =
  | "SVM_UNKNOWN_FIELD"
  | "SVM_VALUE_OUT_OF_RANGE"
  | "SVM_INVALID_JSON"
  | "SVM_INVALID_VMCB"
  | "SVM_INVALID_CAPS"
  | "SVM_UNKNOWN_PROFILE"
  | "SVM_UNKNOWN_CHECK"
  | "SVM_UNKNOWN_EXIT_CODE"
  | "SVM_BRIDGE_UNKNOWN_EXIT";

/** Every error thrown by `@tsvmm/svm`; `code` tells which rule the input broke. */
export class SvmError extends TsvmmError<SvmErrorCode> {}
