import { GuestMemoryMap } from "@tsvmm/abi";
import { EptTables, Fault, TableAllocator } from "@tsvmm/ept";
import { describe, expect, it } from "vitest";

// The quick walk computes a table's offset in its region as int32 (walk-fast.ts). The property
// test keeps its regions low; this one puts the tables near the top of the 32-bit range, where
// the offsets wrap, and points entries at tables below and above that region.
const MiB = 2 ** 20;
const GiB = 2 ** 30;
const RWX = { read: true, write: true, execute: true };

function setup() {
  const memory = GuestMemoryMap.allocate([
    { base: 0, size: 4 * MiB },
    { base: 3 * GiB, size: 4 * MiB },
  ]);
  const t = new EptTables(memory, new TableAllocator(memory, 3 * GiB, 4 * MiB), { maxPhyAddr: 46 });
  t.map(0, 2 ** 32, 8 * MiB, RWX, { pageSize: 4096 });
  return { memory, t };
}

function agrees(t: EptTables, address: number): number {
  const fast = t.translateFast(address);
  const full = t.translate(address);
  if (fast >= 0) expect(full.physical).toBe(BigInt(fast));
  else expect(full.ok).toBe(false);
  return fast;
}

describe("translateFast with tables in a region at 3 GiB", () => {
  it("translates through them", () => {
    const { t } = setup();
    for (const a of [0, 0x1234, 4 * MiB + 0x10, 8 * MiB - 1]) expect(agrees(t, a)).toBe(2 ** 32 + a);
    expect(agrees(t, 8 * MiB)).toBe(Fault.NOT_PRESENT);
  });

  it("follows an entry to a table below the region (offset wraps) or past it to the same answer as translate", () => {
    const { memory, t } = setup();
    const pde = t.translate(0x1000).steps[2]!.entryAddress;
    const original = memory.readU64(pde);
    const keep = original & 0xfffn;
    // An all-zero page in the region at 0: every PTE there is not present.
    memory.writeU64(pde, keep | BigInt(2 * MiB));
    expect(agrees(t, 0x1000)).toBe(Fault.NOT_PRESENT);
    expect(t.translate(0x1000).fault?.reason).toBe("not-present");
    // Between the regions and past the one at 3 GiB: no memory holds the table.
    for (const table of [1 * GiB, 3 * GiB + 512 * MiB, 2 ** 32 - 4096]) {
      memory.writeU64(pde, keep | BigInt(table));
      expect(agrees(t, 0x1000)).toBe(Fault.TABLE_OUTSIDE_MEMORY);
    }
    // Back to its own table: translated again.
    memory.writeU64(pde, original);
    expect(agrees(t, 0x1000)).toBe(2 ** 32 + 0x1000);
  });
});
