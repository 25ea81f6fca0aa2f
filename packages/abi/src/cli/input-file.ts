import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import { TsvmmError } from "../errors.js";

export type InputFileErrorCode = "INPUT_FILE_UNREADABLE" | "INPUT_FILE_NOT_REGULAR" | "INPUT_FILE_TOO_LARGE";

/** A file a user named could not be taken as input; `message` says why in one line. */
export class InputFileError extends TsvmmError<InputFileErrorCode> {
  readonly path: string;
  constructor(code: InputFileErrorCode, message: string, path: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.path = path;
  }
}

// No socket case: open(2) of a Unix socket fails with ENXIO before fstat could see it.
function kindOf(st: { isFIFO(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean; isDirectory(): boolean }): string {
  if (st.isFIFO()) return "a FIFO";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  if (st.isDirectory()) return "a directory";
  return "not a regular file";
}

/**
 * Read a file a user named as input, safely: only a regular file (a FIFO would block for ever,
 * /dev/zero would grow without end), opened without blocking, no larger than `limit` bytes, and
 * read by its size at open time. `what` names the file in messages ("kernel", "caps file").
 */
export function readRegularFile(path: string, limit: number, what = "file"): Buffer {
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO for reading must not wait for a writer before we can refuse it.
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    throw new InputFileError("INPUT_FILE_UNREADABLE", `cannot read ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, path, { cause: e });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new InputFileError("INPUT_FILE_NOT_REGULAR", `${what} ${path} is ${kindOf(st)}: give a regular file`, path);
    if (st.size > limit) throw new InputFileError("INPUT_FILE_TOO_LARGE", `${what} ${path} is ${st.size} bytes, more than the ${limit} a ${what} may have`, path);
    const buf = Buffer.allocUnsafe(st.size);
    let off = 0;
    while (off < buf.length) {
      const n = readSync(fd, buf, off, buf.length - off, off);
      if (n === 0) break;
      off += n;
    }
    // A file that shrank while it was read is taken as it now is.
    return off === buf.length ? buf : buf.subarray(0, off);
  } catch (e) {
    if (e instanceof InputFileError) throw e;
    throw new InputFileError("INPUT_FILE_UNREADABLE", `cannot read ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, path, { cause: e });
  } finally {
    closeSync(fd);
  }
}
