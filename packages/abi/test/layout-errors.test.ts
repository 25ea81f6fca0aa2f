import { array, bytes, defineStruct, KvmDebugregsLayout, KvmRegsLayout, KvmSregsLayout, LayoutError, nested, s64, u8, u32 } from "@tsvmm/abi";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

// The defineStruct layer's refusals: what a caller gets for a bad path, a value that does not fit
// or a buffer that is too short, each as a typed LayoutError.

const Inner = defineStruct<{ a: number; b: number }>("struct inner", [u8("a"), u32("b")]);
const Outer = defineStruct<{ tag: number; in: { a: number; b: number }; s: bigint[]; raw: Buffer }>("struct outer", [
  u32("tag"),
  nested(Inner, "in"),
  array(s64(""), 2, "s"),
  bytes(6, "raw"),
]);
const zero = () => Outer.decode(Buffer.alloc(Outer.size));
const err = (f: () => unknown): { code: string; message: string } => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(LayoutError);
    return { code: (e as LayoutError).code, message: (e as LayoutError).message };
  }
  throw new Error("did not throw");
};

describe("offsetOf", () => {
  it("walks dotted paths into nested structs (buffer-layout packs: no C alignment)", () => {
    expect([Outer.offsetOf("tag"), Outer.offsetOf("in"), Outer.offsetOf("in.a"), Outer.offsetOf("in.b"), Outer.offsetOf("s"), Outer.offsetOf("raw")]).toEqual([0, 4, 4, 5, 9, 25]);
    expect(Outer.size).toBe(31);
    expect(KvmSregsLayout.offsetOf("cs.selector")).toBe(KvmSregsLayout.offsetOf("cs") + 12);
  });
  it("an unknown field, or a path into a field that is not a struct, is LAYOUT_VALUE_OUT_OF_RANGE naming the path", () => {
    expect(err(() => Outer.offsetOf("nope"))).toEqual({ code: "LAYOUT_VALUE_OUT_OF_RANGE", message: "struct outer: no field nope" });
    expect(err(() => Outer.offsetOf("in.c"))).toEqual({ code: "LAYOUT_VALUE_OUT_OF_RANGE", message: "struct outer: no field in.c" });
    expect(err(() => Outer.offsetOf("tag.x"))).toEqual({ code: "LAYOUT_VALUE_OUT_OF_RANGE", message: "struct outer: no field tag.x" });
    expect(err(() => Outer.offsetOf("in.a.x")).code).toBe("LAYOUT_VALUE_OUT_OF_RANGE");
  });
});

describe("encode", () => {
  it("s64 holds exactly -2^63..2^63-1 and round-trips", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), (v) => {
        expect(Outer.decode(Outer.encode({ ...zero(), s: [v, -v - 1n] })).s).toEqual([v, -v - 1n]);
      }),
      { numRuns: 300 },
    );
    for (const bad of [2n ** 63n, -(2n ** 63n) - 1n, 5 as unknown as bigint]) {
      expect(err(() => Outer.encode({ ...zero(), s: [0n, bad] }))).toEqual({ code: "LAYOUT_VALUE_OUT_OF_RANGE", message: `s64: ${String(bad)} is not an s64 bigint` });
    }
  });
  it("an out-of-range element of an unnamed u64 array is named by its type, not by an empty name", () => {
    const d = KvmDebugregsLayout.decode(Buffer.alloc(KvmDebugregsLayout.size));
    expect(err(() => KvmDebugregsLayout.encode({ ...d, db: [0n, -1n, 0n, 0n] }))).toEqual({ code: "LAYOUT_VALUE_OUT_OF_RANGE", message: "u64: -1 is not a u64 bigint" });
    expect(err(() => KvmDebugregsLayout.encode({ ...d, dr7: 2n ** 64n })).message).toBe(`dr7: ${2n ** 64n} is not a u64 bigint`);
  });
  it("bytes take at most their span, shorter input is zero-filled, and a non-byte array is refused", () => {
    const buf = Buffer.alloc(Outer.size, 0xee);
    Outer.encode({ ...zero(), raw: Buffer.from([1, 2, 3]) }, buf);
    expect([...buf.subarray(25, 31)]).toEqual([1, 2, 3, 0, 0, 0]);
    expect(err(() => Outer.encode({ ...zero(), raw: Buffer.alloc(7) }))).toEqual({ code: "LAYOUT_VALUE_OUT_OF_RANGE", message: "raw: expected at most 6 bytes" });
    expect(err(() => Outer.encode({ ...zero(), raw: [1, 2] as unknown as Buffer })).code).toBe("LAYOUT_VALUE_OUT_OF_RANGE");
    const Pairs = defineStruct<{ pairs: Buffer[] }>("struct pairs", [array(bytes(2, ""), 2, "pairs")]);
    expect(err(() => Pairs.encode({ pairs: [Buffer.alloc(2), Buffer.alloc(3)] })).message).toBe("bytes: expected at most 2 bytes");
  });
  it("decoded bytes are a copy, not a view of the source", () => {
    const src = Outer.encode({ ...zero(), raw: Buffer.from([9, 9, 9, 9, 9, 9]) });
    const v = Outer.decode(src);
    src.fill(0);
    expect([...v.raw]).toEqual([9, 9, 9, 9, 9, 9]);
  });
  it("into a caller's buffer: at an offset, and LAYOUT_BUFFER_TOO_SMALL when it does not fit or the offset is negative", () => {
    const v = { ...zero(), tag: 0xdeadbeef };
    const b = Buffer.alloc(Outer.size + 3);
    const out = Outer.encode(v, b, 3);
    expect(out.buffer).toBe(b.buffer);
    expect(Outer.decode(b, 3)).toEqual(v);
    expect(err(() => Outer.encode(v, Buffer.alloc(Outer.size + 2), 3)).code).toBe("LAYOUT_BUFFER_TOO_SMALL");
    expect(err(() => Outer.encode(v, Buffer.alloc(Outer.size - 1))).code).toBe("LAYOUT_BUFFER_TOO_SMALL");
    expect(err(() => Outer.encode(v, Buffer.alloc(Outer.size * 2), -1)).code).toBe("LAYOUT_BUFFER_TOO_SMALL");
    expect(err(() => Outer.decode(Buffer.alloc(Outer.size * 2), -1)).code).toBe("LAYOUT_BUFFER_TOO_SMALL");
    // Without a buffer, the fresh one is sized for the offset too.
    expect(Outer.encode(v, undefined, 5).length).toBe(Outer.size + 5);
  });
  it("a LayoutError from a field passes through; a value buffer-layout refuses (u8 of 256) becomes LAYOUT_VALUE_OUT_OF_RANGE naming the struct, cause kept", () => {
    const regs = KvmRegsLayout.decode(Buffer.alloc(KvmRegsLayout.size));
    try {
      KvmRegsLayout.encode({ ...regs, rax: 1.5 as unknown as bigint });
      expect.unreachable();
    } catch (e) {
      expect((e as LayoutError).code).toBe("LAYOUT_VALUE_OUT_OF_RANGE");
    }
    try {
      Inner.encode({ a: 256, b: 0 });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(LayoutError);
      expect((e as LayoutError).code).toBe("LAYOUT_VALUE_OUT_OF_RANGE");
      expect((e as LayoutError).message).toMatch(/^struct inner: /);
      expect((e as LayoutError).cause).toBeInstanceOf(Error);
    }
  });
});
