import { TsvmmError } from "@tsvmm/abi";

export type VmmErrorCode =
  /** The JSON VM configuration does not match the schema; the message names the key. */
  | "VMM_CONFIG_INVALID"
  /** A file named by the configuration or the command line cannot be read. */
  | "VMM_FILE_UNREADABLE"
  /** A file named as input is a FIFO, device, directory or socket: only regular files are read. */
  | "VMM_FILE_NOT_REGULAR"
  /** A file named as input is larger than anything of its kind can be. */
  | "VMM_FILE_TOO_LARGE"
  /** The kernel image is in no format tsvmm can boot, or the format asked for does not match. */
  | "VMM_KERNEL_FORMAT"
  /** The builder was asked for something inconsistent (e.g. no kernel). */
  | "VMM_BUILD_INVALID"
  /** run() on a VMM that already ran or was closed. */
  | "VMM_STATE"
  | VmmBuildErrorCode;

export class VmmError extends TsvmmError<VmmErrorCode> {}

/** The named steps of assembling a VM (see `assemble`). */
export type VmmBuildStep =
  | "open-kvm" | "create-vm" | "memory" | "irqchip" | "load-kernel" | "firmware" | "prepare" | "cpuid" | "vcpus" | "msr-filter" | "devices" | "trace";

/** One code per build step: `VMM_BUILD_LOAD_KERNEL` for "load-kernel", and so on. */
export type VmmBuildErrorCode =
  | "VMM_BUILD_OPEN_KVM" | "VMM_BUILD_CREATE_VM" | "VMM_BUILD_IRQCHIP" | "VMM_BUILD_MEMORY" | "VMM_BUILD_LOAD_KERNEL" | "VMM_BUILD_FIRMWARE" | "VMM_BUILD_PREPARE"
  | "VMM_BUILD_CPUID" | "VMM_BUILD_VCPUS" | "VMM_BUILD_MSR_FILTER" | "VMM_BUILD_DEVICES" | "VMM_BUILD_TRACE";

/**
 * A build step failed. `step` names it, `cause` is what failed inside (a typed error of the part
 * that refused: KvmError, ElfError, BusOverlapError, ...), and `causeCode` is that error's code.
 */
export class VmmBuildError extends VmmError {
  constructor(
    readonly step: VmmBuildStep,
    readonly causeCode: string | undefined,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`VMM_BUILD_${step.toUpperCase().replace(/-/g, "_")}` as VmmBuildErrorCode, message, options);
  }

  static at(step: VmmBuildStep, e: unknown): VmmBuildError {
    if (e instanceof VmmBuildError) return e;
    const code = e instanceof TsvmmError ? String(e.code) : undefined;
    const msg = e instanceof Error ? e.message : String(e);
    return new VmmBuildError(step, code, `${step}: ${code === undefined ? "" : `${code}: `}${msg}`, { cause: e });
  }
}
