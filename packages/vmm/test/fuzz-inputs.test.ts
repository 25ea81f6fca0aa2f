import { TsvmmError } from "@tsvmm/abi";
import { parseTemplate, TEMPLATES } from "@tsvmm/cpuid";
import { parseTraceLine } from "@tsvmm/devices";
import { MsrPolicy } from "@tsvmm/msr-io-bitmaps";
import { parseVmConfig } from "@tsvmm/vmm";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

// Hostile inputs for every JSON the project reads from users (issue 14, "Fuzzing beyond ELF"):
// the VM config, CPUID templates, MSR policies and trace lines. Every case must end in a value or
// a typed error (a TsvmmError with a code) within a time bound; anything else is a bug.
// 10^5 cases per target in `npm test`; TSVMM_FUZZ_SCALE=10 (`npm run fuzz`) makes 10^6.

const SCALE = Number(process.env.TSVMM_FUZZ_SCALE ?? "1");
// A hang is a case that never ends; a loaded 2-core machine can pause a healthy one for a GC.
const CASE_MS = 5000;
const TEST_MS = 120_000 * SCALE;

interface Tally {
  ok: number;
  typed: number;
  codes: Set<string>;
}

function run(target: (input: unknown) => unknown, input: unknown, t: Tally): void {
  const t0 = performance.now();
  try {
    target(input);
    t.ok++;
  } catch (e) {
    if (!(e instanceof TsvmmError)) throw new Error(`untyped ${(e as Error)?.constructor?.name}: ${(e as Error)?.message} for ${safe(input)}`);
    t.typed++;
    t.codes.add(e.code);
  }
  const ms = performance.now() - t0;
  if (ms > CASE_MS) throw new Error(`${ms.toFixed(0)} ms for one case: ${safe(input)}`);
}

function safe(v: unknown): string {
  try {
    return JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? `${x}n` : x))?.slice(0, 300) ?? String(v);
  } catch {
    return String(v);
  }
}

/** Mutations of a valid JSON document: values replaced, keys dropped or added, types swapped. */
function mutated(valid: unknown): fc.Arbitrary<unknown> {
  const text = JSON.stringify(valid);
  const hostile = fc.oneof(
    fc.constant(null),
    fc.constant("__proto__"),
    fc.constant({ __proto__: { polluted: 1 } }),
    fc.integer(),
    fc.double(),
    fc.constant(Number.NaN),
    fc.constant(-1),
    fc.constant(2 ** 53),
    fc.string({ maxLength: 40 }),
    fc.array(fc.anything({ maxDepth: 2 }), { maxLength: 4 }),
    fc.anything({ maxDepth: 3 }),
  );
  return fc.oneof(
    fc.anything({ maxDepth: 4 }),
    fc.tuple(fc.array(fc.tuple(fc.nat(), hostile), { maxLength: 4 }), fc.array(fc.tuple(fc.string({ maxLength: 12 }), hostile), { maxLength: 3 })).map(([edits, extra]) => {
      const doc = JSON.parse(text) as Record<string, unknown>;
      const keys = Object.keys(doc);
      for (const [i, v] of edits) {
        if (keys.length === 0) break;
        const k = keys[i % keys.length]!;
        if (i % 7 === 0) delete doc[k];
        else doc[k] = v;
      }
      for (const [k, v] of extra) doc[k] = v;
      return doc;
    }),
    fc.tuple(fc.nat({ max: text.length }), fc.string({ maxLength: 8 })).map(([at, s]) => {
      const broken = text.slice(0, at) + s + text.slice(at);
      try {
        return JSON.parse(broken);
      } catch {
        return broken;
      }
    }),
  );
}

const N = 100_000 * SCALE;

describe(`fuzz: the JSON inputs users give (${N} cases each)`, () => {
  it("VM config", () => {
    const t: Tally = { ok: 0, typed: 0, codes: new Set() };
    const valid = { kernel: "k.elf", memoryMiB: 64, vcpus: 2, cmdline: "x", timeoutMs: 1000, disks: [{ path: "d", readOnly: true }], serial: { port: 1016, irq: 4 } };
    fc.assert(fc.property(mutated(valid), (input) => run((i) => parseVmConfig(i, "fuzz"), input, t)), { numRuns: N });
    expect(t.typed).toBeGreaterThan(N / 10);
    expect([...t.codes]).toEqual(["VMM_CONFIG_INVALID"]);
    console.log(`VM config: ${t.ok} valid, ${t.typed} typed errors, 0 untyped, 0 over ${CASE_MS} ms`);
  }, TEST_MS);

  it("CPUID templates", () => {
    const t: Tally = { ok: 0, typed: 0, codes: new Set() };
    const valid = JSON.parse(JSON.stringify(TEMPLATES["t2-like"]));
    fc.assert(fc.property(mutated(valid), (input) => run(parseTemplate, input, t)), { numRuns: N });
    expect(t.typed).toBeGreaterThan(N / 10);
  }, TEST_MS);

  it("MSR policy JSON", () => {
    const t: Tally = { ok: 0, typed: 0, codes: new Set() };
    const valid = MsrPolicy.fromDenyList([0x10, 0x174, 0x175, 0xc0000080]).toJSON();
    fc.assert(fc.property(mutated(valid), (input) => run((i) => MsrPolicy.fromJSON(i), input, t)), { numRuns: N });
    expect(t.typed).toBeGreaterThan(N / 10);
  }, TEST_MS);

  it("trace lines (replay input)", () => {
    const t: Tally = { ok: 0, typed: 0, codes: new Set() };
    const valid = { kind: "io", t: 5, vcpu: 0, dir: "write", addr: 1016, size: 1, data: "41" };
    const line = fc.oneof(
      mutated(valid).map((v) => (typeof v === "string" ? v : JSON.stringify(v) ?? "")),
      fc.string({ maxLength: 200 }),
    );
    fc.assert(fc.property(line, (text) => run((s) => parseTraceLine(s as string, 1), text, t)), { numRuns: N });
    expect(t.typed).toBeGreaterThan(N / 10);
    console.log(`trace lines: ${t.ok} parsed, ${t.typed} typed errors, 0 untyped, 0 over ${CASE_MS} ms`);
  }, TEST_MS);
});
