import { CHECKS, checkVmrun, PROFILES, supportsMode } from "@tsvmm/svm";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { anyBrokenVmcb, brokenVmcb, mutationFor, validVmcb } from "../src/arbitraries/index.js";
import { validVmcbTemplate } from "../src/templates.js";

const SCALE = Number(process.env.TSVMM_FUZZ_SCALE ?? "1");

describe("arbitraries", () => {
  for (const [name, caps] of Object.entries(PROFILES)) {
    for (const mode of ["real", "protected", "long"] as const) {
      if (!supportsMode(caps, mode)) continue;
      it(`every valid ${mode}-mode sample passes on ${name}`, () => {
        fc.assert(fc.property(validVmcb(caps, mode), (s) => {
          expect(checkVmrun(s, caps)).toEqual([]);
        }), { numRuns: 40 * SCALE });
      });
    }
  }

  it("a sample broken in check X reports X and only the checks implied by X", () => {
    fc.assert(
      fc.property(anyBrokenVmcb(), (b) => {
        const got = [...new Set(checkVmrun(b.vmcb, b.caps, b.env).map((v) => v.id))].sort();
        expect(got).toEqual([...b.expected].sort());
      }),
      { numRuns: 400 * SCALE },
    );
  });

  it("covers every catalogued check", () => {
    for (const c of CHECKS) expect(() => brokenVmcb(c.id)).not.toThrow();
    expect(() => brokenVmcb("nope")).toThrow(expect.objectContaining({ code: "SVM_UNKNOWN_CHECK" }));
  });

  // A checker that forgets one rule: fast-check finds a counterexample and shrinks it to the
  // template with only the rule's mutation applied, at its simplest bad value (r = 0).
  it.each(CHECKS.map((c) => c.id))("shrinking %s leaves only the broken field", (id) => {
    const buggy = (ids: string[]) => ids.filter((i) => i !== id);
    const r = fc.check(fc.property(brokenVmcb(id), (b) => buggy(checkVmrun(b.vmcb, b.caps, b.env).map((v) => v.id)).length > 0), { numRuns: 30, seed: 42 });
    expect(r.failed).toBe(true);
    const [b] = r.counterexample!;
    const m = mutationFor(id);
    const expected = validVmcbTemplate(PROFILES[m.profile ?? "full-featured"]!, m.mode);
    m.apply(expected, 0);
    expect(b.vmcb.toJSON()).toEqual(expected.toJSON());
  });
});
