import { ATTRIB, CR0, CR4, EFER, encodeEvent, INTERCEPT_MISC2, NESTED_CTL } from "../bits.js";
import { SVM_FEATURE, type SvmCaps } from "../caps.js";
import type { VmrunEnv } from "../checks.js";
import type { VmcbState } from "../state.js";
import type { GuestMode } from "../templates.js";

/**
 * One way to break a valid VMCB in exactly one catalogued check. `apply` changes the fewest
 * fields that violate the rule (`r` is a random 16-bit value choosing among bad values; r = 0 is
 * the simplest); `also` lists checks the APM makes fail together with this one.
 */
export interface Mutation {
  mode: GuestMode;
  /** Profile the mutation needs (default "full-featured"). */
  profile?: string;
  /** Adjust the CPU facts (e.g. a CPU without nested paging). */
  caps?: (c: SvmCaps) => SvmCaps;
  env?: () => VmrunEnv;
  apply: (s: VmcbState, r: number) => void;
  also?: readonly string[];
}

const or = (s: VmcbState, f: string, bits: bigint): void => {
  s.set(f, s.get(f) | bits);
};
const andNot = (s: VmcbState, f: string, bits: bigint): void => {
  s.set(f, s.get(f) & ~bits);
};
const pick = <T>(r: number, xs: readonly T[]): T => xs[r % xs.length]!;
/** A bit in 63:32 (bit 32 when r = 0). */
const highBit = (r: number): bigint => 1n << BigInt(32 + (r % 32));
/** Nested paging on with a valid nCR3 (the template's CR3 page). */
function np(s: VmcbState): void {
  or(s, "control.nestedCtl", NESTED_CTL.NP_ENABLE);
  s.set("control.nCr3", 0x3000n);
}
function inject(s: VmcbState, vector: number, type: number): void {
  s.set("control.eventInj", encodeEvent({ vector, type }));
}
const withCpu =
  (patch: Partial<SvmCaps["cpu"]>) =>
  (c: SvmCaps): SvmCaps => ({ ...c, name: `${c.name}*`, cpu: { ...c.cpu, ...patch } });
const withoutFeature =
  (bit: number) =>
  (c: SvmCaps): SvmCaps => ({ ...c, name: `${c.name}*`, svm: { ...c.svm, features: (c.svm.features & ~(1 << bit)) >>> 0 } });

/** Exception vectors that are reserved on every CPU (APM vol. 2 table 8-1), and NMI. */
const BAD_VECTORS = [2, 9, 15, 20, 22, 23, 24, 25, 26, 27, 31, 32, 0x80, 0xff] as const;

export const MUTATIONS: Readonly<Record<string, Mutation>> = {
  "svm.ctrl.vmrun-intercept": { mode: "long", apply: (s) => s.set("control.interceptMisc2", Number(s.get("control.interceptMisc2")) & ~INTERCEPT_MISC2.VMRUN) },
  "svm.ctrl.asid-zero": { mode: "long", apply: (s) => s.set("control.guestAsid", 0) },
  // Full-featured MAXPHYADDR is 52: a base in the last IOPM_SIZE bytes below 2^52, or above it.
  "svm.ctrl.iopm-base": { mode: "long", apply: (s, r) => s.set("control.iopmBasePa", pick(r, [(1n << 52n) - 0x2000n, 1n << 52n, (1n << 63n) | 0x1000n, (1n << 52n) - 0x1000n + BigInt(r & 0xfff)])) },
  "svm.ctrl.msrpm-base": { mode: "long", apply: (s, r) => s.set("control.msrpmBasePa", pick(r, [(1n << 52n) - 0x1000n, 1n << 52n, 1n << 60n, ((1n << 52n) - 0x1000n) | BigInt(r & 0xfff)])) },
  "svm.ctrl.eventinj-type": { mode: "long", apply: (s, r) => inject(s, r & 0xff, pick(r >> 8, [1, 5, 6, 7])) },
  "svm.ctrl.eventinj-vector": { mode: "long", apply: (s, r) => inject(s, pick(r, BAD_VECTORS), 3) },
  "svm.ctrl.eventinj-reserved": { mode: "long", apply: (s, r) => s.set("control.eventInj", encodeEvent({ vector: 0x20, type: 0 }) | (1n << BigInt(12 + (r % 19)))) },
  "svm.ctrl.np-unsupported": { mode: "long", caps: withoutFeature(SVM_FEATURE.NP), apply: (s) => np(s) },
  "svm.ctrl.np-host-paging": { mode: "long", env: () => ({ hostPaging: false }), apply: (s) => np(s) },
  "svm.ctrl.np-ncr3": { mode: "long", apply: (s, r) => { np(s); s.set("control.nCr3", 0x3000n | (1n << BigInt(52 + (r % 12)))); } },
  "svm.save.gpat": { mode: "long", apply: (s, r) => { np(s); s.set("save.gPat", (s.get("save.gPat") & ~(0xffn << BigInt(8 * (r % 8)))) | (BigInt(pick(r >> 3, [2, 3, 8, 0x10, 0xff])) << BigInt(8 * (r % 8)))); } },
  "svm.save.efer-svme": { mode: "long", apply: (s) => andNot(s, "save.efer", EFER.SVME) },
  "svm.save.efer-mbz": { mode: "long", apply: (s, r) => or(s, "save.efer", 1n << BigInt(pick(r, [1, 2, 9, 16, 19, 22, 31, 32, 63]))) },
  "svm.save.efer-lm-unsupported": { mode: "protected", caps: withCpu({ longMode: false }), apply: (s, r) => or(s, "save.efer", pick(r, [EFER.LME, EFER.LMA, EFER.LME | EFER.LMA])) },
  "svm.save.cr0-cd-nw": { mode: "long", apply: (s) => { andNot(s, "save.cr0", CR0.CD); or(s, "save.cr0", CR0.NW); } },
  "svm.save.cr0-high": { mode: "long", apply: (s, r) => or(s, "save.cr0", highBit(r)) },
  "svm.save.cr3-mbz": { mode: "long", apply: (s, r) => or(s, "save.cr3", 1n << BigInt(52 + (r % 12))) },
  "svm.save.cr4-mbz": { mode: "long", apply: (s, r) => or(s, "save.cr4", 1n << BigInt(pick(r, [13, 14, 15, 19, 24, 25, 28, 31, 32, 63]))) },
  "svm.save.dr6-high": { mode: "long", apply: (s, r) => or(s, "save.dr6", highBit(r)) },
  "svm.save.dr7-high": { mode: "long", apply: (s, r) => or(s, "save.dr7", highBit(r)) },
  "svm.save.lme-pg-no-pae": { mode: "long", apply: (s) => andNot(s, "save.cr4", CR4.PAE) },
  "svm.save.lme-pg-no-pe": { mode: "long", apply: (s) => andNot(s, "save.cr0", CR0.PE) },
  "svm.save.lme-pg-pae-cs-ld": { mode: "long", apply: (s) => s.set("save.cs.attrib", Number(s.get("save.cs.attrib")) | ATTRIB.DB) },
  "svm.save.cr4-cet-wp": { mode: "long", apply: (s) => { or(s, "save.cr4", CR4.CET); andNot(s, "save.cr0", CR0.WP); } },
  "svm.save.s-cet-mbz": { mode: "long", apply: (s, r) => s.set("save.sCet", 1n << BigInt(2 + (r % 62))) },
};
