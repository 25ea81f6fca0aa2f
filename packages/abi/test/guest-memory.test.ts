import { GuestMemoryError, GuestMemoryMap } from "@tsvmm/abi";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

const layout = [
  { base: 0, size: 0x1000, name: "low" },
  { base: 0x3000, size: 0x2000, name: "mid" },
  { base: 0x10000, size: 0x100, name: "high" },
];

/** Reference: is [a, a+len) inside one region? */
const inside = (a: number, len: number): boolean => layout.some((r) => a >= r.base && a + len <= r.base + r.size);

describe("GuestMemoryMap", () => {
  it("reads back what it wrote, through every width", () => {
    const m = GuestMemoryMap.allocate(layout);
    m.writeU8(0x10, 0xab);
    m.writeU16(0x3000, 0xbeef);
    m.writeU32(0x4ffc, 0xdeadbeef);
    m.writeU64(0x100f8, 0x0102030405060708n);
    expect([m.readU8(0x10), m.readU16(0x3000), m.readU32(0x4ffc), m.readU64(0x100f8)]).toEqual([0xab, 0xbeef, 0xdeadbeef, 0x0102030405060708n]);
    expect(m.totalSize).toBe(0x3100);
    expect(m.end).toBe(0x10100);
  });

  it("slice is zero-copy and read is a copy", () => {
    const m = GuestMemoryMap.allocate(layout);
    const view = m.slice(0x3000, 4);
    view[0] = 7;
    expect(m.readU8(0x3000)).toBe(7);
    const copy = m.read(0x3000, 4);
    copy[0] = 9;
    expect(m.readU8(0x3000)).toBe(7);
  });

  it("never reads or writes outside its regions, for arbitrary addresses and lengths", () => {
    const m = GuestMemoryMap.allocate(layout);
    fc.assert(
      fc.property(
        fc.oneof(fc.integer({ min: 0, max: 0x12000 }), fc.integer({ min: -5, max: Number.MAX_SAFE_INTEGER }), fc.constantFrom(0xfff, 0x1000, 0x2fff, 0x4ffc, 0x50ff, 0x100ff)),
        fc.integer({ min: 0, max: 0x3000 }),
        (a, len) => {
          const ok = a >= 0 && inside(a, len);
          expect(m.contains(a, len)).toBe(ok || (len === 0 && a >= 0 && layout.some((r) => a >= r.base && a <= r.base + r.size)));
          if (ok && len > 0) {
            expect(m.read(a, len).length).toBe(len);
          } else if (len > 0) {
            const snapshot = layout.map((r) => m.read(r.base, r.size));
            expect(() => m.read(a, len)).toThrow(GuestMemoryError);
            expect(() => m.write(a, Buffer.alloc(len, 0xee))).toThrow(GuestMemoryError);
            expect(() => m.fill(a, len, 0xee)).toThrow(GuestMemoryError);
            // A refused access loses nothing: not even the in-range part was written.
            for (const [i, r] of layout.entries()) expect(m.read(r.base, r.size).equals(snapshot[i]!)).toBe(true);
          }
          for (const [w, f] of [[1, () => m.writeU8(a, 0xcc)], [2, () => m.writeU16(a, 0xcccc)], [4, () => m.writeU32(a, 0xcccccccc)], [8, () => m.writeU64(a, 0xccn)]] as const) {
            if (a >= 0 && inside(a, w)) f();
            else expect(f).toThrow(GuestMemoryError);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("crossing a region end names the region; holes say so", () => {
    const m = GuestMemoryMap.allocate(layout);
    expect(() => m.readU32(0xffe)).toThrowError(/crosses the end of region low/);
    expect(() => m.readU8(0x2000)).toThrowError(/falls outside guest memory/);
    expect(() => m.readU8(2n ** 64n)).toThrowError(expect.objectContaining({ code: "GUEST_MEMORY_INVALID_ADDRESS" }));
    expect(() => m.readU8(-1)).toThrowError(expect.objectContaining({ code: "GUEST_MEMORY_INVALID_ADDRESS" }));
    expect(() => m.readU8(1.5)).toThrowError(expect.objectContaining({ code: "GUEST_MEMORY_INVALID_ADDRESS" }));
  });

  it("rejects overlapping or malformed regions", () => {
    expect(() => GuestMemoryMap.allocate([{ base: 0, size: 0x2000 }, { base: 0x1000, size: 0x1000 }])).toThrowError(expect.objectContaining({ code: "GUEST_MEMORY_INVALID_REGION" }));
    expect(() => new GuestMemoryMap([{ base: 0, size: 16, buffer: Buffer.alloc(8) }])).toThrowError(expect.objectContaining({ code: "GUEST_MEMORY_INVALID_REGION" }));
  });
});
