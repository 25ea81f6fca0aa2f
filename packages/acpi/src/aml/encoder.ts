import { AcpiError } from "../errors.js";

// AML byte encodings from ACPI 6.4 section 20.2 (AML grammar). Each function returns the bytes of
// one complete term, so terms nest by concatenation: a parent's PkgLength is computed once its
// children are encoded, and nothing is patched afterwards.

/** An encoded AML term (or list of terms). */
export type AmlBytes = Uint8Array;

/** What a Name or Package element may hold: integers and strings are encoded, bytes pass as is. */
export type AmlData = number | bigint | string | AmlBytes;

const ZERO_OP = 0x00;
const ONE_OP = 0x01;
const NAME_OP = 0x08;
const BYTE_PREFIX = 0x0a;
const WORD_PREFIX = 0x0b;
const DWORD_PREFIX = 0x0c;
const STRING_PREFIX = 0x0d;
const QWORD_PREFIX = 0x0e;
const SCOPE_OP = 0x10;
const BUFFER_OP = 0x11;
const PACKAGE_OP = 0x12;
const VAR_PACKAGE_OP = 0x13;
const METHOD_OP = 0x14;
const EXT_OP_PREFIX = 0x5b;
const DEVICE_OP = 0x82;
const RETURN_OP = 0xa4;
const STORE_OP = 0x70;
const LOCAL0_OP = 0x60;
const ARG0_OP = 0x68;
const ROOT_CHAR = 0x5c;
const PARENT_PREFIX = 0x5e;
const DUAL_NAME_PREFIX = 0x2e;
const MULTI_NAME_PREFIX = 0x2f;
const NULL_NAME = 0x00;

/** Largest length a PkgLength can encode (4 bytes: 4 + 8 + 8 + 8 bits). */
export const AML_MAX_PKG_LENGTH = 0x0fff_ffff;

export function amlConcat(parts: readonly AmlBytes[]): Buffer {
  return Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p.buffer, p.byteOffset, p.byteLength))));
}

/**
 * The PkgLength that precedes `contentLength` bytes. Its value counts its own bytes too, so the
 * encoding is the shortest of 1..4 bytes whose total still fits that encoding's range.
 */
export function amlPkgLength(contentLength: number): Buffer {
  if (!Number.isSafeInteger(contentLength) || contentLength < 0) {
    throw new AcpiError("ACPI_INVALID_ARGUMENT", `PkgLength content length ${contentLength} is not a non-negative integer`);
  }
  if (contentLength + 1 <= 0x3f) return Buffer.from([contentLength + 1]);
  for (let n = 2; n <= 4; n++) {
    const total = contentLength + n;
    // One lead nibble plus 8 bits per following byte.
    if (total < 2 ** (4 + 8 * (n - 1))) {
      const out = Buffer.alloc(n);
      out[0] = ((n - 1) << 6) | (total & 0x0f);
      for (let i = 1; i < n; i++) out[i] = Math.floor(total / 2 ** (4 + 8 * (i - 1))) & 0xff;
      return out;
    }
  }
  throw new AcpiError("ACPI_AML_TOO_LARGE", `AML object of ${contentLength} bytes exceeds the PkgLength limit of ${AML_MAX_PKG_LENGTH}`);
}

/** Read a PkgLength at `offset`: its value and how many bytes it took. */
export function decodeAmlPkgLength(b: Uint8Array, offset: number): { value: number; size: number } {
  const lead = b[offset];
  if (lead === undefined) throw new AcpiError("ACPI_MALFORMED", `PkgLength at ${offset} is past the end`);
  const follow = lead >> 6;
  if (follow === 0) return { value: lead & 0x3f, size: 1 };
  if ((lead & 0x30) !== 0) throw new AcpiError("ACPI_MALFORMED", `PkgLength lead byte 0x${lead.toString(16)} has bits 4-5 set`);
  let value = lead & 0x0f;
  for (let i = 1; i <= follow; i++) {
    const x = b[offset + i];
    if (x === undefined) throw new AcpiError("ACPI_MALFORMED", `PkgLength at ${offset} is truncated`);
    value += x * 2 ** (4 + 8 * (i - 1));
  }
  return { value, size: follow + 1 };
}

/** Opcode bytes, then PkgLength, then `content`. */
function withPkgLength(op: readonly number[], content: readonly AmlBytes[]): Buffer {
  const body = amlConcat(content);
  return amlConcat([Buffer.from(op), amlPkgLength(body.length), body]);
}

/**
 * A NameSeg: 1-4 characters, the first A-Z or '_', the rest A-Z, 0-9 or '_', padded to four
 * with '_' as ASL compilers do ("_SB" is "_SB_").
 */
export function amlNameSeg(seg: string): Buffer {
  if (!/^[A-Z_][A-Z0-9_]{0,3}$/.test(seg)) {
    throw new AcpiError("ACPI_INVALID_ARGUMENT", `${JSON.stringify(seg)} is not an AML NameSeg (1-4 of A-Z 0-9 _, not starting with a digit)`);
  }
  return Buffer.from(seg.padEnd(4, "_"), "latin1");
}

/**
 * A NameString in ASL spelling: an optional root `\` or parent prefixes `^`, then segments joined
 * by `.` (`\_SB.COM1`, `^FOO`, `_HID`). A bare `\` is the root itself.
 */
export function amlNameString(path: string): Buffer {
  let i = 0;
  const prefix: number[] = [];
  if (path.startsWith("\\")) {
    prefix.push(ROOT_CHAR);
    i = 1;
  } else {
    while (path[i] === "^") {
      prefix.push(PARENT_PREFIX);
      i++;
    }
  }
  const rest = path.slice(i);
  if (rest === "") {
    if (prefix.length === 0) throw new AcpiError("ACPI_INVALID_ARGUMENT", "empty AML name");
    return Buffer.from([...prefix, NULL_NAME]);
  }
  const segs = rest.split(".").map(amlNameSeg);
  if (segs.length > 255) throw new AcpiError("ACPI_AML_TOO_LARGE", `AML name ${path} has more than 255 segments`);
  const head =
    segs.length === 1 ? [] : segs.length === 2 ? [DUAL_NAME_PREFIX] : [MULTI_NAME_PREFIX, segs.length];
  return amlConcat([Buffer.from([...prefix, ...head]), ...segs]);
}

/** An integer in the shortest form: ZeroOp, OneOp, or Byte/Word/DWord/QWord constant. */
export function amlInteger(value: number | bigint): Buffer {
  let v: bigint;
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new AcpiError("ACPI_INVALID_ARGUMENT", `AML integer ${value} is not a non-negative safe integer`);
    }
    v = BigInt(value);
  } else {
    v = value;
  }
  if (v < 0n || v > 0xffff_ffff_ffff_ffffn) throw new AcpiError("ACPI_INVALID_ARGUMENT", `AML integer ${v} does not fit 64 bits`);
  if (v === 0n) return Buffer.from([ZERO_OP]);
  if (v === 1n) return Buffer.from([ONE_OP]);
  if (v <= 0xffn) return Buffer.from([BYTE_PREFIX, Number(v)]);
  if (v <= 0xffffn) {
    const b = Buffer.alloc(3);
    b[0] = WORD_PREFIX;
    b.writeUInt16LE(Number(v), 1);
    return b;
  }
  if (v <= 0xffff_ffffn) {
    const b = Buffer.alloc(5);
    b[0] = DWORD_PREFIX;
    b.writeUInt32LE(Number(v), 1);
    return b;
  }
  const b = Buffer.alloc(9);
  b[0] = QWORD_PREFIX;
  b.writeBigUInt64LE(v, 1);
  return b;
}

/** A String constant: ASCII 0x01-0x7F, NUL-terminated. */
export function amlString(s: string): Buffer {
  if ([...s].some((c) => c.charCodeAt(0) === 0 || c.charCodeAt(0) > 0x7f)) throw new AcpiError("ACPI_INVALID_ARGUMENT", `AML string ${JSON.stringify(s)} must be ASCII without NUL`);
  return amlConcat([Buffer.from([STRING_PREFIX]), Buffer.from(s, "latin1"), Buffer.from([0])]);
}

/**
 * The 32-bit compressed EISA id of a 7-character PNP id ("PNP0501"): three letters of 5 bits
 * each (A = 1), then four hex digits, stored in that order most significant first.
 */
export function eisaId(id: string): number {
  if (!/^[A-Z]{3}[0-9A-F]{4}$/.test(id)) {
    throw new AcpiError("ACPI_INVALID_ARGUMENT", `${JSON.stringify(id)} is not an EISA id (3 letters A-Z, 4 upper-case hex digits)`);
  }
  const c = (i: number) => id.charCodeAt(i) - 0x40;
  const vendor = (c(0) << 10) | (c(1) << 5) | c(2);
  const product = Number.parseInt(id.slice(3), 16);
  const b = Buffer.from([vendor >> 8, vendor & 0xff, product >> 8, product & 0xff]);
  return b.readUInt32LE(0);
}

/** EisaId("PNP0501") as ASL writes it: always a DWord constant. */
export function amlEisaId(id: string): Buffer {
  const b = Buffer.alloc(5);
  b[0] = DWORD_PREFIX;
  b.writeUInt32LE(eisaId(id), 1);
  return b;
}

/** Turn a Name/Package value into its encoded term. */
export function amlData(v: AmlData): Buffer {
  if (typeof v === "number" || typeof v === "bigint") return amlInteger(v);
  if (typeof v === "string") return amlString(v);
  return Buffer.from(v);
}

/** Buffer (size) { bytes }. */
export function amlBuffer(data: Uint8Array): Buffer {
  return withPkgLength([BUFFER_OP], [amlInteger(data.length), data]);
}

/** Package () { ... }; more than 255 elements become a VarPackage. */
export function amlPackage(elements: readonly AmlData[]): Buffer {
  const enc = elements.map(amlData);
  if (elements.length <= 255) return withPkgLength([PACKAGE_OP], [Buffer.from([elements.length]), ...enc]);
  return withPkgLength([VAR_PACKAGE_OP], [amlInteger(elements.length), ...enc]);
}

/** Name (name, value). */
export function amlName(name: string, value: AmlData): Buffer {
  return amlConcat([Buffer.from([NAME_OP]), amlNameString(name), amlData(value)]);
}

/** Scope (path) { terms }. */
export function amlScope(path: string, terms: readonly AmlBytes[]): Buffer {
  return withPkgLength([SCOPE_OP], [amlNameString(path), ...terms]);
}

/** Device (name) { terms }. */
export function amlDevice(name: string, terms: readonly AmlBytes[]): Buffer {
  return withPkgLength([EXT_OP_PREFIX, DEVICE_OP], [amlNameString(name), ...terms]);
}

export interface AmlMethodOptions {
  /** 0-7 arguments. */
  readonly args?: number;
  readonly serialized?: boolean;
  /** 0-15. */
  readonly syncLevel?: number;
}

/** Method (name, args, Serialized|NotSerialized, syncLevel) { terms }. */
export function amlMethod(name: string, options: AmlMethodOptions, terms: readonly AmlBytes[]): Buffer {
  const args = options.args ?? 0;
  const sync = options.syncLevel ?? 0;
  if (!Number.isInteger(args) || args < 0 || args > 7) throw new AcpiError("ACPI_INVALID_ARGUMENT", `method ${name}: ${args} arguments (0-7)`);
  if (!Number.isInteger(sync) || sync < 0 || sync > 15) throw new AcpiError("ACPI_INVALID_ARGUMENT", `method ${name}: sync level ${sync} (0-15)`);
  const flags = args | (options.serialized ? 0x08 : 0) | (sync << 4);
  return withPkgLength([METHOD_OP], [amlNameString(name), Buffer.from([flags]), ...terms]);
}

/** Return (value). */
export function amlReturn(value: AmlData): Buffer {
  return amlConcat([Buffer.from([RETURN_OP]), amlData(value)]);
}

/** Store (source, target). */
export function amlStore(source: AmlBytes, target: AmlBytes): Buffer {
  return amlConcat([Buffer.from([STORE_OP]), source, target]);
}

/** Arg0..Arg6. */
export function amlArg(n: number): Buffer {
  if (!Number.isInteger(n) || n < 0 || n > 6) throw new AcpiError("ACPI_INVALID_ARGUMENT", `Arg${n} does not exist (0-6)`);
  return Buffer.from([ARG0_OP + n]);
}

/** Local0..Local7. */
export function amlLocal(n: number): Buffer {
  if (!Number.isInteger(n) || n < 0 || n > 7) throw new AcpiError("ACPI_INVALID_ARGUMENT", `Local${n} does not exist (0-7)`);
  return Buffer.from([LOCAL0_OP + n]);
}

/** A reference to a named object, as a term argument (e.g. inside a Package or Return). */
export function amlNameRef(path: string): Buffer {
  return amlNameString(path);
}
