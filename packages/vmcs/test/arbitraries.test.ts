import { CHECKS, checkVmEntry, PROFILES, supportsMode } from "@tsvmm/vmcs";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { anyBrokenVmcs, brokenVmcs, validVmcs } from "../src/arbitraries/index.js";

describe("arbitraries", () => {
  for (const [name, caps] of Object.entries(PROFILES)) {
    for (const mode of ["real", "protected", "long"] as const) {
      if (!supportsMode(caps, mode)) continue;
      it(`every valid ${mode}-mode sample passes on ${name}`, () => {
        fc.assert(fc.property(validVmcs(caps, mode), (s) => {
          expect(checkVmEntry(s, caps)).toEqual([]);
        }), { numRuns: 40 });
      });
    }
  }

  it("a sample broken in check X reports X and only the checks implied by X", () => {
    fc.assert(
      fc.property(anyBrokenVmcs(), (b) => {
        const got = [...new Set(checkVmEntry(b.state, b.caps, b.env).map((v) => v.id))].sort();
        expect(got).toEqual([...b.expected].sort());
      }),
      { numRuns: 400 },
    );
  });

  it("covers every catalogued check", () => {
    for (const c of CHECKS) expect(() => brokenVmcs(c.id)).not.toThrow();
    expect(() => brokenVmcs("NOPE")).toThrow(expect.objectContaining({ code: "VMCS_UNKNOWN_CHECK" }));
  });

  it("shrinking yields a minimal counterexample for a buggy checker", () => {
    // A checker that forgets GUEST.RIP.CANONICAL: the property fails and fast-check shrinks the base state.
    const buggy = (ids: string[]) => ids.filter((i) => i !== "GUEST.RIP.CANONICAL");
    const r = fc.check(
      fc.property(brokenVmcs("GUEST.RIP.CANONICAL"), (b) => buggy(checkVmEntry(b.state, b.caps, b.env).map((v) => v.id)).length > 0),
      { numRuns: 50, seed: 42 },
    );
    expect(r.failed).toBe(true);
    const [b] = r.counterexample!;
    // Shrunk to the smallest bad RIP the mutation can produce (r = 0 → bit 63 alone).
    expect(b.state.get("GUEST_RIP")).toBe(0x8000_0000_0000_0000n);
  });
});
