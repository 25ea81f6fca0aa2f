import { constants } from "node:os";
import { KVM_IOCTL_NAMES, TsvmmError } from "@tsvmm/abi";

export type KvmErrorCode =
  /** /dev/kvm does not exist on this machine. */
  | "KVM_NOT_FOUND"
  /** /dev/kvm exists but this process may not open it. */
  | "KVM_PERMISSION_DENIED"
  /** Opening /dev/kvm failed for another reason. */
  | "KVM_OPEN_FAILED"
  /** KVM reports an API version other than 12. */
  | "KVM_BAD_API_VERSION"
  /** An ioctl returned an error; `ioctl` and `errnoName` say which and why. */
  | "KVM_IOCTL_FAILED"
  /** mmap/munmap/eventfd/read/write failed. */
  | "KVM_SYSCALL_FAILED"
  /** The object was closed. */
  | "KVM_CLOSED"
  /** An argument was rejected before reaching the kernel. */
  | "KVM_INVALID_ARGUMENT"
  /** runAsync() while a run of the same vCPU is in flight, or run() during runAsync(). */
  | "KVM_VCPU_BUSY"
  /** A VcpuWorker's thread could not start, load its handlers module, or died. */
  | "KVM_WORKER_FAILED"
  /** The native addon is not built. */
  | "KVM_NATIVE_MISSING";

const ERRNO_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(constants.errno).map(([name, n]) => [n, name] as [number, string]),
);

export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `errno ${errno}`;
}

/** Every failure of kvm-backend. `errno`/`errnoName` are set when the kernel said no. */
export class KvmError extends TsvmmError<KvmErrorCode> {
  readonly errno: number | undefined;
  readonly errnoName: string | undefined;
  /** Kernel name of the ioctl (`KVM_CREATE_VM`) or the syscall (`mmap`). */
  readonly ioctl: string | undefined;
  constructor(code: KvmErrorCode, message: string, details: { errno?: number; ioctl?: string; cause?: unknown } = {}) {
    super(code, message, details.cause === undefined ? undefined : { cause: details.cause });
    this.errno = details.errno;
    this.errnoName = details.errno === undefined ? undefined : errnoName(details.errno);
    this.ioctl = details.ioctl;
  }
}

/** Turn a negative return from the addon into a KvmError for the ioctl `request`. */
export function ioctlError(request: number, negErrno: number, what?: string): KvmError {
  const errno = -negErrno;
  const name = KVM_IOCTL_NAMES.get(request) ?? `ioctl 0x${request.toString(16)}`;
  return new KvmError("KVM_IOCTL_FAILED", `${name}${what ? ` (${what})` : ""} failed: ${errnoName(errno)}`, { errno, ioctl: name });
}

export function syscallError(syscall: string, negErrno: number, what?: string): KvmError {
  const errno = -negErrno;
  return new KvmError("KVM_SYSCALL_FAILED", `${syscall}${what ? ` (${what})` : ""} failed: ${errnoName(errno)}`, { errno, ioctl: syscall });
}
