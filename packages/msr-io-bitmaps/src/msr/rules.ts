import { BitmapError } from "../errors.js";
import { hex, type IndexRange } from "../hex.js";

/** The two things a guest does to an MSR: RDMSR and WRMSR. */
export type MsrDirection = "read" | "write";
/** Which directions a rule applies to. */
export type MsrAccess = "read" | "write" | "readwrite";
/** One MSR index, or an inclusive range of them. */
export type MsrSelector = number | IndexRange;
/** A selector with the directions it applies to (both when `access` is omitted). */
export interface MsrRule {
  msrs: MsrSelector;
  access?: MsrAccess;
}
/** An allow-list or deny-list entry: a bare selector means both directions. */
export type MsrListEntry = MsrSelector | MsrRule;

export const MSR_LIMIT = 2 ** 32;
export const MSR_DIRECTIONS: readonly MsrDirection[] = ["read", "write"];

export function checkMsr(msr: unknown): number {
  if (typeof msr !== "number" || !Number.isInteger(msr) || msr < 0 || msr >= MSR_LIMIT) {
    throw new BitmapError("MSR_INVALID_INDEX", `MSR index must be an integer in 0x0..0xffffffff, got ${String(msr)}`);
  }
  return msr;
}

export function checkDirection(d: unknown): MsrDirection {
  if (d !== "read" && d !== "write") {
    throw new BitmapError("MSR_INVALID_ACCESS", `MSR direction must be "read" or "write", got ${JSON.stringify(d)}`);
  }
  return d;
}

export function checkAccess(a: unknown): MsrAccess {
  if (a !== "read" && a !== "write" && a !== "readwrite") {
    throw new BitmapError("MSR_INVALID_ACCESS", `MSR access must be "read", "write" or "readwrite", got ${JSON.stringify(a)}`);
  }
  return a;
}

export function directionsOf(access: MsrAccess): MsrDirection[] {
  return access === "readwrite" ? ["read", "write"] : [access];
}

export function selectorRange(sel: MsrSelector): IndexRange {
  if (typeof sel === "number") {
    checkMsr(sel);
    return { first: sel, last: sel };
  }
  if (typeof sel !== "object" || sel === null) {
    throw new BitmapError("MSR_INVALID_INDEX", `expected an MSR index or {first, last}, got ${String(sel)}`);
  }
  const first = checkMsr(sel.first);
  const last = checkMsr(sel.last);
  if (first > last) throw new BitmapError("BITMAP_INVALID_RANGE", `MSR range ${hex(first)}-${hex(last)} has first > last`);
  return { first, last };
}

export interface NormalizedMsrRule {
  range: IndexRange;
  directions: MsrDirection[];
}

export function normalizeEntry(entry: MsrListEntry): NormalizedMsrRule {
  if (typeof entry === "object" && entry !== null && "msrs" in entry) {
    return { range: selectorRange(entry.msrs), directions: directionsOf(checkAccess(entry.access ?? "readwrite")) };
  }
  return { range: selectorRange(entry), directions: ["read", "write"] };
}
