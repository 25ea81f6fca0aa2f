import { TsvmmError } from "@tsvmm/abi";

/** The code of the typed error `f` throws (AcpiError, GuestMemoryError, ...), undefined if it returns; anything untyped is rethrown. */
export function code(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    if (e instanceof TsvmmError) return e.code;
    throw e;
  }
  return undefined;
}
