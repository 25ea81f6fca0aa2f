import { decodePagingEntry, EptError, encodePagingEntry, type Level, pagingEntryHasReservedBits } from "@tsvmm/ept";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

describe("IA-32e paging entries", () => {
  it("puts each flag at its SDM bit position (Vol. 3A Tables 4-15..4-20)", () => {
    // The classic identity-map PDE: present | writable | PS with a 2 MiB frame = 0x83.
    expect(encodePagingEntry(2, { kind: "page", address: 0, write: true })).toBe(0x83n);
    expect(encodePagingEntry(4, { kind: "table", address: 0x2000, write: true })).toBe(0x2003n);
    expect(encodePagingEntry(1, { kind: "page", address: 0x5000, user: true })).toBe(0x5005n);
    expect(encodePagingEntry(1, { kind: "page", address: 0, pwt: true, pcd: true })).toBe(0x19n);
    expect(encodePagingEntry(1, { kind: "page", address: 0, accessed: true, dirty: true })).toBe(0x61n);
    expect(encodePagingEntry(1, { kind: "page", address: 0, pat: true })).toBe(0x81n);
    expect(encodePagingEntry(2, { kind: "page", address: 0, pat: true })).toBe(0x1081n);
    expect(encodePagingEntry(3, { kind: "page", address: 0, pat: true, global: true })).toBe(0x1181n);
    expect(encodePagingEntry(1, { kind: "page", address: 0, protectionKey: 0xf })).toBe((0xfn << 59n) | 1n);
    expect(encodePagingEntry(1, { kind: "page", address: 0, executeDisable: true })).toBe((1n << 63n) | 1n);
    expect(encodePagingEntry(1, { kind: "page", address: 0, present: false })).toBe(0n);
  });

  it("rejects what cannot be encoded", () => {
    expect(() => encodePagingEntry(4, { kind: "page", address: 0 })).toThrow(EptError);
    expect(() => encodePagingEntry(1, { kind: "table", address: 0 })).toThrow(EptError);
    expect(() => encodePagingEntry(3, { kind: "page", address: 0x200000 })).toThrow(/aligned/);
    expect(() => encodePagingEntry(1, { kind: "page", address: 0, protectionKey: 16 })).toThrow(EptError);
  });

  it("decode inverts encode", () => {
    const common = {
      present: fc.boolean(),
      write: fc.boolean(),
      user: fc.boolean(),
      pwt: fc.boolean(),
      pcd: fc.boolean(),
      accessed: fc.boolean(),
      executeDisable: fc.boolean(),
    };
    fc.assert(
      fc.property(
        fc.constantFrom<1 | 2 | 3>(1, 2, 3),
        fc.record({ ...common, dirty: fc.boolean(), global: fc.boolean(), pat: fc.boolean(), protectionKey: fc.integer({ min: 0, max: 15 }) }),
        fc.bigInt(0n, (1n << 22n) - 1n),
        (level, f, frame) => {
          const address = (frame << (level === 1 ? 12n : level === 2 ? 21n : 30n)) & ((1n << 52n) - 1n);
          const raw = encodePagingEntry(level, { kind: "page", address, ...f });
          expect(decodePagingEntry(level, raw)).toEqual({ kind: "page", address, ...f });
          expect(pagingEntryHasReservedBits(level, raw)).toBe(false);
        },
      ),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(fc.constantFrom<Level>(2, 3, 4, 5), fc.record(common), fc.bigInt(0n, (1n << 40n) - 1n), (level, f, frame) => {
        const raw = encodePagingEntry(level, { kind: "table", address: frame << 12n, ...f });
        expect(decodePagingEntry(level, raw)).toEqual({ kind: "table", address: frame << 12n, ...f });
      }),
      { numRuns: 200 },
    );
  });

  it("finds reserved bits (SDM Vol. 3A §4.5)", () => {
    expect(pagingEntryHasReservedBits(4, 0x81n)).toBe(true);
    expect(pagingEntryHasReservedBits(5, 0x81n)).toBe(true);
    expect(pagingEntryHasReservedBits(2, 0x81n | 0x2000n)).toBe(true);
    expect(pagingEntryHasReservedBits(2, 0x81n | 0x1000n)).toBe(false); // PAT
    expect(pagingEntryHasReservedBits(3, 0x81n | 0x200000n)).toBe(true);
    expect(pagingEntryHasReservedBits(3, 0x81n, { pages1G: false })).toBe(true);
    expect(pagingEntryHasReservedBits(1, (1n << 63n) | 1n, { nxe: false })).toBe(true);
    expect(pagingEntryHasReservedBits(1, (1n << 63n) | 1n)).toBe(false);
    expect(pagingEntryHasReservedBits(1, (1n << 36n) | 1n, { maxPhyAddr: 36 })).toBe(true);
    expect(pagingEntryHasReservedBits(1, (1n << 36n) | 0n, { maxPhyAddr: 36 })).toBe(false); // not present
    // Bits 58:52 are ignored, and so is PS in a PTE (it is PAT there).
    expect(pagingEntryHasReservedBits(1, (0x7fn << 52n) | 0x81n)).toBe(false);
  });
});
