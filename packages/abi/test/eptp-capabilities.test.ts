import { EptpError, EptVpidCap, TsvmmError, validateEptp } from "@tsvmm/abi";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

// Each memory type and walk length against the capability bit that allows it (SDM Vol. 3D A.10:
// bit 8 UC, bit 14 WB, bit 6 4-level, bit 7 5-level), and the argument checks.

const ALL = Object.values(EptVpidCap).reduce((a, b) => a | b, 0n);
const UC = 0n;
const WB = 6n;
const WALK4 = 3n << 3n;
const WALK5 = 4n << 3n;

describe("validateEptp: memory type and walk length need their capability bit", () => {
  const cases = [
    { eptp: UC | WALK4, missing: EptVpidCap.MEMTYPE_UC, code: "EPTP_MEMORY_TYPE_UNSUPPORTED", bits: 7n, says: "UC", bit: 8 },
    { eptp: WB | WALK4, missing: EptVpidCap.MEMTYPE_WB, code: "EPTP_MEMORY_TYPE_UNSUPPORTED", bits: 7n, says: "WB", bit: 14 },
    { eptp: WB | WALK4, missing: EptVpidCap.PAGE_WALK_4, code: "EPTP_WALK_LENGTH_UNSUPPORTED", bits: 0x38n, says: "length 4", bit: 6 },
    { eptp: WB | WALK5, missing: EptVpidCap.PAGE_WALK_5, code: "EPTP_WALK_LENGTH_UNSUPPORTED", bits: 0x38n, says: "length 5", bit: 7 },
  ] as const;
  for (const c of cases) {
    it(`${c.code} for ${c.says} names cap bit ${c.bit}`, () => {
      expect(validateEptp(0x5000n | c.eptp, ALL, 46)).toEqual([]);
      const problems = validateEptp(0x5000n | c.eptp, ALL & ~c.missing, 46);
      expect(problems.map((p) => [p.code, p.bits])).toEqual([[c.code, c.bits]]);
      expect(problems[0]!.message).toContain(c.says);
      expect(problems[0]!.message).toContain(`bit ${c.bit} is 0`);
    });
  }
  it("every acceptable EPTP passes under a full capability set, and each removed capability is reported once", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(UC, WB),
        fc.constantFrom(WALK4, WALK5),
        fc.boolean(),
        fc.boolean(),
        fc.integer({ min: 32, max: 52 }),
        fc.bigInt({ min: 0n, max: 2n ** 40n }),
        (mt, walk, ad, sss, maxPhy, page) => {
          const root = (page << 12n) & ((1n << BigInt(maxPhy)) - 1n);
          const eptp = root | mt | walk | (ad ? 0x40n : 0n) | (sss ? 0x80n : 0n);
          expect(validateEptp(eptp, ALL, maxPhy)).toEqual([]);
          const needed = [mt === UC ? EptVpidCap.MEMTYPE_UC : EptVpidCap.MEMTYPE_WB, walk === WALK4 ? EptVpidCap.PAGE_WALK_4 : EptVpidCap.PAGE_WALK_5];
          if (ad) needed.push(EptVpidCap.ACCESSED_DIRTY);
          if (sss) needed.push(EptVpidCap.SUPERVISOR_SHADOW_STACK);
          expect(validateEptp(eptp, needed.reduce((a, b) => a | b), maxPhy)).toEqual([]);
          for (const cap of needed) expect(validateEptp(eptp, ALL & ~cap, maxPhy)).toHaveLength(1);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe("validateEptp: arguments", () => {
  it("an eptVpidCap that is not a u64 bigint is EPTP_INVALID_ARGUMENT", () => {
    for (const cap of [-1n, 2n ** 64n, 5 as unknown as bigint]) {
      let e: unknown;
      try {
        validateEptp(WB | WALK4, cap, 46);
      } catch (x) {
        e = x;
      }
      expect(e).toBeInstanceOf(EptpError);
      expect(e).toBeInstanceOf(TsvmmError);
      expect((e as EptpError).code).toBe("EPTP_INVALID_ARGUMENT");
    }
    expect(validateEptp(WB | WALK4, 2n ** 64n - 1n, 46)).toEqual([]);
  });
  it("MAXPHYADDR is an integer in 32..52, and the bits at or above it are the ones reported", () => {
    for (const m of [31, 53, 40.5, Number.NaN]) expect(() => validateEptp(0n, ALL, m)).toThrowError(EptpError);
    expect(validateEptp((1n << 52n) | WB | WALK4, ALL, 52).map((p) => p.bits)).toEqual([1n << 52n]);
    expect(validateEptp((1n << 31n) | WB | WALK4, ALL, 32)).toEqual([]);
    expect(validateEptp((1n << 63n) | (1n << 32n) | WB | WALK4, ALL, 32).map((p) => p.bits)).toEqual([(1n << 63n) | (1n << 32n)]);
  });
});
