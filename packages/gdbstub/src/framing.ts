import { GdbStubError } from "./errors.js";
import { hexByte } from "./hex.js";

/** The four bytes gdb's binary data escapes: '#', '$', '}' and '*' (RLE marker). */
const ESCAPE = 0x7d;
const MUST_ESCAPE = new Set([0x23, 0x24, 0x7d, 0x2a]);

/** Modulo-256 sum of the bytes between '$' and '#'. */
export function checksum(bytes: Uint8Array): number {
  let sum = 0;
  for (const b of bytes) sum = (sum + b) & 0xff;
  return sum;
}

/** `$payload#cs` for a payload that is already escaped where it carries binary data. */
export function framePacket(payload: string | Uint8Array): Buffer {
  const body = typeof payload === "string" ? Buffer.from(payload, "latin1") : payload;
  const out = Buffer.allocUnsafe(body.length + 4);
  out[0] = 0x24;
  out.set(body, 1);
  out[body.length + 1] = 0x23;
  out.write(hexByte(checksum(body)), body.length + 2, "latin1");
  return out;
}

/** Binary data as it travels in X packets and qXfer replies: `}` then the byte XOR 0x20. */
export function escapeBinary(data: Uint8Array): Buffer {
  let extra = 0;
  for (const b of data) if (MUST_ESCAPE.has(b)) extra++;
  const out = Buffer.allocUnsafe(data.length + extra);
  let j = 0;
  for (const b of data) {
    if (MUST_ESCAPE.has(b)) {
      out[j++] = ESCAPE;
      out[j++] = b ^ 0x20;
    } else out[j++] = b;
  }
  return out;
}

/** Inverse of {@link escapeBinary}. Any escaped byte is accepted; a trailing lone `}` is malformed. */
export function unescapeBinary(data: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(data.length);
  let j = 0;
  for (let i = 0; i < data.length; i++) {
    const b = data[i]!;
    if (b === ESCAPE) {
      if (i + 1 >= data.length) throw new GdbStubError("GDBSTUB_MALFORMED_PACKET", "binary data ends in an escape byte");
      out[j++] = data[++i]! ^ 0x20;
    } else out[j++] = b;
  }
  return out.subarray(0, j);
}

/**
 * Expand gdb's run-length encoding: `X*c` stands for X followed by (c - 29) more copies of X.
 * Returns undefined when the encoding is malformed (no character to repeat, a count outside
 * the printable range the protocol allows) or when the result would pass `maxLength`, which
 * keeps a hostile stream from inflating memory by a factor of 97.
 */
export function decodeRunLength(data: Uint8Array, maxLength: number): Buffer | undefined {
  if (data.indexOf(0x2a) < 0) return data.length <= maxLength ? Buffer.from(data) : undefined;
  const out: number[] = [];
  for (let i = 0; i < data.length; i++) {
    const b = data[i]!;
    if (b !== 0x2a) {
      if (out.length >= maxLength) return undefined;
      out.push(b);
      continue;
    }
    if (out.length === 0 || i + 1 >= data.length) return undefined;
    const c = data[++i]!;
    // The count byte is printable and never '#' or '$' (those would break framing).
    if (c < 32 || c > 126 || c === 0x23 || c === 0x24) return undefined;
    const n = c - 29;
    if (n < 0 || out.length + n > maxLength) return undefined;
    const prev = out[out.length - 1]!;
    for (let k = 0; k < n; k++) out.push(prev);
  }
  return Buffer.from(out);
}
