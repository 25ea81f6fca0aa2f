import { GuestMemoryMap } from "@tsvmm/abi";
import { EptTables, TableAllocator, toMemorySlots } from "@tsvmm/ept";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

const MiB = 1 << 20;
const fresh = () => {
  const memory = GuestMemoryMap.allocate([{ base: 0, size: 4 * MiB }]);
  return new EptTables(memory, new TableAllocator(memory, 0, 4 * MiB), { maxPhyAddr: 46 });
};

describe("toMemorySlots: an EPT permission map as KVM memory slots", () => {
  it("coalesces contiguous leaves of equal write permission; unreadable pages stay holes; lost execute-deny is reported", () => {
    const ept = fresh();
    ept.map(0, 0, 0x200000, { read: true, write: true, execute: true }); // one 2 MiB page
    ept.map(0x200000, 0x200000, 0x3000, { read: true, write: true, execute: true }, { pageSize: 4096 });
    ept.map(0x203000, 0x203000, 0x2000, { read: true, write: false, execute: false }, { pageSize: 4096 });
    ept.map(0x206000, 0x206000, 0x1000, { read: true, write: true, execute: true }, { pageSize: 4096 }); // after a hole
    expect(toMemorySlots(ept)).toEqual({
      slots: [
        { base: 0, size: 0x203000, readonly: false },
        { base: 0x203000, size: 0x2000, readonly: true },
        { base: 0x206000, size: 0x1000, readonly: false },
      ],
      executeDeniedLost: [{ base: 0x203000, size: 0x2000 }],
    });
  });

  it("refuses a map that is not an identity map", () => {
    const ept = fresh();
    ept.map(0, 0x100000000, 0x1000, { read: true, write: true, execute: true }, { pageSize: 4096 });
    expect(() => toMemorySlots(ept)).toThrowError(expect.objectContaining({ code: "EPT_NOT_IDENTITY" }));
  });

  it("for random identity maps, a page is in a slot iff it is readable, read-only iff not writable", () => {
    const page = fc.record({ present: fc.boolean(), write: fc.boolean() });
    fc.assert(
      fc.property(fc.array(page, { minLength: 1, maxLength: 48 }), (pages) => {
        const ept = fresh();
        pages.forEach((p, i) => {
          if (p.present) ept.map(0x400000 + i * 0x1000, 0x400000 + i * 0x1000, 0x1000, { read: true, write: p.write, execute: true }, { pageSize: 4096 });
        });
        const { slots } = toMemorySlots(ept);
        for (const [i, p] of pages.entries()) {
          const a = 0x400000 + i * 0x1000;
          const s = slots.find((x) => a >= x.base && a < x.base + x.size);
          if (!p.present) expect(s).toBeUndefined();
          else expect(s?.readonly).toBe(!p.write);
        }
        // Slots never touch with equal permissions (they would have been one slot).
        for (let i = 1; i < slots.length; i++) {
          const a = slots[i - 1]!;
          const b = slots[i]!;
          expect(a.base + a.size === b.base && a.readonly === b.readonly).toBe(false);
        }
      }),
      { numRuns: 200 },
    );
  });
});
