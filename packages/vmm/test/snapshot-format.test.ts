import { decodeValue, encodeValue, nonZeroRuns } from "@tsvmm/vmm";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

describe("snapshot format helpers", () => {
  it("nonZeroRuns lists exactly the pages with a non-zero byte, as ascending runs that do not touch", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(79), fc.nat(4095), fc.integer({ min: 1, max: 255 })), { maxLength: 40 }), fc.nat(1000), (writes, base) => {
        const buf = Buffer.alloc(80 * 4096);
        for (const [page, off, v] of writes) buf[page * 4096 + off] = v;
        const runs = nonZeroRuns(buf, base);
        const expected = new Set(writes.map(([p]) => p + base));
        const listed: number[] = [];
        for (const [first, count] of runs) for (let p = first; p < first + count; p++) listed.push(p);
        expect(listed).toEqual([...expected].sort((a, b) => a - b));
        for (let i = 1; i < runs.length; i++) expect(runs[i]![0]).toBeGreaterThan(runs[i - 1]![0] + runs[i - 1]![1]);
      }),
      { numRuns: 300 },
    );
  });

  it("the state codec gives back bigints (signed and unsigned), bytes and plain values unchanged", () => {
    const value = fc.letrec((tie) => ({
      v: fc.oneof(
        { depthSize: "small" },
        fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }),
        fc.uint8Array({ maxLength: 32 }).map((u) => Buffer.from(u)),
        fc.integer(),
        fc.string(),
        fc.boolean(),
        fc.constant(null),
        fc.array(tie("v"), { maxLength: 4 }),
        fc.dictionary(fc.string().filter((k) => !k.startsWith("$") && k !== "__proto__"), tie("v"), { maxKeys: 4 }),
      ),
    })).v;
    fc.assert(
      fc.property(value, (v) => {
        const back = decodeValue(JSON.parse(JSON.stringify(encodeValue(v))));
        expect(back).toEqual(v);
      }),
      { numRuns: 500 },
    );
  });
});
