/** Byte sum modulo 256 of `b[start, end)`. ACPI and MP checksums make this zero. */
export function byteSum(b: Uint8Array, start = 0, end = b.length): number {
  let s = 0;
  for (let i = start; i < end; i++) s = (s + b[i]!) & 0xff;
  return s;
}

/**
 * Write at `at` the byte that makes `b[start, end)` sum to zero. The byte at `at` (inside the
 * range) is taken as zero before summing, so calling this twice gives the same result.
 */
export function fixChecksum(b: Uint8Array, at: number, start = 0, end = b.length): void {
  b[at] = 0;
  b[at] = (0x100 - byteSum(b, start, end)) & 0xff;
}
