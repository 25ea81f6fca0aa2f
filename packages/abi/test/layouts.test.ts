import type { Layout } from "@solana/buffer-layout";
import { ALL_RUN_EXITS, ALL_STRUCTS, KvmRegsLayout, KvmSegmentLayout, type StructLayout } from "@tsvmm/abi";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

// An arbitrary for any layout, derived from the layout tree itself, so every struct abi declares is
// covered without a second description of its fields.
type Node = Layout<unknown> & { fields?: Node[]; elementLayout?: Node; count?: number; property?: string };
function arb(l: Node): fc.Arbitrary<unknown> {
  const name = l.constructor.name;
  if (l.fields) {
    const rec: Record<string, fc.Arbitrary<unknown>> = {};
    for (const f of l.fields) if (f.property !== undefined) rec[f.property] = arb(f);
    return fc.record(rec);
  }
  if (l.elementLayout && typeof l.count === "number") return fc.array(arb(l.elementLayout), { minLength: l.count, maxLength: l.count });
  if (name === "U64") return fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
  if (name === "S64") return fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n });
  if (name === "Bytes") return fc.uint8Array({ minLength: l.span, maxLength: l.span }).map((a) => Buffer.from(a));
  if (name === "UInt") return fc.integer({ min: 0, max: 2 ** (8 * l.span) - 1 });
  if (name === "Int") return fc.integer({ min: -(2 ** (8 * l.span - 1)), max: 2 ** (8 * l.span - 1) - 1 });
  throw new Error(`no arbitrary for ${name}`);
}

const all = [...ALL_STRUCTS, ...ALL_RUN_EXITS] as StructLayout<unknown>[];

describe("every layout round-trips exactly", () => {
  for (const s of all) {
    it(`${s.cType}: decode(encode(v)) == v, and encode(decode(bytes)) is stable`, () => {
      fc.assert(
        fc.property(arb(s.layout as Node), (v) => {
          const bytes = s.encode(v);
          expect(bytes.length).toBe(s.size);
          expect(s.decode(bytes)).toEqual(v);
        }),
        { numRuns: 60 },
      );
      fc.assert(
        fc.property(fc.uint8Array({ minLength: s.size, maxLength: s.size }), (raw) => {
          const v = s.decode(raw);
          const again = s.encode(v);
          expect(s.decode(again)).toEqual(v);
        }),
        { numRuns: 30 },
      );
    });
  }
});

describe("encode rejects what does not fit", () => {
  it("values out of a field's range are LayoutError, never silently truncated", () => {
    const regs = KvmRegsLayout.decode(Buffer.alloc(KvmRegsLayout.size));
    expect(() => KvmRegsLayout.encode({ ...regs, rip: 2n ** 64n })).toThrowError(expect.objectContaining({ code: "LAYOUT_VALUE_OUT_OF_RANGE" }));
    expect(() => KvmRegsLayout.encode({ ...regs, rip: -1n })).toThrowError(expect.objectContaining({ code: "LAYOUT_VALUE_OUT_OF_RANGE" }));
    const seg = KvmSegmentLayout.decode(Buffer.alloc(KvmSegmentLayout.size));
    expect(() => KvmSegmentLayout.encode({ ...seg, selector: 0x10000 })).toThrowError(expect.objectContaining({ code: "LAYOUT_VALUE_OUT_OF_RANGE" }));
  });
  it("short buffers are LAYOUT_BUFFER_TOO_SMALL", () => {
    expect(() => KvmRegsLayout.decode(Buffer.alloc(KvmRegsLayout.size - 1))).toThrowError(expect.objectContaining({ code: "LAYOUT_BUFFER_TOO_SMALL" }));
    expect(() => KvmRegsLayout.decode(Buffer.alloc(KvmRegsLayout.size), 1)).toThrowError(expect.objectContaining({ code: "LAYOUT_BUFFER_TOO_SMALL" }));
  });
});
