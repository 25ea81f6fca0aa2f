import { TsvmmError } from "@tsvmm/abi";

export type VmcsErrorCode =
  | "VMCS_UNKNOWN_FIELD"
  | "VMCS_INVALID_ENCODING"
  | "VMCS_VALUE_OUT_OF_RANGE"
  | "VMCS_INVALID_JSON"
  | "VMCS_INVALID_CAPS"
  | "VMCS_UNKNOWN_PROFILE"
  | "VMCS_UNKNOWN_CHECK"
  | "VMCS_BRIDGE_UNKNOWN_EXIT";

/** Every error thrown by `@tsvmm/vmcs`; `code` tells which rule the input broke. */
export class VmcsError extends TsvmmError<VmcsErrorCode> {
  /** Where in a JSON input the problem is (e.g. `cpu.maxphyaddr`), when it comes from one. */
  readonly path: string | undefined;
  constructor(code: VmcsErrorCode, message: string, path?: string) {
    super(code, message);
    this.path = path;
  }
}
