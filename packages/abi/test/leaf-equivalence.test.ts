// abi's integer leaves (u8/u16/u32/s32) take a fast path for in-bounds, in-range integers and hand
// everything else to Node's Buffer methods: whatever the input, they must give buffer-layout's
// values, bytes and errors, i.e. exactly what Buffer.readUIntLE/readIntLE/writeUIntLE/writeIntLE do.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type AnyLayout, s32, u8, u16, u32 } from "../src/layout.js";

type Leaf = { name: string; l: AnyLayout; span: number; read: (b: Buffer, o: number) => number; write: (b: Buffer, v: unknown, o: number) => void };
const leaves: Leaf[] = [
  { name: "u8", l: u8("x"), span: 1, read: (b, o) => b.readUIntLE(o, 1), write: (b, v, o) => b.writeUIntLE(v as number, o, 1) },
  { name: "u16", l: u16("x"), span: 2, read: (b, o) => b.readUIntLE(o, 2), write: (b, v, o) => b.writeUIntLE(v as number, o, 2) },
  { name: "u32", l: u32("x"), span: 4, read: (b, o) => b.readUIntLE(o, 4), write: (b, v, o) => b.writeUIntLE(v as number, o, 4) },
  { name: "s32", l: s32("x"), span: 4, read: (b, o) => b.readIntLE(o, 4), write: (b, v, o) => b.writeIntLE(v as number, o, 4) },
];
const outcome = (f: () => unknown): unknown => {
  try {
    return f();
  } catch (e) {
    return `${(e as Error).name}:${(e as { code?: string }).code}:${(e as Error).message}`;
  }
};
const offsets = fc.oneof(fc.integer({ min: -2, max: 10 }), fc.constantFrom(1.5, Number.NaN));
const values = fc.oneof(fc.integer({ min: -(2 ** 33), max: 2 ** 33 }), fc.constantFrom(-0, 1.5, -1.5, Number.NaN, Number.POSITIVE_INFINITY, "12", 12n, null, undefined, 2 ** 32 - 1, 2 ** 31, -(2 ** 31)));

describe.each(leaves)("$name", ({ l, read, write }) => {
  it("decodes as Buffer reads, errors included", () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 8, maxLength: 8 }), offsets, (raw, o) => {
      const b = Buffer.from(raw);
      expect(outcome(() => l.decode(b, o))).toEqual(outcome(() => read(b, o)));
    }), { numRuns: 1000 });
  });
  it("encodes as Buffer writes: same bytes, same errors", () => {
    fc.assert(fc.property(values, offsets, (v, o) => {
      const mine = Buffer.alloc(8, 0xaa);
      const theirs = Buffer.alloc(8, 0xaa);
      const encoded = outcome(() => {
        l.encode(v, mine, o);
        return "ok";
      });
      const written = outcome(() => {
        write(theirs, v, o);
        return "ok";
      });
      expect(encoded).toEqual(written);
      expect(mine.equals(theirs)).toBe(true);
    }), { numRuns: 1000 });
  });
});
