import { GuestMemoryMap } from "@tsvmm/abi";
import { type EptError, EptTables, type PageTables, PagingTables, TableAllocator } from "@tsvmm/ept";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

const GiB = 2 ** 30;
const G512 = 2 ** 39;

interface Req {
  va: number;
  pa: number;
  size: number;
  flag: boolean;
  forced4k: boolean;
}

// Ranges are placed inside a few 512 GiB / 1 GiB windows so tables get shared within a window
// and never across; sizes mix 4 KiB runs with 2 MiB-aligned runs so large pages appear.
const reqArb: fc.Arbitrary<Req> = fc
  .record({
    top: fc.integer({ min: 0, max: 2 }),
    gib: fc.integer({ min: 0, max: 2 }),
    slot2m: fc.integer({ min: 0, max: 6 }),
    page: fc.integer({ min: 0, max: 511 }),
    big: fc.boolean(),
    pages: fc.integer({ min: 1, max: 40 }),
    ppn: fc.integer({ min: 0, max: 2 ** 20 }),
    flag: fc.boolean(),
    forced4k: fc.boolean(),
  })
  .map((r) => {
    const va = r.top * G512 + r.gib * GiB + r.slot2m * 0x200000 + (r.big ? 0 : r.page * 4096);
    const size = r.big ? (1 + (r.pages % 3)) * 0x200000 : r.pages * 4096;
    const pa = r.big ? Math.floor(r.ppn / 512) * 0x200000 : r.ppn * 4096;
    return { va, pa, size, flag: r.flag, forced4k: r.forced4k };
  });

function overlaps(a: Req, b: Req): boolean {
  return a.va < b.va + b.size && b.va < a.va + a.size;
}

function checkAgainstReference<A>(t: PageTables<A>, ref: Req[], probes: number[], flagOf: (a: Required<A>) => boolean): void {
  for (const addr of probes) {
    const hit = ref.find((r) => addr >= r.va && addr < r.va + r.size);
    const tr = t.translate(addr);
    if (hit === undefined) {
      expect(tr.ok).toBe(false);
      expect(tr.fault?.reason).toBe("not-present");
    } else {
      expect(tr.physical).toBe(BigInt(hit.pa + (addr - hit.va)));
      expect(flagOf(tr.attributes!)).toBe(hit.flag);
      expect(t.translateFast(addr)).toBe(hit.pa + (addr - hit.va));
    }
  }
}

function checkAccounting<A>(t: PageTables<A>, allocator: TableAllocator): void {
  const pages = t.tablePages().map((p) => p.address);
  // Every page reached exactly once (no table shared by two entries) and the reachable set is
  // exactly what the allocator has handed out (nothing leaked).
  expect(new Set(pages).size).toBe(pages.length);
  expect([...pages].sort((a, b) => a - b)).toEqual(allocator.allocatedPages());
}

function checkWindows<A>(t: PageTables<A>, probes: number[]): void {
  // A PDPT belongs to one 512 GiB window, a PD to one 1 GiB window.
  const owner = new Map<bigint, number>();
  for (const addr of probes) {
    const tr = t.translate(addr);
    for (const s of tr.steps) {
      const window = s.level === 3 ? Math.floor(addr / G512) : s.level === 2 ? Math.floor(addr / GiB) : undefined;
      if (window === undefined) continue;
      const prev = owner.get(s.table);
      if (prev !== undefined) expect(prev).toBe(window);
      owner.set(s.table, window);
    }
  }
}

function run<A>(make: (m: GuestMemoryMap, a: TableAllocator) => PageTables<A>, attrs: (flag: boolean) => A, flagOf: (a: Required<A>) => boolean) {
  fc.assert(
    fc.property(fc.array(reqArb, { minLength: 1, maxLength: 12 }), fc.array(fc.nat(), { maxLength: 12 }), fc.array(fc.nat(3 * G512), { maxLength: 20 }), (reqs, unmapPick, extra) => {
      const memory = GuestMemoryMap.allocate([{ base: 0, size: 4 * 1024 * 1024 }]);
      const allocator = new TableAllocator(memory, 0, 4 * 1024 * 1024);
      const t = make(memory, allocator);
      const ref: Req[] = [];
      for (const r of reqs) {
        const clash = ref.some((x) => overlaps(x, r));
        let err: unknown;
        try {
          t.map(r.va, r.pa, r.size, attrs(r.flag), r.forced4k ? { pageSize: 4096 } : {});
        } catch (e) {
          err = e;
        }
        if (clash) expect((err as EptError).code).toBe("EPT_OVERLAP");
        else {
          expect(err).toBeUndefined();
          ref.push(r);
        }
      }
      const probes = [...extra.map((x) => x - (x % 8)), ...ref.flatMap((r) => [r.va - 4096, r.va, r.va + r.size - 8, r.va + r.size, r.va + Math.floor(r.size / 2)])].filter((x) => x >= 0);
      checkAgainstReference(t, ref, probes, flagOf);
      checkAccounting(t, allocator);
      checkWindows(t, probes);
      expect(t.mappings().reduce((s, m) => s + m.size, 0)).toBe(ref.reduce((s, r) => s + r.size, 0));
      // Unmap a chosen subset: those addresses become not-present, the others stay.
      const gone = new Set(unmapPick.map((i) => i % ref.length));
      for (const i of gone) t.unmap(ref[i]!.va, ref[i]!.size);
      const kept = ref.filter((_, i) => !gone.has(i));
      checkAgainstReference(t, kept, probes, flagOf);
      checkAccounting(t, allocator);
      for (const r of kept) t.unmap(r.va, r.size);
      expect(t.mappings()).toEqual([]);
      expect(allocator.allocatedPages()).toEqual([t.root]);
    }),
    { numRuns: 60 },
  );
}

describe("tables agree with a reference map", () => {
  it("IA-32e", () => {
    run(
      (m, a) => new PagingTables(m, a),
      (flag) => ({ write: flag, user: !flag }),
      (a) => a.write && !a.user,
    );
  });
  it("EPT", () => {
    run(
      (m, a) => new EptTables(m, a),
      (flag) => ({ read: true, write: flag, execute: !flag }),
      (a) => a.write && !a.execute,
    );
  });
  it("split keeps every translation", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 3 }), fc.array(fc.nat(GiB - 1), { minLength: 1, maxLength: 8 }), (pdIndex, probes) => {
        const memory = GuestMemoryMap.allocate([{ base: 0, size: 1024 * 1024 }]);
        const allocator = new TableAllocator(memory, 0, 1024 * 1024);
        const t = new PagingTables(memory, allocator);
        t.map(GiB, 2 * GiB, GiB, { write: true, user: false, execute: false, pat: true }, { pageSize: 0x40000000 });
        const before = probes.map((p) => t.translate(GiB + p));
        t.split(GiB + pdIndex * 0x200000);
        t.split(GiB + pdIndex * 0x200000 + 0x1000);
        probes.forEach((p, i) => {
          const after = t.translate(GiB + p);
          expect(after.physical).toBe(before[i]!.physical);
          expect(after.attributes).toEqual(before[i]!.attributes);
        });
        checkAccounting(t, allocator);
      }),
      { numRuns: 30 },
    );
  });
});
