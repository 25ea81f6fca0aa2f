import type { IndexRange } from "./hex.js";

/** A span [start, end): half-open so the whole 32-bit MSR space ends at 2^32 without overflow. */
export type Span = readonly [number, number];

/**
 * An immutable set of integers stored as sorted, disjoint, non-adjacent spans. MSR policies cover
 * the full 2^32 index space, so they cannot be bit arrays.
 */
export class IntervalSet {
  readonly spans: readonly Span[];

  private constructor(spans: readonly Span[]) {
    this.spans = spans;
  }

  static readonly EMPTY = new IntervalSet([]);

  /** Normalizes any list of spans (unsorted, overlapping, empty ones allowed). */
  static of(spans: Iterable<Span>): IntervalSet {
    const sorted = [...spans].filter(([s, e]) => e > s).sort((a, b) => a[0] - b[0]);
    const out: Array<[number, number]> = [];
    for (const [s, e] of sorted) {
      const last = out[out.length - 1];
      if (last && s <= last[1]) last[1] = Math.max(last[1], e);
      else out.push([s, e]);
    }
    return new IntervalSet(out);
  }

  static fromRanges(ranges: Iterable<IndexRange>): IntervalSet {
    const spans: Span[] = [];
    for (const r of ranges) spans.push([r.first, r.last + 1]);
    return IntervalSet.of(spans);
  }

  get isEmpty(): boolean {
    return this.spans.length === 0;
  }

  /** Number of members. */
  get size(): number {
    let n = 0;
    for (const [s, e] of this.spans) n += e - s;
    return n;
  }

  has(x: number): boolean {
    const i = this.indexAtOrAfter(x);
    const sp = this.spans[i];
    return sp !== undefined && sp[0] <= x;
  }

  /** Index of the first span whose end is > x. */
  indexAtOrAfter(x: number): number {
    let lo = 0;
    let hi = this.spans.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.spans[mid]![1] <= x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Smallest member >= x, or undefined. */
  nextMember(x: number): number | undefined {
    const sp = this.spans[this.indexAtOrAfter(x)];
    return sp === undefined ? undefined : Math.max(sp[0], x);
  }

  /** Largest member < x, or undefined. */
  prevMember(x: number): number | undefined {
    const i = this.indexAtOrAfter(x);
    const sp = this.spans[i];
    if (sp !== undefined && sp[0] < x) return x - 1;
    const before = this.spans[i - 1];
    return before === undefined ? undefined : before[1] - 1;
  }

  union(o: IntervalSet): IntervalSet {
    return IntervalSet.of([...this.spans, ...o.spans]);
  }

  complement(universeEnd: number): IntervalSet {
    const out: Span[] = [];
    let prev = 0;
    for (const [s, e] of this.spans) {
      if (s >= universeEnd) break;
      if (s > prev) out.push([prev, s]);
      prev = e;
    }
    if (prev < universeEnd) out.push([prev, universeEnd]);
    return new IntervalSet(out);
  }

  intersection(o: IntervalSet): IntervalSet {
    const out: Span[] = [];
    let i = 0;
    let j = 0;
    while (i < this.spans.length && j < o.spans.length) {
      const a = this.spans[i]!;
      const b = o.spans[j]!;
      const s = Math.max(a[0], b[0]);
      const e = Math.min(a[1], b[1]);
      if (s < e) out.push([s, e]);
      if (a[1] < b[1]) i++;
      else j++;
    }
    return new IntervalSet(out);
  }

  difference(o: IntervalSet): IntervalSet {
    const end = Math.max(this.spans[this.spans.length - 1]?.[1] ?? 0, o.spans[o.spans.length - 1]?.[1] ?? 0);
    return this.intersection(o.complement(end));
  }

  /** The members inside [start, end). */
  clip(start: number, end: number): IntervalSet {
    return this.intersection(new IntervalSet([[start, end]]));
  }

  equals(o: IntervalSet): boolean {
    if (this.spans.length !== o.spans.length) return false;
    return this.spans.every((s, i) => s[0] === o.spans[i]![0] && s[1] === o.spans[i]![1]);
  }

  toRanges(): IndexRange[] {
    return this.spans.map(([s, e]) => ({ first: s, last: e - 1 }));
  }
}
