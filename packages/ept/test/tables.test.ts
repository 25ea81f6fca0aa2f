import { GuestMemoryMap } from "@tsvmm/abi";
import { Access, decodeEptEntry, decodePagingEntry, EptError, EptTables, Fault, PagingTables, TableAllocator } from "@tsvmm/ept";
import { describe, expect, it } from "vitest";

const MiB = 0x100000;
const GiB = 0x40000000;

function setup(pages = 64) {
  const memory = GuestMemoryMap.allocate([{ base: 0, size: 16 * MiB }]);
  const allocator = new TableAllocator(memory, 8 * MiB, pages * 4096);
  return { memory, allocator };
}

function code(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof EptError) return e.code;
    throw e;
  }
  return "none";
}

describe("IA-32e tables", () => {
  it("builds the entries the SDM walk expects and translates through them", () => {
    const { memory, allocator } = setup();
    const t = new PagingTables(memory, allocator);
    t.map(0x40000000, 0x123000, 0x2000, { write: true, user: true });
    // Walk by hand with the entry decoders: PML4[0] -> PDPT[1] -> PD[0] -> PT[0].
    const pml4e = decodePagingEntry(4, memory.readU64(t.root));
    expect(pml4e.kind).toBe("table");
    const pdpte = decodePagingEntry(3, memory.readU64(Number(pml4e.address) + 1 * 8));
    const pde = decodePagingEntry(2, memory.readU64(Number(pdpte.address)));
    const pte = decodePagingEntry(1, memory.readU64(Number(pde.address) + 8));
    expect(pte).toMatchObject({ kind: "page", address: 0x124000n, write: true, user: true, present: true });
    const r = t.translate(0x40001abc, { write: true, user: true });
    expect(r.ok).toBe(true);
    expect(r.physical).toBe(0x124abcn);
    expect(r.steps.map((s) => s.level)).toEqual([4, 3, 2, 1]);
    expect(r.steps.map((s) => s.index)).toEqual([0, 1, 0, 1]);
    expect(r.steps[3]!.entryAddress).toBe(pde.address + 8n);
    expect(t.translateFast(0x40001abc, Access.WRITE | Access.USER)).toBe(0x124abc);
  });

  it("picks the largest page that fits, unless told", () => {
    const { memory, allocator } = setup();
    const t = new PagingTables(memory, allocator);
    // 4K head, 2M pages, 1G page, 2M tail.
    t.map(GiB - 0x1000, GiB - 0x1000, 0x1000 + GiB + 2 * 0x200000, { write: true, user: false });
    expect(t.mappings().map((m) => m.size)).toEqual([0x1000, GiB, 0x200000, 0x200000]);
    t.map(8 * GiB, 0, 4 * MiB, { write: false, user: false }, { pageSize: 4096 });
    expect(t.mappings().filter((m) => m.address >= 8n * BigInt(GiB))).toHaveLength(1024);
    expect(code(() => t.map(16 * GiB, 0x1000, 0x200000, { write: false, user: false }, { pageSize: 0x200000 }))).toBe("EPT_MISALIGNED");
  });

  it("maps a high alias in the upper canonical half", () => {
    const { memory, allocator } = setup();
    const t = new PagingTables(memory, allocator);
    const high = 0xffff800000000000n;
    t.map(high, 0, 4 * MiB, { write: true, user: false });
    expect(t.translate(high + 0x1234n).physical).toBe(0x1234n);
    expect(t.translate(-0x800000000000n + 0x10n).physical).toBe(0x10n);
    expect(t.mappings()[0]!.address).toBe(high);
    const bad = t.translate(0x0000800000000000n);
    expect(bad.fault?.reason).toBe("address-out-of-range");
    expect(code(() => t.map(0x0000800000000000n, 0, 4096, { write: true, user: false }))).toBe("EPT_ADDRESS_OUT_OF_RANGE");
    expect(code(() => t.map(0x00007ffffffff000n, 0, 0x2000, { write: true, user: false }))).toBe("EPT_ADDRESS_OUT_OF_RANGE");
  });

  it("reports each kind of fault with its level", () => {
    const { memory, allocator } = setup();
    const t = new PagingTables(memory, allocator, { smep: true, smap: true, pkru: 0b0100 });
    t.map(0, 0, 0x1000, { write: false, user: true, execute: false });
    t.map(0x1000, 0x1000, 0x1000, { write: true, user: true, protectionKey: 1 });
    t.map(0x200000, 0x200000, 0x200000, { write: true, user: false });
    expect(t.translate(0x5000).fault).toMatchObject({ reason: "not-present", level: 1 });
    expect(t.translate(GiB).fault).toMatchObject({ reason: "not-present", level: 3 });
    expect(t.translate(0x10, { write: true, user: true }).fault?.reason).toBe("permission");
    expect(t.translate(0x10, { execute: true, user: true }).fault?.message).toMatch(/execute-disable/);
    expect(t.translate(0x200000, { user: true }).fault?.message).toMatch(/supervisor page/);
    expect(t.translate(0x10).fault?.message).toMatch(/SMAP/);
    expect(t.translate(0x1010, { user: true }).fault?.message).toMatch(/protection key 1/);
    expect(t.translateFast(0x1010, Access.USER)).toBe(Fault.PERMISSION);
    expect(t.translate(0x200010, { write: true }).ok).toBe(true);
    // Corrupt the PDE for 2 MiB with a reserved bit (bit 13 of a large PDE).
    const pdeAddr = t.translate(0x200000).steps[2]!.entryAddress;
    memory.writeU64(pdeAddr, memory.readU64(pdeAddr) | 0x2000n);
    expect(t.translate(0x200000).fault).toMatchObject({ reason: "reserved", level: 2 });
    expect(t.translateFast(0x200000)).toBe(Fault.RESERVED);
    expect(code(() => t.unmap(0x200000, 0x200000))).toBe("EPT_CORRUPT_TABLE");
  });

  it("supervisor writes to read-only pages follow CR0.WP", () => {
    const { memory, allocator } = setup();
    const wp0 = new PagingTables(memory, allocator, { wp: false });
    wp0.map(0, 0, 0x1000, { write: false, user: false });
    expect(wp0.translate(0, { write: true }).ok).toBe(true);
    expect(wp0.translate(0, { write: true, user: true }).ok).toBe(false);
    const wp1 = new PagingTables(memory, allocator, { root: wp0.root });
    expect(wp1.translate(0, { write: true }).fault?.reason).toBe("permission");
  });

  it("splits large pages keeping frames and attributes (PAT moves to bit 7)", () => {
    const { memory, allocator } = setup();
    const t = new PagingTables(memory, allocator);
    t.map(0, 0, GiB, { write: true, user: true, pat: true, global: true }, { pageSize: GiB });
    t.split(0x12345678);
    expect(t.mappings()).toHaveLength(512);
    t.split(0x200000);
    const maps = t.mappings();
    expect(maps).toHaveLength(1023);
    expect(maps[1]).toMatchObject({ address: 0x200000n, physical: 0x200000n, size: 4096 });
    expect(maps[1]!.attributes).toMatchObject({ pat: true, global: true, write: true, user: true });
    const pte = t.translate(0x201000).steps[3]!.entry;
    expect(pte & 0x80n).toBe(0x80n); // PAT of a 4 KiB page
    expect(t.translate(0x3ff000).physical).toBe(0x3ff000n);
    expect(code(() => t.split(0x201000))).toBe("EPT_NOT_LARGE_PAGE");
    expect(code(() => t.split(2 * GiB))).toBe("EPT_NOT_MAPPED");
  });

  it("protect changes attributes in place and refuses holes and cut large pages", () => {
    const { memory, allocator } = setup();
    const t = new PagingTables(memory, allocator);
    t.map(0, 0, 0x400000, { write: true, user: false });
    t.protect(0, 0x200000, { write: false, user: true });
    expect(t.translate(0x1000, { write: true }).fault?.reason).toBe("permission");
    expect(t.translate(0x1000, { user: true }).physical).toBe(0x1000n);
    expect(code(() => t.protect(0, 0x1000, { write: true, user: false }))).toBe("EPT_PARTIAL_LARGE_PAGE");
    expect(code(() => t.protect(0x200000, 0x400000, { write: true, user: false }))).toBe("EPT_NOT_MAPPED");
    expect(code(() => t.unmap(0x201000, 0x1000))).toBe("EPT_PARTIAL_LARGE_PAGE");
  });

  it("rejects bad requests with typed errors", () => {
    const { memory, allocator } = setup(4);
    const t = new PagingTables(memory, allocator, { maxPhyAddr: 36 });
    const rw = { write: true, user: false };
    expect(code(() => t.map(0x1001, 0, 0x1000, rw))).toBe("EPT_MISALIGNED");
    expect(code(() => t.map(0, 0x800, 0x1000, rw))).toBe("EPT_MISALIGNED");
    expect(code(() => t.map(0, 0, 0, rw))).toBe("EPT_INVALID_ARGUMENT");
    expect(code(() => t.map(0, 2 ** 36, 0x1000, rw))).toBe("EPT_BEYOND_MAXPHYADDR");
    expect(code(() => t.map(0, 2 ** 36 - 0x1000, 0x2000, rw))).toBe("EPT_BEYOND_MAXPHYADDR");
    expect(code(() => t.map(-1, 0, 0x1000, rw))).toBe("EPT_INVALID_ARGUMENT");
    t.map(0, 0, 0x2000, rw);
    expect(code(() => t.map(0x1000, 0, 0x1000, rw))).toBe("EPT_OVERLAP");
    // 4 pages: root + PDPT + PD + PT, all in use; a map at 1 GiB needs another PD and PT.
    expect(allocator.available).toBe(0);
    expect(code(() => t.map(GiB, 0, 0x1000, rw))).toBe("EPT_ALLOCATOR_EXHAUSTED");
    expect(t.translate(GiB).ok).toBe(false);
    expect(code(() => t.map(0, 0, 0x1000, { write: true, user: false, protectionKey: 16 }))).toBe("EPT_INVALID_ARGUMENT");
    expect(code(() => new PagingTables(memory, allocator, { levels: 3 as 4 }))).toBe("EPT_INVALID_ARGUMENT");
    expect(code(() => new TableAllocator(memory, 0x1000, 0x800))).toBe("EPT_ALLOCATOR_REGION");
    expect(code(() => new TableAllocator(memory, 15 * MiB, 2 * MiB))).toBe("EPT_ALLOCATOR_REGION");
    expect(code(() => allocator.free(0))).toBe("EPT_ALLOCATOR_BAD_FREE");
    expect(code(() => new PagingTables(memory, allocator, { root: 32 * MiB }))).toBe("EPT_TABLE_OUTSIDE_MEMORY");
  });

  it("rolls back a map that runs out of table pages", () => {
    const { memory, allocator } = setup(4);
    const t = new PagingTables(memory, allocator);
    // Needs a PDPT, a PD and two PTs: one more page than is left.
    expect(code(() => t.map(0x1ff000, 0, 0x2000, { write: true, user: false }))).toBe("EPT_ALLOCATOR_EXHAUSTED");
    expect(allocator.used).toBe(1);
    expect(t.mappings()).toEqual([]);
  });

  it("walks 5-level tables", () => {
    const { memory, allocator } = setup();
    const t = new PagingTables(memory, allocator, { levels: 5 });
    const va = 0xff00000000000000n + 0x1234000n;
    t.map(va, 0x5000, 0x1000, { write: true, user: false });
    const r = t.translate(va + 0x10n);
    expect(r.physical).toBe(0x5010n);
    expect(r.steps.map((s) => s.level)).toEqual([5, 4, 3, 2, 1]);
    expect(r.steps[0]!.index).toBe(0x100);
    expect(t.translate(0xfe00000000000000n).fault?.reason).toBe("address-out-of-range");
  });
});

describe("EPT tables", () => {
  it("encodes leaves per the EPT format and checks R/W/X and MBEC user-execute", () => {
    const { memory, allocator } = setup();
    const t = new EptTables(memory, allocator, { mbec: true, executeOnly: true });
    t.map(0, 0x100000, 0x1000, { read: true, write: false, execute: false, userExecute: true, memoryType: 0 });
    t.map(0x1000, 0x101000, 0x1000, { read: false, write: false, execute: true });
    const pte = decodeEptEntry(1, t.translate(0).steps[3]!.entry);
    expect(pte).toMatchObject({ kind: "page", read: true, write: false, execute: false, userExecute: true, memoryType: 0, address: 0x100000n });
    expect(t.translate(0x10).physical).toBe(0x100010n);
    expect(t.translate(0x10, { write: true }).fault?.message).toMatch(/write/);
    expect(t.translate(0x10, { execute: true }).fault?.reason).toBe("permission");
    expect(t.translate(0x10, { execute: true, user: true }).ok).toBe(true);
    expect(t.translate(0x1010).fault?.reason).toBe("permission");
    expect(t.translate(0x1010, { execute: true }).physical).toBe(0x101010n);
    expect(t.eptp()).toBe(BigInt(t.root) | 0x1en);
  });

  it("refuses EPT leaves that would be misconfigured and finds misconfigurations in memory", () => {
    const { memory, allocator } = setup();
    const t = new EptTables(memory, allocator, { maxPhyAddr: 39 });
    expect(code(() => t.map(0, 0, 0x1000, { read: false, write: true, execute: false }))).toBe("EPT_INVALID_ENTRY");
    expect(code(() => t.map(0, 0, 0x1000, { read: false, write: false, execute: true }))).toBe("EPT_INVALID_ENTRY");
    expect(code(() => t.map(0, 0, 0x1000, { read: false, write: false, execute: false }))).toBe("EPT_INVALID_ENTRY");
    expect(code(() => t.map(0, 0, 0x1000, { read: true, write: false, execute: false, userExecute: true }))).toBe("EPT_INVALID_ENTRY");
    expect(code(() => t.map(0, 2 ** 39, 0x1000, { read: true, write: false, execute: false }))).toBe("EPT_BEYOND_MAXPHYADDR");
    expect(code(() => t.map(2 ** 48, 0, 0x1000, { read: true, write: false, execute: false }))).toBe("EPT_ADDRESS_OUT_OF_RANGE");
    t.map(0, 0, 0x1000, { read: true, write: true, execute: false });
    const pteAddr = t.translate(0).steps[3]!.entryAddress;
    memory.writeU64(pteAddr, (memory.readU64(pteAddr) & ~0x38n) | (2n << 3n));
    expect(t.translate(0).fault).toMatchObject({ reason: "reserved", level: 1 });
    memory.writeU64(pteAddr, 0x2n);
    expect(t.translate(0).fault).toMatchObject({ reason: "reserved", level: 1 });
    memory.writeU64(pteAddr, (1n << 39n) | 0x31n);
    expect(t.translate(0).fault?.reason).toBe("reserved");
    expect(t.translate(2 ** 48).fault?.reason).toBe("address-out-of-range");
  });

  it("honours missing large-page support", () => {
    const { memory, allocator } = setup();
    const t = new EptTables(memory, allocator, { pages2M: false, pages1G: false });
    t.map(GiB - 0x200000, 0, 0x400000, { read: true, write: true, execute: true }, {});
    expect(t.mappings()).toHaveLength(1024);
    expect(new Set(t.mappings().map((m) => m.size))).toEqual(new Set([4096]));
    expect(code(() => t.map(4 * GiB, 0, GiB, { read: true, write: false, execute: false }, { pageSize: GiB }))).toBe("EPT_PAGE_SIZE_UNSUPPORTED");
  });
});
