import { fixChecksum } from "./checksum.js";
import { AcpiError } from "./errors.js";
import { SDT_HEADER, type SdtHeader } from "./layouts.js";

/** The identification every table header carries besides its signature. */
export interface TableIds {
  /** 6 characters, space-padded. */
  readonly oemId: string;
  /** 8 characters, space-padded. */
  readonly oemTableId: string;
  readonly oemRevision: number;
  /** 4 characters. */
  readonly creatorId: string;
  readonly creatorRevision: number;
}

export const DEFAULT_TABLE_IDS: TableIds = Object.freeze({
  oemId: "TSVMM",
  oemTableId: "TSVMM",
  oemRevision: 1,
  creatorId: "TSVM",
  creatorRevision: 1,
});

/** A fixed-width ASCII field, right-padded with spaces (as firmware does for OEM ids). */
export function asciiField(s: string, width: number, what: string, pad = " "): Buffer {
  if (s.length > width || !/^[\x20-\x7e]*$/.test(s)) {
    throw new AcpiError("ACPI_INVALID_ARGUMENT", `${what} must be at most ${width} printable ASCII characters, got ${JSON.stringify(s)}`);
  }
  return Buffer.from(s.padEnd(width, pad), "latin1");
}

function checkU32(n: number, what: string): void {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new AcpiError("ACPI_INVALID_ARGUMENT", `${what} must be a u32, got ${n}`);
}

/** The header of a table of `length` bytes; the checksum is left 0 for {@link sealSdt}. */
export function sdtHeader(signature: string, revision: number, length: number, ids: TableIds): SdtHeader {
  checkU32(ids.oemRevision, "oemRevision");
  checkU32(ids.creatorRevision, "creatorRevision");
  return {
    signature: asciiField(signature, 4, "signature"),
    length,
    revision,
    checksum: 0,
    oemId: asciiField(ids.oemId, 6, "oemId"),
    oemTableId: asciiField(ids.oemTableId, 8, "oemTableId"),
    oemRevision: ids.oemRevision,
    creatorId: asciiField(ids.creatorId, 4, "creatorId"),
    creatorRevision: ids.creatorRevision,
  };
}

/** Set the header checksum so the whole table sums to 0. */
export function sealSdt(table: Buffer): Buffer {
  fixChecksum(table, SDT_HEADER.offsetOf("checksum"));
  return table;
}

/** Header + body, with the length filled in and the checksum making the whole table sum to 0. */
export function buildSdt(signature: string, revision: number, body: Uint8Array, ids: TableIds): Buffer {
  const out = Buffer.alloc(SDT_HEADER.size + body.length);
  SDT_HEADER.encode(sdtHeader(signature, revision, out.length, ids), out);
  out.set(body, SDT_HEADER.size);
  return sealSdt(out);
}
