// Fuzzing the two inputs users hand to this package from files: VMCS state JSON and capabilities
// JSON. Every input either parses or is refused with a VmcsError (never a TypeError, RangeError,
// SyntaxError or a hang), and whatever parses goes through checkVmEntry without throwing and with
// catalogued ids only. 10^5 cases in `npm test`; TSVMM_FUZZ_SCALE=10 (`npm run fuzz`) makes 10^6.
import { CHECKS, capsFromJSON, capsToJSON, checkVmEntry, PROFILES, supportsMode, VmcsError, type VmcsErrorCode, VmcsState, type VmxCaps, validVmcsTemplate } from "@tsvmm/vmcs";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";

const SCALE = Number(process.env.TSVMM_FUZZ_SCALE ?? "1");
const CASE_LIMIT_MS = 2000;
/** Per target; four targets make 10^5 per scale unit. */
const RUNS = 25_000 * SCALE;

const CODES: ReadonlySet<VmcsErrorCode> = new Set(["VMCS_UNKNOWN_FIELD", "VMCS_INVALID_ENCODING", "VMCS_VALUE_OUT_OF_RANGE", "VMCS_INVALID_JSON", "VMCS_INVALID_CAPS", "VMCS_UNKNOWN_PROFILE"]);
const IDS = new Set([...CHECKS.map((c) => c.id), "INPUT.INVALID_STATE", "INPUT.INVALID_CAPS"]);
const profiles = Object.values(PROFILES);

const seedsState: string[] = [];
for (const p of profiles) for (const m of ["real", "protected", "long"] as const) if (supportsMode(p, m)) seedsState.push(JSON.stringify(validVmcsTemplate(p, m).toJSON()));
const seedsCaps: string[] = profiles.flatMap((p) => [JSON.stringify(capsToJSON(p)), JSON.stringify({ base: p.name, cpu: { maxPhysAddr: 40 } })]);

const TOKENS = [
  '"',
  "{",
  "}",
  "[",
  "]",
  ",",
  ":",
  "0x",
  "-1",
  "1e400",
  "-0",
  "0.5",
  "null",
  "true",
  '""',
  "9007199254740993",
  '"0xffffffffffffffffffff"',
  '"0x"',
  '"-0x1"',
  '" 0x10 "',
  '"__proto__"',
  '"toString"',
  '"constructor"',
  '"GUEST_CR0"',
  '"0x6800"',
  '"0x6801"',
  '"0x2801"',
  '"fields"',
  '"msrs"',
  '"cpu"',
  '"base"',
  '"maxPhysAddr"',
  '"IA32_VMX_BASIC"',
  '"0x480"',
  '"full-featured"',
  "\\u0000",
  "\uffff",
];

type Edit = { kind: "flip"; pos: number; ch: number } | { kind: "cut"; pos: number; len: number } | { kind: "insert"; pos: number; tok: string };
const edit: fc.Arbitrary<Edit> = fc.oneof(
  fc.record({ kind: fc.constant("flip" as const), pos: fc.nat(), ch: fc.integer({ min: 0, max: 0x7f }) }),
  fc.record({ kind: fc.constant("cut" as const), pos: fc.nat(), len: fc.integer({ min: 1, max: 40 }) }),
  fc.record({ kind: fc.constant("insert" as const), pos: fc.nat(), tok: fc.constantFrom(...TOKENS) }),
);
function apply(text: string, edits: readonly Edit[]): string {
  let t = text;
  for (const e of edits) {
    const p = t.length === 0 ? 0 : e.pos % (t.length + 1);
    if (e.kind === "flip") t = t.slice(0, p) + String.fromCharCode(e.ch) + t.slice(p + 1);
    else if (e.kind === "cut") t = t.slice(0, p) + t.slice(p + e.len);
    else t = t.slice(0, p) + e.tok + t.slice(p);
  }
  return t;
}

const anyKey = fc.oneof(
  fc.constantFrom(...["GUEST_CR0", "GUEST_RIP", "VM_ENTRY_CONTROLS", "GUEST_IA32_EFER_HIGH", "0x6800", "0x2806", "0x2807", "0X6800", "0x1000", "toString", "__proto__", "constructor", "", "fields"]),
  fc.string({ maxLength: 12 }),
);
const hexOf = (b: bigint): string => `0x${b.toString(16)}`;
const anyValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.bigInt({ min: 0n, max: (1n << 70n) - 1n }).map(hexOf),
  fc.bigInt({ min: 0n, max: (1n << 70n) - 1n }).map((b) => b.toString()),
  fc.bigInt({ min: -(1n << 70n), max: 1n << 70n }),
  fc.double(),
  fc.integer(),
  fc.constantFrom(null, undefined, true, "", "0x", "-1", " 1", "1e3", Number.NaN, Number.POSITIVE_INFINITY, -0, [], {}, Symbol.iterator),
  fc.string({ maxLength: 8 }),
);

/** What a fuzz case did: parsed (with the violation count) or refused (with the error code). */
type Outcome = { ok: true; n: number } | { ok: false; code: string };
const tally = new Map<string, Map<string, number>>();
let slowest = 0;
function record(target: string, o: Outcome): void {
  const m = tally.get(target) ?? new Map<string, number>();
  const k = o.ok ? (o.n === 0 ? "accepted, entry succeeds" : "accepted, entry fails") : o.code;
  m.set(k, (m.get(k) ?? 0) + 1);
  tally.set(target, m);
}

/** Run one input; throws (failing the property) on anything but success or a VmcsError. */
function guarded(target: string, f: () => { state: VmcsState; caps: VmxCaps }): void {
  const t0 = performance.now();
  let o: Outcome;
  try {
    const { state, caps } = f();
    const v = checkVmEntry(state, caps);
    expect(Array.isArray(v)).toBe(true);
    for (const x of v) if (!IDS.has(x.id)) throw new Error(`unknown id ${x.id}`);
    o = { ok: true, n: v.length };
  } catch (e) {
    if (!(e instanceof VmcsError) || !CODES.has(e.code)) throw e;
    expect(e.message.length).toBeGreaterThan(0);
    o = { ok: false, code: e.code };
  }
  const dt = performance.now() - t0;
  slowest = Math.max(slowest, dt);
  if (dt > CASE_LIMIT_MS) throw new Error(`case took ${dt.toFixed(0)} ms`);
  record(target, o);
}

const caps0 = PROFILES["full-featured"]!;

describe(`fuzz: VMCS state and capabilities JSON (${4 * RUNS} cases)`, () => {
  afterAll(() => {
    const lines = [...tally].map(([t, m]) => `${t}: ${[...m].map(([k, n]) => `${k} ${n}`).join(", ")}`);
    console.log(`vmcs fuzz, slowest case ${slowest.toFixed(1)} ms\n${lines.join("\n")}`);
  });

  it("state JSON text, mutated from valid states", () => {
    fc.assert(
      fc.property(fc.constantFrom(...seedsState), fc.array(edit, { minLength: 1, maxLength: 6 }), (seed, edits) => {
        guarded("state-text", () => ({ state: VmcsState.fromJSON(apply(seed, edits)), caps: caps0 }));
      }),
      { numRuns: RUNS },
    );
    // Both outcomes must occur, or the mutations never reach the parser's interesting paths.
    expect(tally.get("state-text")!.size).toBeGreaterThan(2);
  }, 600_000);

  it("state JSON objects built from hostile keys and values", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.dictionary(anyKey, anyValue, { maxKeys: 6 }).map((fields) => ({ fields })),
          fc.dictionary(anyKey, anyValue, { maxKeys: 3 }),
          anyValue,
        ),
        (obj) => {
          guarded("state-object", () => ({ state: VmcsState.fromJSON(obj), caps: caps0 }));
        },
      ),
      { numRuns: RUNS },
    );
    expect(tally.get("state-object")!.size).toBeGreaterThan(2);
  }, 600_000);

  it("capabilities JSON text, mutated from every profile", () => {
    const state = validVmcsTemplate(caps0, "protected");
    fc.assert(
      fc.property(fc.constantFrom(...seedsCaps), fc.array(edit, { minLength: 1, maxLength: 6 }), (seed, edits) => {
        guarded("caps-text", () => ({ state, caps: capsFromJSON(apply(seed, edits)) }));
      }),
      { numRuns: RUNS },
    );
    expect(tally.get("caps-text")!.size).toBeGreaterThan(2);
  }, 600_000);

  it("capabilities JSON objects built from hostile keys and values", () => {
    const state = validVmcsTemplate(caps0, "long");
    const msrKey = fc.oneof(fc.constantFrom("IA32_VMX_BASIC", "IA32_VMX_CR0_FIXED0", "0x480", "0x48B", "0x493", "0x494", "toString", "__proto__"), fc.string({ maxLength: 10 }));
    const cpuKey = fc.oneof(fc.constantFrom("maxPhysAddr", "pcid", "pmuGpCounters", "fred", "cet", "toString", "valueOf", "maxphyaddr"), fc.string({ maxLength: 10 }));
    const capsObj = fc.record(
      {
        name: anyValue,
        base: fc.oneof(fc.constantFrom(...Object.keys(PROFILES), "toString", "__proto__", "nope"), anyValue),
        msrs: fc.oneof(fc.dictionary(msrKey, anyValue, { maxKeys: 4 }), anyValue),
        cpu: fc.oneof(fc.dictionary(cpuKey, anyValue, { maxKeys: 4 }), anyValue),
        extra: anyValue,
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(capsObj, (obj) => {
        guarded("caps-object", () => ({ state, caps: capsFromJSON(obj) }));
      }),
      { numRuns: RUNS },
    );
    expect(tally.get("caps-object")!.size).toBeGreaterThan(2);
  }, 600_000);
});
