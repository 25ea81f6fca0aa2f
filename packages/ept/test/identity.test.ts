import { GuestMemoryMap } from "@tsvmm/abi";
import { buildIdentityMap, PagingTables, TableAllocator } from "@tsvmm/ept";
import { describe, expect, it } from "vitest";

describe("buildIdentityMap", () => {
  it("identity-maps memory and aliases it high, with tables taken from the allocator region", () => {
    const memory = GuestMemoryMap.allocate([{ base: 0, size: 8 << 20 }]);
    const cr3 = buildIdentityMap(memory, 0x100000, { size: 8 << 20, highAlias: 0xffff800000000000n });
    expect(cr3 & 0xfffn).toBe(0n);
    expect(cr3).toBeGreaterThanOrEqual(0x100000n);
    // Read the tables back through an independent adopter of the same root.
    const t = new PagingTables(memory, new TableAllocator(memory, 0x400000, 0x1000), { root: Number(cr3) });
    for (const va of [0n, 0x1234n, 0x7ff000n, 0x100008n]) {
      expect(t.translate(va, { write: true, execute: true }).physical).toBe(va);
      expect(t.translate(0xffff800000000000n + va, { write: true }).physical).toBe(va);
    }
    expect(t.translate(8 << 20).fault?.reason).toBe("not-present");
    expect(t.translate(0x1000, { user: true }).fault?.reason).toBe("permission");
    expect(new Set(t.mappings().map((m) => m.size))).toEqual(new Set([0x200000]));
    // The PML4 entries for low and high halves are 0 and 256.
    const r = t.translate(0xffff800000000000n);
    expect(r.steps[0]!.index).toBe(256);
  });

  it("supports 4 KiB pages, user mappings and 5-level tables", () => {
    const memory = GuestMemoryMap.allocate([{ base: 0, size: 4 << 20 }]);
    const cr3 = buildIdentityMap(memory, 0x200000, { size: 0x30000, pageSize: 4096, user: true, levels: 5 });
    const t = new PagingTables(memory, new TableAllocator(memory, 0x300000, 0x1000), { root: Number(cr3), levels: 5 });
    expect(t.translate(0x2f123, { user: true, write: true }).physical).toBe(0x2f123n);
    expect(t.mappings()).toHaveLength(0x30);
  });
});
