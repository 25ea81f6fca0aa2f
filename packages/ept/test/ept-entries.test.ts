import {
  decodeEptEntry,
  decodeEptp,
  EptError,
  EptMemoryType,
  EptVpidCap,
  encodeEptEntry,
  encodeEptp,
  eptEntryProblems,
  type Level,
  validateEptp,
} from "@tsvmm/ept";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

describe("EPT entries", () => {
  it("puts each field at its SDM bit position", () => {
    // Table 29-6: R=0 W=1 X=2 MT=5:3 IPAT=6 A=8 D=9 UX=10, 57 VGP, 58 PW, 60 SSS, 61 SPP, 63 SVE.
    expect(encodeEptEntry(1, { kind: "page", address: 0x1000, read: true })).toBe(0x1031n);
    expect(encodeEptEntry(1, { kind: "page", address: 0, read: true, write: true, execute: true, ignorePat: true })).toBe(0x77n);
    expect(encodeEptEntry(1, { kind: "page", address: 0, read: true, memoryType: EptMemoryType.UC })).toBe(1n);
    expect(encodeEptEntry(1, { kind: "page", address: 0, memoryType: 0, accessed: true })).toBe(1n << 8n);
    expect(encodeEptEntry(1, { kind: "page", address: 0, memoryType: 0, dirty: true })).toBe(1n << 9n);
    expect(encodeEptEntry(1, { kind: "page", address: 0, memoryType: 0, userExecute: true })).toBe(1n << 10n);
    expect(encodeEptEntry(1, { kind: "page", address: 0, memoryType: 0, verifyGuestPaging: true })).toBe(1n << 57n);
    expect(encodeEptEntry(1, { kind: "page", address: 0, memoryType: 0, pagingWrite: true })).toBe(1n << 58n);
    expect(encodeEptEntry(1, { kind: "page", address: 0, memoryType: 0, supervisorShadowStack: true })).toBe(1n << 60n);
    expect(encodeEptEntry(1, { kind: "page", address: 0, memoryType: 0, subPageWrite: true })).toBe(1n << 61n);
    expect(encodeEptEntry(1, { kind: "page", address: 0, memoryType: 0, suppressVe: true })).toBe(1n << 63n);
    // Large leaves carry bit 7; tables carry no memory type.
    expect(encodeEptEntry(2, { kind: "page", address: 0x200000, read: true, memoryType: 0 })).toBe(0x200081n);
    expect(encodeEptEntry(3, { kind: "page", address: 0x40000000, read: true, memoryType: 0 })).toBe(0x40000081n);
    expect(encodeEptEntry(4, { kind: "table", address: 0x5000, read: true, write: true, execute: true })).toBe(0x5007n);
  });

  it("rejects leaves at PML4/PML5, tables at PTE, bad memory types and bad addresses", () => {
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(EptError);
        return (e as EptError).code;
      }
      return "none";
    };
    expect(code(() => encodeEptEntry(4, { kind: "page", address: 0 }))).toBe("EPT_INVALID_ENTRY");
    expect(code(() => encodeEptEntry(5, { kind: "page", address: 0 }))).toBe("EPT_INVALID_ENTRY");
    expect(code(() => encodeEptEntry(1, { kind: "table", address: 0 }))).toBe("EPT_INVALID_ENTRY");
    expect(code(() => encodeEptEntry(1, { kind: "page", address: 0, memoryType: 2 as EptMemoryType }))).toBe("EPT_INVALID_ENTRY");
    expect(code(() => encodeEptEntry(2, { kind: "page", address: 0x1000 }))).toBe("EPT_MISALIGNED");
    expect(code(() => encodeEptEntry(1, { kind: "page", address: 1n << 40n }, 40))).toBe("EPT_BEYOND_MAXPHYADDR");
    expect(code(() => encodeEptEntry(6 as Level, { kind: "page", address: 0 }))).toBe("EPT_INVALID_ARGUMENT");
    expect(code(() => encodeEptEntry(1, { kind: "page", address: -1 }))).toBe("EPT_INVALID_ARGUMENT");
    expect(code(() => decodeEptEntry(1, -1n))).toBe("EPT_INVALID_ARGUMENT");
  });

  it("decode inverts encode for every level and field combination", () => {
    const leafLevel = fc.constantFrom<1 | 2 | 3>(1, 2, 3);
    const flags = fc.record({
      read: fc.boolean(),
      write: fc.boolean(),
      execute: fc.boolean(),
      userExecute: fc.boolean(),
      accessed: fc.boolean(),
    });
    const leafFlags = fc.record({
      dirty: fc.boolean(),
      ignorePat: fc.boolean(),
      verifyGuestPaging: fc.boolean(),
      pagingWrite: fc.boolean(),
      supervisorShadowStack: fc.boolean(),
      subPageWrite: fc.boolean(),
      suppressVe: fc.boolean(),
      memoryType: fc.constantFrom<EptMemoryType>(0, 1, 4, 5, 6),
    });
    fc.assert(
      fc.property(leafLevel, flags, leafFlags, fc.bigInt(0n, (1n << 22n) - 1n), (level, f, lf, frame) => {
        const shift = level === 1 ? 12n : level === 2 ? 21n : 30n;
        const address = (frame << shift) & ((1n << 52n) - 1n);
        const raw = encodeEptEntry(level, { kind: "page", address, ...f, ...lf });
        expect(decodeEptEntry(level, raw)).toEqual({ kind: "page", address, ...f, ...lf });
      }),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(fc.constantFrom<Level>(2, 3, 4, 5), flags, fc.bigInt(0n, (1n << 40n) - 1n), (level, f, frame) => {
        const address = frame << 12n;
        const raw = encodeEptEntry(level, { kind: "table", address, ...f });
        expect(decodeEptEntry(level, raw)).toEqual({ kind: "table", address, ...f });
        expect(eptEntryProblems(level, raw, { executeOnly: true })).toEqual(
          f.write && !f.read ? ["write-without-read"] : [],
        );
      }),
      { numRuns: 200 },
    );
  });

  it("finds EPT misconfigurations (SDM 29.3.3.1)", () => {
    expect(eptEntryProblems(1, 0x2n)).toEqual(["write-without-read"]);
    expect(eptEntryProblems(1, 0x4n | (6n << 3n))).toEqual(["execute-only-unsupported"]);
    expect(eptEntryProblems(1, 0x4n | (6n << 3n), { executeOnly: true })).toEqual([]);
    expect(eptEntryProblems(1, 0x1n | (2n << 3n))).toEqual(["reserved-memory-type"]);
    expect(eptEntryProblems(1, 0x1n | (7n << 3n))).toEqual(["reserved-memory-type"]);
    expect(eptEntryProblems(4, 0x1n | 0x80n)).toEqual(["reserved-bits"]);
    expect(eptEntryProblems(3, 0x1n | 0x8n)).toEqual(["reserved-bits"]);
    expect(eptEntryProblems(2, 0x81n | 0x1000n)).toEqual(["reserved-bits"]);
    expect(eptEntryProblems(3, 0x81n | 0x20000000n)).toEqual(["reserved-bits"]);
    expect(eptEntryProblems(1, 0x1n | (1n << 40n), { maxPhyAddr: 40 })).toEqual(["reserved-bits"]);
    expect(eptEntryProblems(1, 0x1n | (1n << 39n), { maxPhyAddr: 40 })).toEqual([]);
    expect(eptEntryProblems(3, 0x81n, { pages1G: false })).toEqual(["large-page-unsupported"]);
    // Not present: nothing is checked; with MBEC bit 10 alone makes it present.
    expect(eptEntryProblems(4, 0xf8n)).toEqual([]);
    expect(eptEntryProblems(4, 0x400n | 0x80n, { mbec: true, executeOnly: true })).toEqual(["reserved-bits"]);
  });
});

describe("EPTP", () => {
  const allCaps = EptVpidCap.PAGE_WALK_4 | EptVpidCap.PAGE_WALK_5 | EptVpidCap.MEMTYPE_UC | EptVpidCap.MEMTYPE_WB | EptVpidCap.ACCESSED_DIRTY | EptVpidCap.SUPERVISOR_SHADOW_STACK;

  it("encodes the usual WB 4-level pointer as root | 0x1e (and 0x5e with A/D)", () => {
    expect(encodeEptp({ root: 0x123000 })).toBe(0x12301en);
    expect(encodeEptp({ root: 0x123000, accessedDirty: true })).toBe(0x12305en);
    expect(encodeEptp({ root: 0x1000, walkLength: 5, memoryType: 0 })).toBe(0x1020n);
    expect(decodeEptp(0x12305en)).toEqual({
      memoryType: 6,
      walkLength: 4,
      accessedDirty: true,
      supervisorShadowStack: false,
      reserved11to8: 0,
      root: 0x123000n,
    });
    expect(() => encodeEptp({ root: 0x123 })).toThrow(EptError);
  });

  it("names each violated rule", () => {
    const codes = (eptp: bigint, cap: bigint, n = 46) => validateEptp(eptp, cap, n).map((p) => p.code);
    expect(codes(0x1en | 0x1000n, allCaps)).toEqual([]);
    expect(codes(0x1000n | 0x18n | 1n, allCaps)).toEqual(["EPTP_MEMORY_TYPE_INVALID"]);
    expect(codes(0x1000n | 0x1en, allCaps & ~EptVpidCap.MEMTYPE_WB)).toEqual(["EPTP_MEMORY_TYPE_UNSUPPORTED"]);
    expect(codes(0x1000n | 0x18n, allCaps & ~EptVpidCap.MEMTYPE_UC)).toEqual(["EPTP_MEMORY_TYPE_UNSUPPORTED"]);
    expect(codes(0x1000n | 0x16n, allCaps)).toEqual(["EPTP_WALK_LENGTH_INVALID"]);
    expect(codes(0x1000n | 0x26n, allCaps & ~EptVpidCap.PAGE_WALK_5)).toEqual(["EPTP_WALK_LENGTH_UNSUPPORTED"]);
    expect(codes(0x1000n | 0x5en, allCaps & ~EptVpidCap.ACCESSED_DIRTY)).toEqual(["EPTP_ACCESSED_DIRTY_UNSUPPORTED"]);
    expect(codes(0x1000n | 0x9en, allCaps & ~EptVpidCap.SUPERVISOR_SHADOW_STACK)).toEqual(["EPTP_SUPERVISOR_SHADOW_STACK_UNSUPPORTED"]);
    expect(codes(0x1000n | 0x11en, allCaps)).toEqual(["EPTP_RESERVED_BITS"]);
    expect(codes((1n << 46n) | 0x1en, allCaps)).toEqual(["EPTP_BEYOND_MAXPHYADDR"]);
    expect(codes((1n << 45n) | 0x1en, allCaps)).toEqual([]);
    expect(codes(0xffn, 0n)).toHaveLength(4);
  });

  it("accepts exactly the pointers the rule allows", () => {
    fc.assert(
      fc.property(fc.bigInt(0n, (1n << 64n) - 1n), fc.bigInt(0n, (1n << 64n) - 1n), fc.integer({ min: 32, max: 52 }), (eptp, cap, n) => {
        const ok = validateEptp(eptp, cap, n).length === 0;
        const bit = (v: bigint, b: bigint) => ((v >> b) & 1n) === 1n;
        const mt = eptp & 7n;
        const pwl = (eptp >> 3n) & 7n;
        const expected =
          ((mt === 0n && bit(cap, 8n)) || (mt === 6n && bit(cap, 14n))) &&
          ((pwl === 3n && bit(cap, 6n)) || (pwl === 4n && bit(cap, 7n))) &&
          (!bit(eptp, 6n) || bit(cap, 21n)) &&
          (!bit(eptp, 7n) || bit(cap, 23n)) &&
          ((eptp >> 8n) & 0xfn) === 0n &&
          eptp >> BigInt(n) === 0n;
        expect(ok).toBe(expected);
      }),
      { numRuns: 500 },
    );
  });

  it("refuses nonsense arguments with EPT_INVALID_ARGUMENT", () => {
    expect(() => validateEptp(0n, 0n, 60)).toThrow(EptError);
    expect(() => validateEptp(-1n, 0n, 46)).toThrow(EptError);
  });
});
