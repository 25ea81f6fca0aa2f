import { InputFileError, readRegularFile } from "@tsvmm/abi";
import { VmmError } from "./errors.js";

/** Largest config or CPUID template file read (they are a few KiB in practice). */
export const MAX_TEXT_INPUT = 16 * 2 ** 20;
/** Largest kernel or initrd read: no guest RAM can hold more. */
export const MAX_IMAGE_INPUT = 3 * 2 ** 30;

const FILE_CODES = {
  INPUT_FILE_UNREADABLE: "VMM_FILE_UNREADABLE",
  INPUT_FILE_NOT_REGULAR: "VMM_FILE_NOT_REGULAR",
  INPUT_FILE_TOO_LARGE: "VMM_FILE_TOO_LARGE",
} as const;

/**
 * Read a file the user named, safely (abi's readRegularFile: regular files only, opened without
 * blocking, no larger than `limit`). Errors are typed: VMM_FILE_UNREADABLE (cannot open or read),
 * VMM_FILE_NOT_REGULAR, VMM_FILE_TOO_LARGE.
 */
export function readInputFile(path: string, what: string, limit: number): Buffer {
  try {
    return readRegularFile(path, limit, what);
  } catch (e) {
    if (e instanceof InputFileError) throw new VmmError(FILE_CODES[e.code], e.message, { cause: e });
    throw e;
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
