import { constants } from "node:os";

const e = constants.errno;

/**
 * The errno values kvm-backend acts on, taken from the platform's own table (Node's
 * os.constants.errno) so that no errno is written as a bare number.
 */
export const ERRNO = {
  /** KVM_RUN interrupted by a signal (a kick). */
  EINTR: e.EINTR,
  /** Non-blocking read with nothing to read; KVM_RUN with immediate_exit on some kernels. */
  EAGAIN: e.EAGAIN,
  /** A list ioctl (KVM_GET_SUPPORTED_CPUID, ...) needs a larger buffer. */
  E2BIG: e.E2BIG,
  EEXIST: e.EEXIST,
  EINVAL: e.EINVAL,
  EPERM: e.EPERM,
  EACCES: e.EACCES,
  ENOENT: e.ENOENT,
  ENODEV: e.ENODEV,
  ENXIO: e.ENXIO,
  EBUSY: e.EBUSY,
  ENOTTY: e.ENOTTY,
} as const;
