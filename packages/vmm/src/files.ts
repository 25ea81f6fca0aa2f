import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import { VmmError } from "./errors.js";

/** Largest config or CPUID template file read (they are a few KiB in practice). */
export const MAX_TEXT_INPUT = 16 * 2 ** 20;
/** Largest kernel or initrd read: no guest RAM can hold more. */
export const MAX_IMAGE_INPUT = 3 * 2 ** 30;

/**
 * Read a file the user named, safely: only regular files (a FIFO would block for ever, /dev/zero
 * would grow without end), opened without blocking, no larger than `limit`. Errors are typed:
 * VMM_FILE_UNREADABLE (cannot open or read), VMM_FILE_NOT_REGULAR, VMM_FILE_TOO_LARGE.
 */
export function readInputFile(path: string, what: string, limit: number): Buffer {
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO for reading must not wait for a writer before we can refuse it.
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    throw new VmmError("VMM_FILE_UNREADABLE", `cannot read ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) {
      const kind = st.isFIFO() ? "a FIFO" : st.isCharacterDevice() ? "a character device" : st.isDirectory() ? "a directory" : st.isSocket() ? "a socket" : "not a regular file";
      throw new VmmError("VMM_FILE_NOT_REGULAR", `${what} ${path} is ${kind}: give a regular file`);
    }
    if (st.size > limit) {
      throw new VmmError("VMM_FILE_TOO_LARGE", `${what} ${path} is ${st.size} bytes, more than the ${limit} a ${what} may have`);
    }
    const buf = Buffer.allocUnsafe(st.size);
    let off = 0;
    while (off < buf.length) {
      const n = readSync(fd, buf, off, buf.length - off, off);
      if (n === 0) break;
      off += n;
    }
    // A file that shrank while we read it is read as it now is.
    return off === buf.length ? buf : buf.subarray(0, off);
  } catch (e) {
    if (e instanceof VmmError) throw e;
    throw new VmmError("VMM_FILE_UNREADABLE", `cannot read ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  } finally {
    closeSync(fd);
  }
}

/** Parse JSON from a file the user named; a syntax error is VMM_CONFIG_INVALID naming the file. */
export function readJsonFile(path: string, what: string): unknown {
  const text = readInputFile(path, what, MAX_TEXT_INPUT).toString("utf8");
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new VmmError("VMM_CONFIG_INVALID", `${what} ${path} is not JSON: ${(e as Error).message}`, { cause: e });
  }
}
