import {
  KVM_MSR_FILTER_DEFAULT_ALLOW,
  KVM_MSR_FILTER_DEFAULT_DENY,
  KVM_MSR_FILTER_MAX_BITMAP_SIZE,
  KVM_MSR_FILTER_MAX_NMSRS,
  KVM_MSR_FILTER_MAX_RANGES,
  KVM_MSR_FILTER_READ,
  KVM_MSR_FILTER_WRITE,
  type KvmMsrFilter,
  KvmMsrFilterError,
  kvmBitmapBytes,
  validateKvmMsrFilter,
} from "@tsvmm/abi";
import { fillBits } from "../bits.js";
import { formatRange, hex } from "../hex.js";
import { IntervalSet, type Span } from "../intervals.js";
import type { MsrPolicy, MsrPolicySource } from "../msr/policy.js";
import { MSR_LIMIT } from "../msr/rules.js";

const RW = KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE;
/**
 * kvm_msr_allowed() computes a range's end as base + nmsrs in u32, so a range reaching MSR
 * 0xFFFFFFFF wraps to end 0 and never matches: ranges must end at or below this, and MSR
 * 0xFFFFFFFF always gets the default action.
 */
const RANGE_LIMIT = MSR_LIMIT - 1;
const LAST_MSR = MSR_LIMIT - 1;
/** kvm_msr_allowed() returns true for 0x800-0x8FF before looking at any filter. */
export const X2APIC_MSRS: Span = [0x800, 0x900];

export type KvmDefaultAction = "allow" | "deny";

export interface ToKvmMsrFilterOptions {
  /** The filter's default action; "auto" (the default) picks whichever needs fewer ranges. */
  defaultAction?: KvmDefaultAction | "auto";
  /**
   * KVM never filters the x2APIC MSRs 0x800-0x8FF. "encode" (default) writes the policy's bits for
   * them anyway; "dont-care" lets the planner ignore them to save ranges; "error" throws
   * KVM_MSR_FILTER_X2APIC_UNFILTERABLE if the policy denies any of them.
   */
  x2apic?: "encode" | "dont-care" | "error";
}


interface PlannedRange {
  flags: number;
  start: number;
  end: number;
}

/** Collects planned ranges, keeping only the first `cap` but counting them all. */
class Plan {
  count = 0;
  readonly ranges: PlannedRange[] = [];
  constructor(private readonly cap: number) {}

  add(flags: number, start: number, end: number): void {
    this.count++;
    if (this.ranges.length < this.cap) this.ranges.push({ flags, start, end });
  }

  /** `k` back-to-back full-length ranges from `start`. */
  addFull(flags: number, start: number, k: number): void {
    for (let i = 0; i < k && this.ranges.length < this.cap; i++) {
      const s = start + i * KVM_MSR_FILTER_MAX_NMSRS;
      this.ranges.push({ flags, start: s, end: s + KVM_MSR_FILTER_MAX_NMSRS });
    }
    this.count += k;
  }
}

/** End of the stretch from `x` over which membership in `s` does not change. */
function stretchEnd(s: IntervalSet, x: number): number {
  const sp = s.spans[s.indexAtOrAfter(x)];
  if (sp === undefined) return RANGE_LIMIT;
  return Math.min(RANGE_LIMIT, sp[0] <= x ? sp[1] : sp[0]);
}

/**
 * Covers `a` (the MSRs whose read decision differs from the default) and `b` (the same for write)
 * with ranges of at most KVM_MSR_FILTER_MAX_NMSRS MSRs. Greedy from the left: start a range at the
 * first uncovered MSR and make it as long as allowed — optimal for covering points with
 * fixed-length windows. A range serves both directions (one bitmap) only where the read and write
 * decisions agree, so `joint` tries read+write windows and `separate` per-direction windows.
 */
function planJoint(a: IntervalSet, b: IntervalSet, cap: number): Plan {
  const plan = new Plan(cap);
  const u = a.union(b);
  const L = KVM_MSR_FILTER_MAX_NMSRS;
  let x = u.nextMember(0);
  while (x !== undefined) {
    const inA = a.has(x);
    const inB = b.has(x);
    const h = Math.min(stretchEnd(a, x), stretchEnd(b, x));
    const k = Math.floor((h - x) / L);
    if (k > 0) {
      // Whole windows inside a stretch where both sets are constant: one range each.
      plan.addFull(inA && inB ? RW : inA ? KVM_MSR_FILTER_READ : KVM_MSR_FILTER_WRITE, x, k);
      x = u.nextMember(x + k * L);
      continue;
    }
    const end = Math.min(x + L, RANGE_LIMIT);
    const ca = a.clip(x, end);
    const cb = b.clip(x, end);
    if (ca.equals(cb)) {
      plan.add(RW, x, ca.prevMember(end)! + 1);
    } else {
      if (!ca.isEmpty) plan.add(KVM_MSR_FILTER_READ, ca.nextMember(x)!, ca.prevMember(end)! + 1);
      if (!cb.isEmpty) plan.add(KVM_MSR_FILTER_WRITE, cb.nextMember(x)!, cb.prevMember(end)! + 1);
    }
    x = end >= RANGE_LIMIT ? undefined : u.nextMember(end);
  }
  return plan;
}

function planOne(s: IntervalSet, flags: number, plan: Plan): void {
  const L = KVM_MSR_FILTER_MAX_NMSRS;
  let x = s.nextMember(0);
  while (x !== undefined) {
    const k = Math.floor((stretchEnd(s, x) - x) / L);
    if (k > 0) {
      plan.addFull(flags, x, k);
      x = s.nextMember(x + k * L);
      continue;
    }
    const end = Math.min(x + L, RANGE_LIMIT);
    plan.add(flags, x, s.prevMember(end)! + 1);
    x = end >= RANGE_LIMIT ? undefined : s.nextMember(end);
  }
}

function planSeparate(a: IntervalSet, b: IntervalSet, cap: number): Plan {
  const plan = new Plan(cap);
  planOne(a, KVM_MSR_FILTER_READ, plan);
  planOne(b, KVM_MSR_FILTER_WRITE, plan);
  return plan;
}

function planFor(policy: MsrPolicy, def: KvmDefaultAction, ignore: IntervalSet): Plan {
  // The MSRs whose decision differs from the default must lie in some range.
  const exceptions = (allowed: IntervalSet) => (def === "deny" ? allowed : allowed.complement(MSR_LIMIT)).difference(ignore);
  const a = exceptions(policy.allowedSet("read"));
  const b = exceptions(policy.allowedSet("write"));
  if (a.has(LAST_MSR) || b.has(LAST_MSR)) {
    // No range can reach MSR 0xFFFFFFFF, so this default cannot express the policy there.
    const never = new Plan(0);
    never.count = Number.POSITIVE_INFINITY;
    return never;
  }
  const joint = planJoint(a, b, KVM_MSR_FILTER_MAX_RANGES);
  const separate = planSeparate(a, b, KVM_MSR_FILTER_MAX_RANGES);
  return separate.count < joint.count ? separate : joint;
}

/** How many ranges each default action needs for this policy (before KVM's limit of 16 applies). */
export function kvmMsrFilterRangesNeeded(source: MsrPolicySource, options: Pick<ToKvmMsrFilterOptions, "x2apic"> = {}): Record<KvmDefaultAction, number> {
  const policy = source.toPolicy();
  const ignore = options.x2apic === "dont-care" ? IntervalSet.of([X2APIC_MSRS]) : IntervalSet.EMPTY;
  const deny = planFor(policy, "deny", ignore).count;
  return { allow: planFor(policy, "allow", ignore).count, deny: Math.max(deny, 1) };
}

/**
 * The `kvm_msr_filter` (for KVM_X86_SET_MSR_FILTER) that allows exactly what the policy or bitmap
 * allows, with as few ranges as this planner finds. Note KVM's bitmap polarity: 1 = ALLOW, the
 * opposite of a VMX/SVM bitmap. Throws KVM_MSR_FILTER_TOO_MANY_RANGES when it needs more than 16.
 */
export function toKvmMsrFilter(source: MsrPolicySource, options: ToKvmMsrFilterOptions = {}): KvmMsrFilter {
  const policy = source.toPolicy();
  const x2apic = options.x2apic ?? "encode";
  if (x2apic === "error") {
    for (const d of ["read", "write"] as const) {
      const denied = IntervalSet.of([X2APIC_MSRS]).difference(policy.allowedSet(d));
      if (!denied.isEmpty) {
        throw new KvmMsrFilterError(
          "KVM_MSR_FILTER_X2APIC_UNFILTERABLE",
          `the policy denies ${d} of x2APIC MSR(s) ${denied.toRanges().map(formatRange).join(", ")}, but KVM never filters 0x800-0x8ff`,
        );
      }
    }
  }
  const ignore = x2apic === "dont-care" ? IntervalSet.of([X2APIC_MSRS]) : IntervalSet.EMPTY;
  const choice = options.defaultAction ?? "auto";
  const plans = {
    allow: choice === "deny" ? undefined : planFor(policy, "allow", ignore),
    deny: choice === "allow" ? undefined : planFor(policy, "deny", ignore),
  };
  let def: KvmDefaultAction;
  if (plans.allow && plans.deny) def = plans.allow.count < plans.deny.count ? "allow" : "deny";
  else def = plans.allow ? "allow" : "deny";
  const plan = plans[def]!;

  if (plan.count === Number.POSITIVE_INFINITY) {
    throw new KvmMsrFilterError(
      "KVM_MSR_FILTER_UNREPRESENTABLE",
      choice === "auto"
        ? "this MSR policy treats reads and writes of MSR 0xffffffff differently; no kvm_msr_filter can, since KVM's ranges cannot reach 0xffffffff and it always gets the default action"
        : `with default ${def}, MSR 0xffffffff would be ${def === "allow" ? "allowed" : "denied"}, but the policy says otherwise; KVM's ranges cannot reach 0xffffffff`,
    );
  }
  if (plan.count > KVM_MSR_FILTER_MAX_RANGES) {
    const other = def === "allow" ? plans.deny : plans.allow;
    const also = other
      ? `; with default ${def === "allow" ? "deny" : "allow"} it ${other.count === Number.POSITIVE_INFINITY ? "cannot be expressed" : `needs ${other.count}`}`
      : "";
    throw new KvmMsrFilterError(
      "KVM_MSR_FILTER_TOO_MANY_RANGES",
      `this MSR policy needs ${plan.count} kvm_msr_filter ranges with default ${def}${also}; KVM accepts at most ${KVM_MSR_FILTER_MAX_RANGES} (each up to ${hex(KVM_MSR_FILTER_MAX_NMSRS)} MSRs)`,
      plan.count,
    );
  }

  const ranges = plan.ranges.map(({ flags, start, end }) => {
    const nmsrs = end - start;
    const bitmap = Buffer.alloc(kvmBitmapBytes(nmsrs));
    // Both directions agree inside a READ|WRITE range, so the read set describes it.
    const allowed = policy.allowedSet(flags & KVM_MSR_FILTER_READ ? "read" : "write").clip(start, end);
    for (const [s, e] of allowed.spans) fillBits(bitmap, s - start, e - s, true);
    return { flags, base: start, nmsrs, bitmap };
  });
  if (def === "deny" && ranges.length === 0) {
    // Deny-everything: KVM refuses a default-deny filter with no ranges, so add one that denies MSR 0.
    ranges.push({ flags: RW, base: 0, nmsrs: 1, bitmap: Buffer.alloc(8) });
  }
  return { flags: def === "deny" ? KVM_MSR_FILTER_DEFAULT_DENY : KVM_MSR_FILTER_DEFAULT_ALLOW, ranges };
}


// One validator and one error class for KVM's MSR filter rules: abi's, re-exported here.
export { KVM_MSR_FILTER_MAX_BITMAP_SIZE, KVM_MSR_FILTER_MAX_NMSRS, kvmBitmapBytes, validateKvmMsrFilter };
