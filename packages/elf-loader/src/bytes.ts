import type { StructLayout } from "@tsvmm/abi";
import { ElfError, hex } from "./errors.js";

export const U64_LIMIT = 1n << 64n;

/**
 * Bounds-checked reads of declared structs over a file. Callers check ranges with {@link fileRange}
 * before reading; these reads re-check so that a missed check surfaces as ELF_TRUNCATED,
 * never as a RangeError.
 */
export class ByteReader {
  readonly bytes: Uint8Array;
  readonly length: number;
  private readonly buf: Buffer;
  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
    this.length = bytes.length;
    this.buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  private need(offset: number, size: number, what: string): void {
    if (!(Number.isSafeInteger(offset) && offset >= 0 && offset + size <= this.length)) {
      throw new ElfError("ELF_TRUNCATED", `${what}: ${size} bytes at offset ${offset} run past the end of the ${this.length}-byte file`);
    }
  }
  /** A u32 data word (not a struct field: e.g. the implicit addend a REL entry points at). */
  u32(offset: number, what = "u32"): number {
    this.need(offset, 4, what);
    return this.buf.readUInt32LE(offset);
  }
  /** A declared struct at `offset`; one that runs past the end of the file is ELF_TRUNCATED. */
  struct<T>(layout: StructLayout<T>, offset: number, what: string = layout.cType): T {
    this.need(offset, layout.size, what);
    return layout.decode(this.bytes, offset);
  }
  sub(offset: number, size: number, what = "range"): Uint8Array {
    this.need(offset, size, what);
    return this.bytes.subarray(offset, offset + size);
  }
}

/**
 * Check that `[offset, offset + size)` lies inside a file of `fileLength` bytes, and return the
 * offset and size as safe numbers. 64-bit fields can be anywhere up to 2^64 - 1, so the sum is
 * computed in bigint: a sum past 2^64 is ELF_OVERFLOW (it would wrap in C), a range past the end of
 * the file is ELF_OUT_OF_FILE.
 */
export function fileRange(offset: bigint, size: bigint, fileLength: number, what: string): { offset: number; size: number } {
  const end = offset + size;
  if (end >= U64_LIMIT) {
    throw new ElfError("ELF_OVERFLOW", `${what}: offset ${hex(offset)} + size ${hex(size)} overflows 64 bits`);
  }
  if (end > BigInt(fileLength)) {
    throw new ElfError("ELF_OUT_OF_FILE", `${what}: bytes ${hex(offset)}..${hex(end)} lie outside the ${fileLength}-byte file`);
  }
  return { offset: Number(offset), size: Number(size) };
}

/** A NUL-terminated string at `index` inside `table`; the terminator must be inside the table. */
export function tableString(table: Uint8Array, index: number, what: string): string {
  if (!Number.isSafeInteger(index) || index < 0 || index >= table.length) {
    throw new ElfError("ELF_BAD_STRING", `${what}: string index ${index} is outside the ${table.length}-byte string table`);
  }
  const end = table.indexOf(0, index);
  if (end < 0) throw new ElfError("ELF_BAD_STRING", `${what}: string at index ${index} is not NUL-terminated inside its table`);
  return Buffer.from(table.buffer, table.byteOffset + index, end - index).toString("latin1");
}

/**
 * Decode `layout` from the `available` bytes at `offset` of `bytes`, the rest read as zero: how boot
 * headers treat fields past their declared end (a short setup header, a Multiboot header without
 * the address fields).
 */
export function decodeZeroExtended<T>(layout: StructLayout<T>, bytes: Uint8Array, offset: number, available: number): T {
  const tmp = Buffer.alloc(layout.size);
  const n = Math.max(0, Math.min(available, layout.size, bytes.length - offset));
  tmp.set(bytes.subarray(offset, offset + n));
  return layout.decode(tmp);
}
