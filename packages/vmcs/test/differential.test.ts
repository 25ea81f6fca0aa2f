// The checker against a frozen copy of its pre-optimisation self (test/oracle, BigInt throughout):
// both must report the same violations, in the same order, with the same messages, on valid
// states, on one-rule mutations and on states with random fields overwritten by random or
// boundary values, for every profile, for capability objects that are not frozen (no cache) and
// for every environment flag.
import { GuestMemoryMap } from "@tsvmm/abi";
import { checkVmEntry, PROFILES, supportsMode, VMCS_FIELDS, type VmEntryEnv, type VmxCaps, validVmcsTemplate } from "@tsvmm/vmcs";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { anyBrokenVmcs, validVmcs } from "../src/arbitraries/index.js";
import { checkVmEntry as oracle } from "./oracle/index.js";

// 400 per property in `npm test`; TSVMM_FUZZ_SCALE (as in fuzz.test.ts) or TSVMM_DIFF_RUNS for long runs.
const RUNS = Number(process.env.TSVMM_DIFF_RUNS ?? 400 * Number(process.env.TSVMM_FUZZ_SCALE ?? "1"));
const profiles = Object.values(PROFILES);
const FULL = VMCS_FIELDS.filter((f) => f.access === "full");

function boundary(bits: number): fc.Arbitrary<bigint> {
  const max = (1n << BigInt(bits)) - 1n;
  const near = [0n, 1n, 2n, 3n, 4n, 7n, 8n, 0xfn, 0x10n, 0x3fn, 0x40n, 0xfffn, 0x1000n, 0xffffn, 0x1_0000n, 0xffff_ffffn, 0x1_0000_0000n, 0x7fff_ffff_ffffn, 0x8000_0000_0000n, 0xffff_8000_0000_0000n, 0xffff_7fff_ffff_ffffn, 0x00ff_ffff_ffff_ffffn, 0xff00_0000_0000_0000n, 0x0100_0000_0000_0000n, 0x8000_0000_0000_0000n, max];
  return fc.oneof(
    fc.bigInt({ min: 0n, max }),
    fc.constantFrom(...near).map((v) => v & max),
    fc.integer({ min: 0, max: bits - 1 }).map((b) => 1n << BigInt(b)),
    fc.tuple(fc.bigInt({ min: 0n, max }), fc.integer({ min: 0, max: bits - 1 })).map(([v, b]) => v ^ (1n << BigInt(b))),
  );
}

const overwrite = fc.tuple(fc.integer({ min: 0, max: FULL.length - 1 }), fc.integer({ min: 0, max: 0xffff })).chain(([i]) => {
  const f = FULL[i]!;
  return boundary(f.bits).map((v) => [f.name, v] as const);
});

/** A copy that is not frozen (so nothing is cached), with some CPU facts changed. */
const looseCaps: fc.Arbitrary<VmxCaps> = fc
  .record({
    p: fc.constantFrom(...profiles),
    maxPhysAddr: fc.integer({ min: 32, max: 52 }),
    flags: fc.array(fc.constantFrom("la57", "lam", "cet", "fred", "rtm", "intel64", "enclaveInterruption", "cetSs", "cetIbt", "nx", "busLockDetect"), { maxLength: 4 }),
    keep: fc.boolean(),
  })
  .map(({ p, maxPhysAddr, flags, keep }) => {
    const cpu: Record<string, unknown> = { ...p.cpu };
    if (!keep) cpu.maxPhysAddr = maxPhysAddr;
    for (const f of flags) cpu[f] = !cpu[f];
    return { name: p.name, msrs: { ...p.msrs }, cpu } as unknown as VmxCaps;
  });

function memoryEnv(): GuestMemoryMap {
  const m = GuestMemoryMap.allocate([{ base: 0, size: 0x4000 }]);
  for (let a = 0; a < 0x4000; a += 4) m.writeU32(a, (Math.imul(a, 0x9e3779b1) ^ (a >>> 3)) >>> 0);
  return m;
}
const MEMORY = memoryEnv();

const anyEnv: fc.Arbitrary<VmEntryEnv> = fc.record(
  {
    cpuInIa32e: fc.boolean(),
    inSmm: fc.boolean(),
    currentVmcsPointer: fc.constantFrom(0n, 0x1000n, 0xffff_ffff_ffff_ffffn),
    memory: fc.constant(MEMORY),
  },
  { requiredKeys: [] },
);

const same = (state: Parameters<typeof checkVmEntry>[0], caps: VmxCaps, env: VmEntryEnv): void => {
  expect(checkVmEntry(state, caps, env)).toEqual(oracle(state, caps, env));
};

describe("optimised checker = BigInt reference", () => {
  it("valid states of every profile", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...profiles).chain((p) => validVmcs(p).map((s) => [p, s] as const)),
        ([p, s]) => {
          expect(checkVmEntry(s, p)).toEqual([]);
          same(s, p, {});
        },
      ),
      { numRuns: RUNS },
    );
  });

  it("one-rule mutations (every catalogued id)", () => {
    fc.assert(
      fc.property(anyBrokenVmcs(), (b) => same(b.state, b.caps, b.env)),
      { numRuns: RUNS },
    );
  });

  it("random fields overwritten with random and boundary values, any caps and env", () => {
    const templates = profiles.flatMap((p) => (["real", "protected", "long"] as const).filter((m) => supportsMode(p, m)).map((m) => ({ p, m })));
    fc.assert(
      fc.property(
        fc.constantFrom(...templates),
        fc.array(overwrite, { minLength: 1, maxLength: 12 }),
        fc.oneof(fc.constant(undefined), looseCaps),
        anyEnv,
        ({ p, m }, writes, loose, env) => {
          const s = validVmcsTemplate(p, m);
          for (const [name, v] of writes) s.set(name, v);
          same(s, p, env);
          if (loose) same(s, loose, env);
        },
      ),
      { numRuns: RUNS * 5 },
    );
  });

  it("states with every field random", () => {
    fc.assert(
      fc.property(fc.constantFrom(...profiles), fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: FULL.length, maxLength: FULL.length }), fc.array(overwrite, { maxLength: 40 }), anyEnv, (p, seeds, writes, env) => {
        const s = validVmcsTemplate(p, "long");
        FULL.forEach((f, i) => {
          if (seeds[i]! & 1) s.set(f.name, BigInt(seeds[i]!) & ((1n << BigInt(f.bits)) - 1n));
        });
        for (const [name, v] of writes) s.set(name, v);
        same(s, p, env);
      }),
      { numRuns: RUNS },
    );
  });

  it("a run nested in another (env.memory calling the checker) does not disturb either", () => {
    const inner: { state: Parameters<typeof checkVmEntry>[0]; caps: VmxCaps }[] = [];
    let depth = 0;
    let nestedRuns = 0;
    // Only the three readers the checks use; each first runs the checker on another state.
    const reentrant = {
      readU8: (a: bigint) => {
        nest();
        return MEMORY.readU8(a);
      },
      readU32: (a: bigint) => {
        nest();
        return MEMORY.readU32(a);
      },
      readU64: (a: bigint) => {
        nest();
        return MEMORY.readU64(a);
      },
    } as unknown as NonNullable<VmEntryEnv["memory"]>;
    const nest = (): void => {
      if (depth > 0 || inner.length === 0) return;
      depth++;
      nestedRuns++;
      const { state, caps } = inner[inner.length - 1]!;
      expect(checkVmEntry(state, caps, { memory: reentrant })).toEqual(oracle(state, caps, {}));
      depth--;
    };
    fc.assert(
      fc.property(anyBrokenVmcs(), anyBrokenVmcs(), (outer, other) => {
        inner.push({ state: other.state, caps: other.caps });
        // A link pointer inside the memory makes the guest checks read it mid-run.
        const s = outer.state.clone();
        if (s.get("VMCS_LINK_POINTER") === 0xffff_ffff_ffff_ffffn) s.set("VMCS_LINK_POINTER", 0x1000n);
        expect(checkVmEntry(s, outer.caps, { ...outer.env, memory: reentrant })).toEqual(oracle(s, outer.caps, { ...outer.env, memory: MEMORY }));
        inner.pop();
      }),
      { numRuns: Math.max(50, RUNS >> 2) },
    );
    expect(nestedRuns).toBeGreaterThan(0);
  });
});
