import { formatRange, type IndexRange } from "./hex.js";
import { IntervalSet } from "./intervals.js";
import type { IoBitmapBase } from "./io/bitmap.js";
import type { MsrPolicySource } from "./msr/policy.js";
import { MSR_DIRECTIONS, type MsrDirection } from "./msr/rules.js";

export type InterceptState = "intercept" | "allow";

/** One inclusive range whose treatment differs between two MSR bitmaps/policies. */
export interface MsrDiffEntry extends IndexRange {
  direction: MsrDirection;
  before: InterceptState;
  after: InterceptState;
}

/** One inclusive port range whose treatment differs between two I/O bitmaps. */
export interface IoDiffEntry extends IndexRange {
  before: InterceptState;
  after: InterceptState;
}

function changes(beforeAllowed: IntervalSet, afterAllowed: IntervalSet): Array<IndexRange & { before: InterceptState; after: InterceptState }> {
  const opened = afterAllowed.difference(beforeAllowed).toRanges().map((r) => ({ ...r, before: "intercept" as const, after: "allow" as const }));
  const closed = beforeAllowed.difference(afterAllowed).toRanges().map((r) => ({ ...r, before: "allow" as const, after: "intercept" as const }));
  return [...opened, ...closed].sort((x, y) => x.first - y.first);
}

/**
 * What changes going from `before` to `after`, over the whole MSR space (so a VMX bitmap and an
 * SVM MSRPM can be compared: each denies what it does not cover). Sorted by direction, then MSR.
 */
export function diffMsr(before: MsrPolicySource, after: MsrPolicySource): MsrDiffEntry[] {
  const a = before.toPolicy();
  const b = after.toPolicy();
  return MSR_DIRECTIONS.flatMap((direction) => changes(a.allowedSet(direction), b.allowedSet(direction)).map((c) => ({ direction, ...c })));
}

/** What changes going from `before` to `after`, per port 0..0xFFFF (single-byte view). */
export function diffIo(before: IoBitmapBase, after: IoBitmapBase): IoDiffEntry[] {
  const allowed = (b: IoBitmapBase) => IntervalSet.fromRanges(b.allowedRanges());
  return changes(allowed(before), allowed(after));
}

/** One line per entry, e.g. `read  0xc0000080-0xc0000081: allow -> intercept`. */
export function formatDiff(entries: ReadonlyArray<MsrDiffEntry | IoDiffEntry>): string {
  return entries
    .map((e) => `${"direction" in e ? `${e.direction.padEnd(5)} ` : ""}${formatRange(e)}: ${e.before} -> ${e.after}`)
    .join("\n");
}
