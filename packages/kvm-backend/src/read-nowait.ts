import { ERRNO } from "./errno.js";
import { KvmError, syscallError } from "./errors.js";
import { native } from "./native.js";

/**
 * Read up to `target.length` bytes of file `fd` at `position` into `target` without waiting for
 * I/O: `preadv2(..., RWF_NOWAIT)`. A buffered read whose data is in the page cache returns it
 * (the byte count; it may be short when only part of the range is cached, 0 at end of file); one
 * that would have to wait for the disk returns "again" at once, and the caller reads elsewhere
 * (the thread pool). So it may run on the event loop: it never sleeps on a disk.
 * Throws KvmError: KVM_INVALID_ARGUMENT for a bad position or a view of a SharedArrayBuffer,
 * KVM_SYSCALL_FAILED (with errno) for anything else the kernel refuses (EBADF, EIO, EOPNOTSUPP
 * where the file system cannot do RWF_NOWAIT, EINTR, ...).
 */
export function readNoWait(fd: number, target: Uint8Array, position: number): number | "again" {
  if (!Number.isSafeInteger(position) || position < 0) {
    throw new KvmError("KVM_INVALID_ARGUMENT", `readNoWait: position ${String(position)} is not a non-negative integer`);
  }
  const n = native();
  let r: number;
  try {
    r = n.preadv2(fd, target, position, n.constants.RWF_NOWAIT);
  } catch (e) {
    // N-API hands out no pointer into a SharedArrayBuffer and throws instead.
    throw new KvmError("KVM_INVALID_ARGUMENT", "readNoWait takes a view of an ArrayBuffer (not a SharedArrayBuffer)", { cause: e });
  }
  if (r >= 0) return r;
  if (r === -ERRNO.EAGAIN) return "again";
  throw syscallError("preadv2", r, "RWF_NOWAIT");
}
