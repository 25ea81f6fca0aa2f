import { GdbStubError } from "./errors.js";

const HEX_DIGITS = "0123456789abcdef";

/** Value of one ASCII hex digit, or -1. Accepts both cases, as gdb may send either. */
export function hexDigitValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

/** Bytes as lowercase hex, two digits per byte, in memory order. */
export function toHex(bytes: Uint8Array): string {
  let out = "";
  for (const b of bytes) out += HEX_DIGITS[b >> 4]! + HEX_DIGITS[b & 15]!;
  return out;
}

/** Inverse of {@link toHex}; throws GDBSTUB_MALFORMED_PACKET on an odd length or a non-hex digit. */
export function fromHex(text: string): Buffer {
  if (text.length % 2 !== 0) throw new GdbStubError("GDBSTUB_MALFORMED_PACKET", `odd-length hex string (${text.length})`);
  const out = Buffer.alloc(text.length / 2);
  for (let i = 0; i < out.length; i++) {
    const hi = hexDigitValue(text.charCodeAt(2 * i));
    const lo = hexDigitValue(text.charCodeAt(2 * i + 1));
    if (hi < 0 || lo < 0) throw new GdbStubError("GDBSTUB_MALFORMED_PACKET", `not a hex byte: "${text.slice(2 * i, 2 * i + 2)}"`);
    out[i] = (hi << 4) | lo;
  }
  return out;
}

/** Text as hex of its ASCII/UTF-8 bytes (qThreadExtraInfo, qRcmd output). */
export function textToHex(text: string): string {
  return toHex(Buffer.from(text, "utf8"));
}

/**
 * A protocol number: big-endian hex without prefix, at most 16 digits (64 bits). Throws
 * GDBSTUB_MALFORMED_PACKET otherwise, so a hostile "m" with 10^6 digits costs nothing.
 */
export function parseHexNumber(text: string): bigint {
  if (text.length === 0 || text.length > 16) throw new GdbStubError("GDBSTUB_MALFORMED_PACKET", `bad hex number "${text.slice(0, 20)}"`);
  let v = 0n;
  for (let i = 0; i < text.length; i++) {
    const d = hexDigitValue(text.charCodeAt(i));
    if (d < 0) throw new GdbStubError("GDBSTUB_MALFORMED_PACKET", `bad hex number "${text.slice(0, 20)}"`);
    v = (v << 4n) | BigInt(d);
  }
  return v;
}

/** A hex number that must fit a JavaScript safe integer up to `max` (lengths, register numbers). */
export function parseHexSize(text: string, max: number): number {
  const v = parseHexNumber(text);
  if (v > BigInt(max)) throw new GdbStubError("GDBSTUB_MALFORMED_PACKET", `number 0x${v.toString(16)} exceeds ${max}`);
  return Number(v);
}

/** Hex of a number without leading zeros (thread ids, exit codes use this form). */
export function hexNumber(v: number | bigint): string {
  return v.toString(16);
}

/** One byte as exactly two hex digits (signal numbers, checksums). */
export function hexByte(v: number): string {
  return HEX_DIGITS[(v >> 4) & 15]! + HEX_DIGITS[v & 15]!;
}
