import { GuestMemoryError, GuestMemoryMap, toGpa } from "@tsvmm/abi";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

// The edges of the guest-physical address space and of access lengths: bigint addresses, the
// 2^53 limit, invalid lengths, and regions whose end cannot be represented.

const MAX = Number.MAX_SAFE_INTEGER;
const caught = (f: () => unknown): GuestMemoryError => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(GuestMemoryError);
    return e as GuestMemoryError;
  }
  throw new Error("did not throw");
};

describe("toGpa", () => {
  it("a bigint address is the same address as its number, up to 2^53-1", () => {
    fc.assert(
      fc.property(fc.oneof(fc.nat(), fc.integer({ min: MAX - 1000, max: MAX })), (a) => {
        expect(toGpa(BigInt(a))).toBe(a);
        expect(toGpa(a)).toBe(a);
      }),
      { numRuns: 300 },
    );
  });
  it("a bigint below 0 or above 2^53-1 is GUEST_MEMORY_INVALID_ADDRESS carrying the address", () => {
    for (const a of [-1n, BigInt(MAX) + 1n, 2n ** 64n - 1n]) {
      const e = caught(() => toGpa(a));
      expect([e.code, e.address]).toEqual(["GUEST_MEMORY_INVALID_ADDRESS", a]);
    }
    for (const a of [MAX + 1, -0.5, Number.NaN, Number.POSITIVE_INFINITY]) expect(caught(() => toGpa(a)).code).toBe("GUEST_MEMORY_INVALID_ADDRESS");
  });
});

describe("GuestMemoryMap by bigint address", () => {
  it("reads and writes through bigint addresses exactly as through numbers", () => {
    const m = GuestMemoryMap.allocate([{ base: 0x1000, size: 0x100 }]);
    fc.assert(
      fc.property(fc.integer({ min: 0x1000, max: 0x10f8 }), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), (a, v) => {
        m.writeU64(BigInt(a), v);
        expect(m.readU64(a)).toBe(v);
        expect(m.read(BigInt(a), 8).equals(m.read(a, 8))).toBe(true);
        expect(m.contains(BigInt(a), 8)).toBe(true);
        expect(m.findRegion(BigInt(a))?.base).toBe(0x1000);
      }),
      { numRuns: 200 },
    );
    expect(m.findRegion(2n ** 60n)).toBeUndefined();
    expect(m.contains(-1n)).toBe(false);
  });
});

describe("access lengths", () => {
  const m = GuestMemoryMap.allocate([{ base: 0, size: 0x100, name: "ram" }]);
  it("contains() is false, never a throw, for a length that is negative, fractional or not finite", () => {
    for (const len of [-1, 0.5, Number.NaN, Number.POSITIVE_INFINITY, MAX + 1]) expect(m.contains(0, len), String(len)).toBe(false);
    expect(m.contains(0, 0x100)).toBe(true);
    expect(m.contains(0x100, 0)).toBe(true);
  });
  it("an access with such a length is GUEST_MEMORY_OUT_OF_RANGE carrying address and length", () => {
    for (const len of [-1, 0.5, Number.NaN]) {
      for (const f of [() => m.read(0x10, len), () => m.slice(0x10, len), () => m.fill(0x10, len, 0)]) {
        const e = caught(f);
        expect([e.code, e.address, e.length]).toEqual(["GUEST_MEMORY_OUT_OF_RANGE", 0x10n, len]);
      }
    }
  });
  it("an access whose end passes 2^53 is refused, not wrapped", () => {
    // The highest region a map holds ends at 2^53-1, so every end it computes stays a safe integer.
    const top = GuestMemoryMap.allocate([{ base: MAX - 0x100, size: 0x100, name: "top" }]);
    expect(top.end).toBe(MAX);
    top.writeU8(MAX - 1, 0x5a);
    expect(top.readU8(BigInt(MAX - 1))).toBe(0x5a);
    expect(top.contains(MAX - 1, 1)).toBe(true);
    expect(top.contains(MAX - 1, 2)).toBe(false);
    expect(top.contains(MAX, 0)).toBe(true);
    expect(caught(() => top.readU16(MAX - 1)).message).toMatch(/crosses the end of region top/);
    expect(caught(() => top.readU8(MAX)).code).toBe("GUEST_MEMORY_OUT_OF_RANGE");
  });
});

describe("regions that cannot be mapped", () => {
  it("the constructor refuses a regions argument that is not an array", () => {
    for (const bad of [undefined, null, {}, "regions"]) {
      expect(caught(() => new GuestMemoryMap(bad as unknown as [])).code).toBe("GUEST_MEMORY_INVALID_REGION");
    }
  });
  it("a region whose end is past 2^53 is refused, named by its label or else its base", () => {
    const base = MAX - 10;
    const named = caught(() => new GuestMemoryMap([{ base, size: 16, buffer: Buffer.alloc(16), name: "tail" }]));
    expect([named.code, named.message]).toEqual(["GUEST_MEMORY_INVALID_REGION", "region tail ends past 2^53"]);
    const anon = caught(() => new GuestMemoryMap([{ base, size: 16, buffer: Buffer.alloc(16) }]));
    expect(anon.message).toBe(`region 0x${base.toString(16)} ends past 2^53`);
    // The end itself must be a safe integer: a region may end at 2^53-1, not at 2^53.
    expect(caught(() => new GuestMemoryMap([{ base: MAX - 15, size: 16, buffer: Buffer.alloc(16) }])).code).toBe("GUEST_MEMORY_INVALID_REGION");
    expect(new GuestMemoryMap([{ base: MAX - 16, size: 16, buffer: Buffer.alloc(16) }]).end).toBe(MAX);
  });
  it("a released region without a label is named by its base", () => {
    const buffer = Buffer.alloc(16);
    const m = new GuestMemoryMap([{ base: 0x2000, size: 16, buffer }]);
    structuredClone(buffer.buffer, { transfer: [buffer.buffer as ArrayBuffer] });
    const e = caught(() => m.readU8(0x2000));
    expect([e.code, e.message]).toEqual(["GUEST_MEMORY_RELEASED", "region 0x2000 was released (its VM was closed?); guest memory can no longer be accessed"]);
  });
});
