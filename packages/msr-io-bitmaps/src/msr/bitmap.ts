import { fillBits, getBit, runsOf, setBit } from "../bits.js";
import { BitmapError } from "../errors.js";
import { formatRange, hex, type IndexRange, parseRange } from "../hex.js";
import { IntervalSet, type Span } from "../intervals.js";
import { type Ctor, PageBitmap } from "../page-bitmap.js";
import { MsrPolicy, type MsrPolicySource } from "./policy.js";
import {
  checkAccess,
  checkDirection,
  checkMsr,
  directionsOf,
  MSR_DIRECTIONS,
  MSR_LIMIT,
  type MsrAccess,
  type MsrDirection,
  type MsrListEntry,
  type MsrSelector,
  normalizeEntry,
  selectorRange,
} from "./rules.js";

/**
 * Where one contiguous range of MSRs lives in a bitmap page: MSR `first + i` has its read-intercept
 * bit at `readBit + i * stride` and its write-intercept bit at `writeBit + i * stride`.
 */
export interface MsrSegment {
  readonly first: number;
  readonly count: number;
  readonly readBit: number;
  readonly writeBit: number;
  readonly stride: number;
}

export type MsrBitmapKind = "vmx-msr-bitmap" | "svm-msrpm";

/** JSON form of an MSR bitmap: the intercepted MSRs per direction, within the bitmap's coverage. */
export interface MsrBitmapJson {
  format: "tsvmm.msr-bitmap/1";
  kind: MsrBitmapKind;
  intercept: { read: string[]; write: string[] };
}

/** The API shared by the VMX MSR bitmap and the SVM MSR permission map. */
export interface MsrInterceptBitmap extends MsrPolicySource {
  readonly kind: MsrBitmapKind;
  /** The MSR ranges the page has bits for; every other MSR is always intercepted. */
  readonly coverage: readonly IndexRange[];
  covers(msr: number): boolean;
  intercepts(msr: number, direction: MsrDirection): boolean;
  intercept(msrs: MsrSelector, access?: MsrAccess): this;
  allow(msrs: MsrSelector, access?: MsrAccess): this;
  interceptedRanges(direction: MsrDirection): IndexRange[];
  toBuffer(): Buffer;
  toJSON(): MsrBitmapJson;
}


/**
 * Logic shared by every MSR bitmap: subclasses only describe their page size and segment layout.
 * A set bit means "intercept" (the access exits), a clear bit lets the guest access the MSR.
 */
export abstract class MsrBitmapBase extends PageBitmap<MsrBitmapKind> implements MsrInterceptBitmap {
  protected abstract readonly segments: readonly MsrSegment[];

  /** Every covered MSR intercepted in both directions. */
  static interceptAll<T extends MsrBitmapBase>(this: Ctor<T>): T {
    const b = new this();
    for (const s of b.segments) b.fillSegment(s, 0, s.count, MSR_DIRECTIONS, true);
    return b;
  }

  /** Intercept everything except the listed accesses. Listing an uncovered MSR throws MSR_NOT_COVERED. */
  static fromAllowList<T extends MsrBitmapBase>(this: Ctor<T>, entries: Iterable<MsrListEntry>): T {
    const b = new this();
    for (const s of b.segments) b.fillSegment(s, 0, s.count, MSR_DIRECTIONS, true);
    for (const e of entries) {
      const rule = normalizeEntry(e);
      b.setRule(rule.range, rule.directions, false);
    }
    return b;
  }

  /** Intercept exactly the listed accesses (plus, as always, every uncovered MSR). */
  static fromDenyList<T extends MsrBitmapBase>(this: Ctor<T>, entries: Iterable<MsrListEntry>): T {
    const b = new this();
    for (const e of entries) {
      const rule = normalizeEntry(e);
      b.setRule(rule.range, rule.directions, true);
    }
    return b;
  }

  /** The bitmap a policy asks for; throws MSR_NOT_COVERED if it allows an MSR the page cannot. */
  static fromPolicy<T extends MsrBitmapBase>(this: Ctor<T>, source: MsrPolicySource): T {
    const p = source.toPolicy();
    const b = new this();
    for (const s of b.segments) b.fillSegment(s, 0, s.count, MSR_DIRECTIONS, true);
    for (const d of MSR_DIRECTIONS) {
      for (const r of p.allowedRanges(d)) b.setRule(r, [d], false);
    }
    return b;
  }

  static fromJSON<T extends MsrBitmapBase>(this: Ctor<T>, json: unknown): T {
    const b = new this();
    const j = json as Partial<MsrBitmapJson> | null;
    if (typeof j !== "object" || j === null || j.format !== "tsvmm.msr-bitmap/1" || j.kind !== b.kind) {
      throw new BitmapError("BITMAP_BAD_JSON", `not a ${b.kind}: expected format "tsvmm.msr-bitmap/1" and kind "${b.kind}"`);
    }
    const ic = j.intercept;
    if (typeof ic !== "object" || ic === null || !Array.isArray(ic.read) || !Array.isArray(ic.write)) {
      throw new BitmapError("BITMAP_BAD_JSON", `${b.kind}: "intercept" must be { read: string[], write: string[] }`);
    }
    for (const d of MSR_DIRECTIONS) {
      ic[d].forEach((text: unknown, i: number) => {
        const r = parseRange(text, MSR_LIMIT - 1, `intercept.${d}[${i}]`);
        if (b.uncoveredIn(r) !== undefined) {
          throw new BitmapError("BITMAP_BAD_JSON", `intercept.${d}[${i}]: ${text} lies outside the ${b.kind}'s MSR ranges`);
        }
        b.setRule(r, [d], true);
      });
    }
    return b;
  }

  get coverage(): IndexRange[] {
    return this.segments.map((s) => ({ first: s.first, last: s.first + s.count - 1 }));
  }

  /** Page size in bytes. */
  get byteLength(): number {
    return this.page.length;
  }

  covers(msr: number): boolean {
    checkMsr(msr);
    return this.segmentOf(msr) !== undefined;
  }

  /** Whether RDMSR/WRMSR of `msr` exits. Uncovered MSRs always do, as on the CPU. */
  intercepts(msr: number, direction: MsrDirection): boolean {
    checkMsr(msr);
    const d = checkDirection(direction);
    const s = this.segmentOf(msr);
    if (s === undefined) return true;
    return getBit(this.page, (d === "read" ? s.readBit : s.writeBit) + (msr - s.first) * s.stride);
  }

  /** Intercepts the selected MSRs; uncovered ones are intercepted already, so they are skipped. */
  intercept(msrs: MsrSelector, access: MsrAccess = "readwrite"): this {
    this.setRule(selectorRange(msrs), directionsOf(checkAccess(access)), true);
    return this;
  }

  /** Lets the guest access the selected MSRs; throws MSR_NOT_COVERED (changing nothing) if any is uncovered. */
  allow(msrs: MsrSelector, access: MsrAccess = "readwrite"): this {
    this.setRule(selectorRange(msrs), directionsOf(checkAccess(access)), false);
    return this;
  }

  /** Intercepted MSRs within the coverage (uncovered MSRs are implied). */
  interceptedRanges(direction: MsrDirection): IndexRange[] {
    return this.spansOf(checkDirection(direction), true).toRanges();
  }

  /** Allowed MSRs (always inside the coverage). */
  allowedRanges(direction: MsrDirection): IndexRange[] {
    return this.spansOf(checkDirection(direction), false).toRanges();
  }

  toPolicy(): MsrPolicy {
    return MsrPolicy.fromAllowedSets(this.spansOf("read", false), this.spansOf("write", false));
  }

  /** A copy of the page, byte for byte what the CPU reads. */
  toBuffer(): Buffer {
    return Buffer.from(this.page);
  }

  toJSON(): MsrBitmapJson {
    return {
      format: "tsvmm.msr-bitmap/1",
      kind: this.kind,
      intercept: { read: this.interceptedRanges("read").map(formatRange), write: this.interceptedRanges("write").map(formatRange) },
    };
  }

  private segmentOf(msr: number): MsrSegment | undefined {
    for (const s of this.segments) if (msr >= s.first && msr < s.first + s.count) return s;
    return undefined;
  }

  /** First MSR of `r` that no segment covers, if any. */
  private uncoveredIn(r: IndexRange): number | undefined {
    let next = r.first;
    for (const s of [...this.segments].sort((a, b) => a.first - b.first)) {
      if (s.first + s.count <= next) continue;
      if (s.first > next) break;
      next = s.first + s.count;
      if (next > r.last) return undefined;
    }
    return next <= r.last ? next : undefined;
  }

  protected setRule(r: IndexRange, directions: readonly MsrDirection[], intercept: boolean): void {
    if (!intercept) {
      const bad = this.uncoveredIn(r);
      if (bad !== undefined) {
        throw new BitmapError(
          "MSR_NOT_COVERED",
          `MSR ${hex(bad)} (in ${formatRange(r)}) is outside the ${this.kind}'s ranges (${this.coverage.map(formatRange).join(", ")}); the CPU always intercepts it`,
        );
      }
    }
    for (const s of this.segments) {
      const lo = Math.max(r.first, s.first);
      const hi = Math.min(r.last, s.first + s.count - 1);
      if (lo <= hi) this.fillSegment(s, lo - s.first, hi - lo + 1, directions, intercept);
    }
  }

  private fillSegment(s: MsrSegment, offset: number, count: number, directions: readonly MsrDirection[], value: boolean): void {
    for (const d of directions) {
      const base = (d === "read" ? s.readBit : s.writeBit) + offset * s.stride;
      if (s.stride === 1) fillBits(this.page, base, count, value);
      else for (let i = 0; i < count; i++) setBit(this.page, base + i * s.stride, value);
    }
  }

  private spansOf(d: MsrDirection, intercepted: boolean): IntervalSet {
    const spans: Span[] = [];
    for (const s of this.segments) {
      const bit = d === "read" ? s.readBit : s.writeBit;
      for (const [a, b] of runsOf(this.page, bit, s.count, s.stride, intercepted)) spans.push([s.first + a, s.first + b]);
    }
    return IntervalSet.of(spans);
  }
}
