import { defineStruct, GuestMemoryError, GuestMemoryMap, LayoutError, type StructLayout, u8, u16, u32, u64 } from "@tsvmm/abi";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

// readObj/writeObj against a reference that encodes with the layout into a scratch buffer and
// copies bytes by hand, over arbitrary addresses: the object lands exactly where the reference
// says, whole or not at all.

interface Obj {
  a: number;
  b: number;
  c: bigint;
  d: number;
}
const ObjLayout: StructLayout<Obj> = defineStruct("struct obj", [u8("a"), u16("b"), u64("c"), u32("d")]);

const layout = [
  { base: 0, size: 0x100, name: "low" },
  { base: 0x200, size: 0x40, name: "mid" },
  { base: 0x1000, size: 0x20, name: "high" },
];
const inside = (a: number, len: number): boolean => layout.some((r) => a >= r.base && a + len <= r.base + r.size);
const objArb = fc.record({
  a: fc.nat({ max: 0xff }),
  b: fc.nat({ max: 0xffff }),
  c: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  d: fc.nat({ max: 0xffffffff }),
});

describe("GuestMemory.readObj / writeObj", () => {
  it("round-trips declared objects and stores exactly the layout's bytes where it says", () => {
    const m = GuestMemoryMap.allocate(layout);
    m.writeObj(ObjLayout, 0x210, { a: 1, b: 0x203, c: 0x0405060708090a0bn, d: 0x0c0d0e0f });
    expect(m.readObj(ObjLayout, 0x210)).toEqual({ a: 1, b: 0x203, c: 0x0405060708090a0bn, d: 0x0c0d0e0f });
    // Little-endian, packed in declaration order: 1 | 03 02 | 0b..04 | 0f..0c.
    expect([...m.read(0x210, ObjLayout.size)]).toEqual([1, 3, 2, 0xb, 0xa, 9, 8, 7, 6, 5, 4, 0xf, 0xe, 0xd, 0xc]);
  });

  it("is whole-or-nothing for arbitrary addresses and values (property)", () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.integer({ min: 0, max: 0x1100 }), fc.constantFrom(0xf1, 0xf2, 0x100, 0x231, 0x232, 0x1011, 0x1012), fc.integer({ min: -3, max: Number.MAX_SAFE_INTEGER })),
        objArb,
        (a, v) => {
          const m = GuestMemoryMap.allocate(layout);
          for (const r of layout) m.fill(r.base, r.size, 0x5a);
          const before = layout.map((r) => m.read(r.base, r.size));
          if (a >= 0 && inside(a, ObjLayout.size)) {
            m.writeObj(ObjLayout, a, v);
            expect(m.readObj(ObjLayout, a)).toEqual(v);
            const expected = layout.map((r, i) => {
              const e = Buffer.from(before[i]!);
              if (a >= r.base && a < r.base + r.size) ObjLayout.encode(v).copy(e, a - r.base);
              return e;
            });
            for (const [i, r] of layout.entries()) expect(m.read(r.base, r.size).equals(expected[i]!)).toBe(true);
          } else {
            expect(() => m.writeObj(ObjLayout, a, v)).toThrow(GuestMemoryError);
            expect(() => m.readObj(ObjLayout, a)).toThrow(GuestMemoryError);
            for (const [i, r] of layout.entries()) expect(m.read(r.base, r.size).equals(before[i]!)).toBe(true);
          }
        },
      ),
      { numRuns: 1000 },
    );
  });

  it("a value that does not fit is a LayoutError and stores nothing", () => {
    const m = GuestMemoryMap.allocate(layout);
    m.fill(0, 0x100, 0x77);
    expect(() => m.writeObj(ObjLayout, 0x10, { a: 1, b: 2, c: 2n ** 64n, d: 4 })).toThrow(LayoutError);
    expect(() => m.writeObj(ObjLayout, 0x10, { a: 1, b: 0x10000, c: 0n, d: 4 })).toThrow(LayoutError);
    expect(m.read(0, 0x100).equals(Buffer.alloc(0x100, 0x77))).toBe(true);
  });

  it("an object straddling two regions or hanging over a region end names the region", () => {
    const m = GuestMemoryMap.allocate(layout);
    expect(() => m.readObj(ObjLayout, 0xf8)).toThrowError(/crosses the end of region low/);
    expect(() => m.readObj(ObjLayout, 0x150)).toThrowError(expect.objectContaining({ code: "GUEST_MEMORY_OUT_OF_RANGE" }));
  });
});

/** A Buffer whose ArrayBuffer is detached, as kvm-backend leaves a slot's Buffer when its VM closes. */
function detach(b: Buffer): void {
  structuredClone(b.buffer, { transfer: [b.buffer as ArrayBuffer] });
}

describe("GuestMemoryMap after its backing is released", () => {
  const all = (m: GuestMemoryMap): Array<[string, () => unknown]> => [
    ["read", () => m.read(0x10, 4)],
    ["slice", () => m.slice(0x10, 4)],
    ["write", () => m.write(0x10, Buffer.from([1]))],
    ["fill", () => m.fill(0x10, 4, 0)],
    ["readU8", () => m.readU8(0x10)],
    ["readU16", () => m.readU16(0x10)],
    ["readU32", () => m.readU32(0x10)],
    ["readU64", () => m.readU64(0x10)],
    ["writeU8", () => m.writeU8(0x10, 1)],
    ["writeU16", () => m.writeU16(0x10, 1)],
    ["writeU32", () => m.writeU32(0x10, 1)],
    ["writeU64", () => m.writeU64(0x10, 1n)],
    ["readObj", () => m.readObj(ObjLayout, 0x10)],
    ["writeObj", () => m.writeObj(ObjLayout, 0x10, { a: 0, b: 0, c: 0n, d: 0 })],
    ["contains", () => m.contains(0x10, 4)],
    ["findRegion", () => m.findRegion(0x10)],
    // An address in a hole or another region is still refused as released, not as out of range.
    ["readU8 in a hole", () => m.readU8(0x150)],
    ["readU8 in another region", () => m.readU8(0x200)],
    ["writeObj in the last region", () => m.writeObj(ObjLayout, 0x1000, { a: 0, b: 0, c: 0n, d: 0 })],
  ];

  it("every method throws GUEST_MEMORY_RELEASED (not undefined, not a raw RangeError)", () => {
    const buffers = layout.map((l) => ({ ...l, buffer: Buffer.alloc(l.size) }));
    const m = new GuestMemoryMap(buffers);
    for (const [name, f] of all(m)) if (!name.includes("hole")) f(); // fine while alive
    expect(() => m.readU8(0x150)).toThrowError(expect.objectContaining({ code: "GUEST_MEMORY_OUT_OF_RANGE" }));
    // VM close releases every slot.
    for (const b of buffers) detach(b.buffer);
    expect(buffers[0]!.buffer.length).toBe(0);
    for (const [name, f] of all(m)) {
      let err: unknown;
      try {
        f();
      } catch (e) {
        err = e;
      }
      expect(err, name).toBeInstanceOf(GuestMemoryError);
      expect((err as GuestMemoryError).code, name).toBe("GUEST_MEMORY_RELEASED");
    }
  });

  it("a map made over an already-released buffer is refused", () => {
    const b = Buffer.alloc(16);
    detach(b);
    expect(() => new GuestMemoryMap([{ base: 0, size: 16, buffer: b }])).toThrowError(expect.objectContaining({ code: "GUEST_MEMORY_INVALID_REGION" }));
  });
});

describe("allocation and stored values are checked", () => {
  it("allocate refuses NaN, negative, fractional, infinite and too-large sizes and bases with a typed error", () => {
    for (const bad of [Number.NaN, -1, 0, 1.5, Number.POSITIVE_INFINITY, 2 ** 53, 2 ** 40]) {
      expect(() => GuestMemoryMap.allocate([{ base: 0, size: bad }]), `size ${bad}`).toThrowError(expect.objectContaining({ code: "GUEST_MEMORY_INVALID_REGION" }));
      if (bad !== 0 && bad !== 2 ** 40) {
        expect(() => GuestMemoryMap.allocate([{ base: bad, size: 4096 }]), `base ${bad}`).toThrowError(expect.objectContaining({ code: "GUEST_MEMORY_INVALID_REGION" }));
      }
    }
    expect(() => GuestMemoryMap.allocate(null as unknown as [])).toThrowError(expect.objectContaining({ code: "GUEST_MEMORY_INVALID_REGION" }));
    expect(() => new GuestMemoryMap([{ base: 0, size: 4, buffer: new Uint8Array(4) as Buffer }])).toThrowError(expect.objectContaining({ code: "GUEST_MEMORY_INVALID_REGION" }));
  });

  it("values that are not integers are refused before anything is stored", () => {
    const m = GuestMemoryMap.allocate([{ base: 0, size: 64 }]);
    const cases: Array<() => void> = [
      () => m.writeU8(0, Number.NaN),
      () => m.writeU16(0, 1.5),
      () => m.writeU32(0, Number.POSITIVE_INFINITY),
      () => m.writeU64(0, Number.NaN),
      () => m.writeU64(0, 0.5),
      () => m.fill(0, 8, Number.NaN),
    ];
    for (const f of cases) expect(f).toThrowError(expect.objectContaining({ code: "GUEST_MEMORY_INVALID_VALUE" }));
    expect(m.read(0, 64).equals(Buffer.alloc(64))).toBe(true);
  });
});
