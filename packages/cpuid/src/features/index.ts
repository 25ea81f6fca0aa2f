import { CpuidError } from "../errors.js";
import { CpuidTable, hex, type Register } from "../table.js";
import type { FeatureBit } from "./define.js";
import { EXT1_FEATURES, EXT1F_FEATURES, EXT7_FEATURES, EXT8_FEATURES, EXTA_FEATURES } from "./extended.js";
import { KVM_FEATURES } from "./kvm.js";
import { LEAF1_FEATURES } from "./leaf1.js";
import { LEAF6_FEATURES } from "./leaf6.js";
import { LEAF7_FEATURES } from "./leaf7.js";
import { LEAF14_FEATURES } from "./leaf14.js";
import { LEAF19_FEATURES } from "./leaf19.js";
import { LEAFD_FEATURES } from "./leafd.js";

export type { FeatureBit } from "./define.js";

/** Every named feature bit, in leaf order. */
export const FEATURES: readonly FeatureBit[] = Object.freeze([
  ...LEAF1_FEATURES,
  ...LEAF6_FEATURES,
  ...LEAF7_FEATURES,
  ...LEAFD_FEATURES,
  ...LEAF14_FEATURES,
  ...LEAF19_FEATURES,
  ...KVM_FEATURES,
  ...EXT1_FEATURES,
  ...EXT7_FEATURES,
  ...EXT8_FEATURES,
  ...EXTA_FEATURES,
  ...EXT1F_FEATURES,
]);

/** Other spellings people use, mapped to the canonical name. */
export const FEATURE_ALIASES: Readonly<Record<string, string>> = Object.freeze({
  sse3: "pni",
  lzcnt: "abm",
  sha: "sha_ni",
  pdcm_msr: "pdcm",
  constant_tsc: "invtsc",
  pt: "intel_pt",
  pclmul: "pclmulqdq",
  cet_ss: "shstk",
  cet_ibt: "ibt",
});

const BY_NAME = new Map<string, FeatureBit>(FEATURES.map((f) => [f.name, f]));
const regKey = (leaf: number, subleaf: number, reg: Register) => `${leaf}:${subleaf}:${reg}`;
const BY_REGISTER = new Map<string, FeatureBit[]>();
for (const f of FEATURES) {
  const k = regKey(f.leaf, f.subleaf, f.register);
  const list = BY_REGISTER.get(k) ?? [];
  list.push(f);
  BY_REGISTER.set(k, list);
}

/** The registers that hold named feature bits, each once, in leaf order. */
export const FEATURE_REGISTERS: readonly { leaf: number; subleaf: number; register: Register }[] = Object.freeze(
  [...BY_REGISTER.values()].map((l) => ({ leaf: l[0]!.leaf, subleaf: l[0]!.subleaf, register: l[0]!.register })),
);

/**
 * Where KVM's paravirtual leaves live. Hypervisors that also offer Hyper-V leaves move the KVM
 * ones up by 0x100, so every call that reads them can be told the base.
 */
export interface FeatureOptions {
  kvmBase?: number;
}

function place(f: FeatureBit, opts?: FeatureOptions): FeatureBit {
  const base = opts?.kvmBase ?? 0x40000000;
  if (base === 0x40000000 || f.leaf < 0x40000000 || f.leaf > 0x4fffffff) return f;
  return { ...f, leaf: base + (f.leaf - 0x40000000) };
}

/** The feature bit called `name` (aliases accepted). Throws CPUID_UNKNOWN_FEATURE. */
export function feature(name: string, opts?: FeatureOptions): FeatureBit {
  const canonical = FEATURE_ALIASES[name] ?? name;
  const f = BY_NAME.get(canonical);
  if (f === undefined) throw new CpuidError("CPUID_UNKNOWN_FEATURE", `no CPUID feature is called "${name}"`);
  return place(f, opts);
}

export function isFeatureName(name: string): boolean {
  return BY_NAME.has(FEATURE_ALIASES[name] ?? name);
}

/** The name of a bit, if it is a documented feature bit. */
export function featureAt(leaf: number, subleaf: number, register: Register, bit: number): string | undefined {
  return BY_REGISTER.get(regKey(leaf, subleaf, register))?.find((f) => f.bit === bit)?.name;
}

/** Mask of the documented feature bits in one register (0 for registers that hold none). */
export function featureMask(leaf: number, subleaf: number, register: Register): number {
  let m = 0;
  for (const f of BY_REGISTER.get(regKey(leaf, subleaf, register)) ?? []) m |= 1 << f.bit;
  return m >>> 0;
}

export function hasFeature(table: CpuidTable, name: string, opts?: FeatureOptions): boolean {
  const f = feature(name, opts);
  const regs = table.get(f.leaf, f.subleaf);
  return regs !== undefined && ((regs[f.register] >>> f.bit) & 1) === 1;
}

/** Sets or clears one named bit, creating a zero entry if the leaf is missing. */
export function setFeature(table: CpuidTable, name: string, on: boolean, opts?: FeatureOptions): CpuidTable {
  const f = feature(name, opts);
  const cur = table.get(f.leaf, f.subleaf)?.[f.register] ?? 0;
  const next = on ? (cur | (1 << f.bit)) >>> 0 : (cur & ~(1 << f.bit)) >>> 0;
  return table.setRegister(f.leaf, f.subleaf, f.register, next);
}

/** Names of every documented feature bit set in the table, in leaf order. */
export function decodeFeatures(table: CpuidTable, opts?: FeatureOptions): string[] {
  const out: string[] = [];
  for (const base of FEATURES) {
    const f = place(base, opts);
    const regs = table.get(f.leaf, f.subleaf);
    if (regs !== undefined && ((regs[f.register] >>> f.bit) & 1) === 1) out.push(f.name);
  }
  return out;
}

/**
 * Makes the table's documented feature bits exactly `names`: named bits set, every other
 * documented bit cleared, undocumented bits and non-feature registers untouched. Missing entries
 * are created (as zeros) only where a named bit needs them. Returns `into` (a new table by default).
 */
export function encodeFeatures(names: Iterable<string>, into?: CpuidTable, opts?: FeatureOptions): CpuidTable {
  const wanted = new Map<string, number>();
  for (const name of names) {
    const f = feature(name, opts);
    const k = regKey(f.leaf, f.subleaf, f.register);
    wanted.set(k, ((wanted.get(k) ?? 0) | (1 << f.bit)) >>> 0);
  }
  const table = into ?? new CpuidTable();
  for (const r of FEATURE_REGISTERS) {
    const p = place({ name: "", bit: 0, ...r }, opts);
    const k = regKey(p.leaf, p.subleaf, p.register);
    const bits = wanted.get(k) ?? 0;
    const cur = table.get(p.leaf, p.subleaf);
    if (cur === undefined && bits === 0) continue;
    const mask = featureMask(r.leaf, r.subleaf, r.register);
    const value = (((cur?.[p.register] ?? 0) & ~mask) | bits) >>> 0;
    table.setRegister(p.leaf, p.subleaf, p.register, value);
  }
  return table;
}

export function describeRegister(leaf: number, subleaf: number, register: Register): string {
  return `CPUID.${hex(leaf)}.${subleaf}.${register}`;
}
