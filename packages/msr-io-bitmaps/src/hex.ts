import { BitmapError } from "./errors.js";

export const hex = (n: number): string => `0x${n.toString(16)}`;

/** Inclusive range of MSR indices or ports. */
export interface IndexRange {
  first: number;
  last: number;
}

/** "0x10" or "0x10-0x1f" (inclusive), the form used in JSON. */
export function formatRange(r: IndexRange): string {
  return r.first === r.last ? hex(r.first) : `${hex(r.first)}-${hex(r.last)}`;
}

const HEX = /^0x[0-9a-f]+$/i;

export function parseRange(text: unknown, max: number, what: string): IndexRange {
  if (typeof text !== "string") throw new BitmapError("BITMAP_BAD_JSON", `${what}: expected a string like "0x10-0x1f", got ${JSON.stringify(text)}`);
  const parts = text.split("-");
  if (parts.length > 2 || !parts.every((p) => HEX.test(p.trim()))) {
    throw new BitmapError("BITMAP_BAD_JSON", `${what}: "${text}" is not a hex value or "first-last" hex range`);
  }
  const first = Number.parseInt(parts[0]!.trim(), 16);
  const last = Number.parseInt((parts[1] ?? parts[0]!).trim(), 16);
  if (first > last || last > max) {
    throw new BitmapError("BITMAP_BAD_JSON", `${what}: "${text}" is empty or exceeds ${hex(max)}`);
  }
  return { first, last };
}
