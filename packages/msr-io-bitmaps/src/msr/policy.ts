import { BitmapError } from "../errors.js";
import { formatRange, type IndexRange, parseRange } from "../hex.js";
import { IntervalSet } from "../intervals.js";
import { checkDirection, checkMsr, MSR_LIMIT, type MsrDirection, type MsrListEntry, normalizeEntry } from "./rules.js";

/** Anything that can say, for every MSR in the 32-bit space, whether each access is allowed. */
export interface MsrPolicySource {
  toPolicy(): MsrPolicy;
}

/** JSON form of an {@link MsrPolicy}: the allowed MSRs per direction, every other MSR is denied. */
export interface MsrPolicyJson {
  format: "tsvmm.msr-policy/1";
  allow: { read: string[]; write: string[] };
}

/**
 * Which RDMSR/WRMSR accesses a guest may perform without exiting, over the whole 32-bit MSR space
 * (unlike a hardware bitmap, which covers only some ranges). "Deny" means the access is intercepted.
 * Immutable: every operation returns a new policy.
 */
export class MsrPolicy implements MsrPolicySource {
  private readonly allowed: Readonly<Record<MsrDirection, IntervalSet>>;

  private constructor(read: IntervalSet, write: IntervalSet) {
    this.allowed = { read, write };
  }

  /** Builds a policy from the allowed MSR sets of each direction (half-open spans). */
  static fromAllowedSets(read: IntervalSet, write: IntervalSet): MsrPolicy {
    const all = IntervalSet.of([[0, MSR_LIMIT]]);
    return new MsrPolicy(read.intersection(all), write.intersection(all));
  }

  static allowAll(): MsrPolicy {
    const all = IntervalSet.of([[0, MSR_LIMIT]]);
    return new MsrPolicy(all, all);
  }

  static denyAll(): MsrPolicy {
    return new MsrPolicy(IntervalSet.EMPTY, IntervalSet.EMPTY);
  }

  /** Deny by default; allow exactly the listed accesses. */
  static fromAllowList(entries: Iterable<MsrListEntry>): MsrPolicy {
    return MsrPolicy.denyAll().allow(entries);
  }

  /** Allow by default; deny exactly the listed accesses. */
  static fromDenyList(entries: Iterable<MsrListEntry>): MsrPolicy {
    return MsrPolicy.allowAll().deny(entries);
  }

  /** A new policy that also allows the listed accesses. */
  allow(entries: Iterable<MsrListEntry>): MsrPolicy {
    return this.apply(entries, true);
  }

  /** A new policy that also denies the listed accesses. */
  deny(entries: Iterable<MsrListEntry>): MsrPolicy {
    return this.apply(entries, false);
  }

  private apply(entries: Iterable<MsrListEntry>, allow: boolean): MsrPolicy {
    const add: Record<MsrDirection, Array<readonly [number, number]>> = { read: [], write: [] };
    for (const e of entries) {
      const rule = normalizeEntry(e);
      for (const d of rule.directions) add[d].push([rule.range.first, rule.range.last + 1]);
    }
    const next = (d: MsrDirection): IntervalSet => {
      const delta = IntervalSet.of(add[d]);
      return allow ? this.allowed[d].union(delta) : this.allowed[d].difference(delta);
    };
    return new MsrPolicy(next("read"), next("write"));
  }

  allows(msr: number, direction: MsrDirection): boolean {
    return this.allowed[checkDirection(direction)].has(checkMsr(msr));
  }

  /** The allowed MSRs of one direction as an interval set (half-open spans). */
  allowedSet(direction: MsrDirection): IntervalSet {
    return this.allowed[checkDirection(direction)];
  }

  allowedRanges(direction: MsrDirection): IndexRange[] {
    return this.allowedSet(direction).toRanges();
  }

  deniedRanges(direction: MsrDirection): IndexRange[] {
    return this.allowedSet(direction).complement(MSR_LIMIT).toRanges();
  }

  /** Denies wherever either policy denies (the stricter combination). */
  union(other: MsrPolicySource): MsrPolicy {
    const o = other.toPolicy();
    return new MsrPolicy(this.allowed.read.intersection(o.allowed.read), this.allowed.write.intersection(o.allowed.write));
  }

  /** Denies only where both policies deny (the laxer combination). */
  intersection(other: MsrPolicySource): MsrPolicy {
    const o = other.toPolicy();
    return new MsrPolicy(this.allowed.read.union(o.allowed.read), this.allowed.write.union(o.allowed.write));
  }

  equals(other: MsrPolicySource): boolean {
    const o = other.toPolicy();
    return this.allowed.read.equals(o.allowed.read) && this.allowed.write.equals(o.allowed.write);
  }

  toPolicy(): MsrPolicy {
    return this;
  }

  toJSON(): MsrPolicyJson {
    return {
      format: "tsvmm.msr-policy/1",
      allow: { read: this.allowedRanges("read").map(formatRange), write: this.allowedRanges("write").map(formatRange) },
    };
  }

  static fromJSON(json: unknown): MsrPolicy {
    const j = json as Partial<MsrPolicyJson> | null;
    if (typeof j !== "object" || j === null || j.format !== "tsvmm.msr-policy/1") {
      throw new BitmapError("BITMAP_BAD_JSON", `not an MSR policy: expected format "tsvmm.msr-policy/1"`);
    }
    const allow = j.allow;
    if (typeof allow !== "object" || allow === null || !Array.isArray(allow.read) || !Array.isArray(allow.write)) {
      throw new BitmapError("BITMAP_BAD_JSON", `MSR policy: "allow" must be { read: string[], write: string[] }`);
    }
    const set = (list: unknown[], d: MsrDirection): IntervalSet =>
      IntervalSet.fromRanges(list.map((t, i) => parseRange(t, MSR_LIMIT - 1, `allow.${d}[${i}]`)));
    return new MsrPolicy(set(allow.read, "read"), set(allow.write, "write"));
  }
}
