// The checks read a state through slotWords(): after any sequence of set (full or _HIGH half),
// delete, clone and fromJSON, each slot's two words must be exactly the low and high 32 bits of
// the value get() returns.
import { fieldSlot, VMCS_FIELDS, VmcsState } from "@tsvmm/vmcs";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

const WRITABLE = VMCS_FIELDS.filter((f) => f.access === "full" || f.access === "high");
const FULL = VMCS_FIELDS.filter((f) => f.access === "full");

type Op = { kind: "set"; field: number; value: bigint } | { kind: "delete"; field: number } | { kind: "clone" } | { kind: "json" };

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: WRITABLE.length - 1 }).chain((i) => fc.bigInt({ min: 0n, max: (1n << BigInt(WRITABLE[i]!.bits)) - 1n }).map((value) => ({ kind: "set" as const, field: i, value }))) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: FULL.length - 1 }).map((i) => ({ kind: "delete" as const, field: i })) },
  { weight: 1, arbitrary: fc.constant({ kind: "clone" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "json" as const }) },
);

function wordsMatch(s: VmcsState): void {
  const w = s.slotWords();
  for (const f of FULL) {
    const slot = fieldSlot(f.name);
    const v = s.get(f.name);
    expect([w[2 * slot], w[2 * slot + 1]], f.name).toEqual([Number(v & 0xffff_ffffn), Number(v >> 32n)]);
    expect(s.getSlot(slot)).toBe(v);
  }
}

describe("VmcsState.slotWords", () => {
  it("mirrors every value through set, _HIGH writes, delete, clone and JSON", () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
        let s = new VmcsState();
        for (const o of ops) {
          if (o.kind === "set") s.set(WRITABLE[o.field]!.name, o.value);
          else if (o.kind === "delete") s.delete(FULL[o.field]!.name);
          else if (o.kind === "clone") s = s.clone();
          else s = VmcsState.fromJSON(JSON.stringify(s.toJSON()));
        }
        wordsMatch(s);
      }),
      { numRuns: 100 },
    );
  });

  it("a clone's words are its own", () => {
    const a = new VmcsState({ GUEST_RIP: 0xffff_8000_0000_1000n });
    const b = a.clone();
    b.set("GUEST_RIP", 1);
    wordsMatch(a);
    wordsMatch(b);
    expect(a.get("GUEST_RIP")).toBe(0xffff_8000_0000_1000n);
  });
});
