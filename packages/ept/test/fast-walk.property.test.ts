import { GuestMemoryMap } from "@tsvmm/abi";
import {
  Access,
  type EptPageAttributes,
  EptTables,
  Fault,
  type FaultReason,
  type PageTables,
  type PagingPageAttributes,
  PagingTables,
  TableAllocator,
} from "@tsvmm/ept";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

// translateFast takes a specialised path (and, for the common EPT case, a second quick path that
// hands anything unusual back to it); translate keeps the general walker. They must agree on
// every input, including tables that were not built here: entries are corrupted at random below
// so that reserved bits, misconfigurations, tables outside memory and permission faults all occur.

const MiB = 1 << 20;
const GiB = 2 ** 30;
const REGION_B = 16 * MiB;
const REASONS: Record<number, FaultReason> = {
  [Fault.NOT_PRESENT]: "not-present",
  [Fault.RESERVED]: "reserved",
  [Fault.PERMISSION]: "permission",
  [Fault.ADDRESS_OUT_OF_RANGE]: "address-out-of-range",
  [Fault.TABLE_OUTSIDE_MEMORY]: "table-outside-memory",
};

interface Piece {
  va: number;
  pa: number;
  size: number;
  page: 4096 | 0x200000 | 0x40000000;
  a: number;
  b: number;
}

// Pieces fall into two 1 GiB windows (so tables are shared) plus an occasional 1 GiB page.
const pieceArb: fc.Arbitrary<Piece> = fc
  .record({
    window: fc.integer({ min: 0, max: 2 }),
    slot: fc.integer({ min: 0, max: 7 }),
    page: fc.integer({ min: 0, max: 511 }),
    kind: fc.integer({ min: 0, max: 9 }),
    count: fc.integer({ min: 1, max: 6 }),
    // Frames inside guest memory too, so a leaf misread as a table would find one.
    ppn: fc.oneof(fc.nat(1023), fc.nat(2 ** 22)),
    a: fc.nat(255),
    b: fc.nat(255),
  })
  .map((r): Piece => {
    if (r.kind === 0) return { va: 8 * GiB, pa: (r.ppn % 64) * GiB, size: GiB, page: 0x40000000, a: r.a, b: r.b };
    const large = r.kind <= 3;
    const va = r.window * GiB + r.slot * 0x200000 + (large ? 0 : r.page * 4096);
    const page = large ? 0x200000 : 4096;
    const pa = large ? (r.ppn & ~511) * 4096 : r.ppn * 4096;
    return { va, pa, size: r.count * page, page, a: r.a, b: r.b };
  });

// Each corruption hits an entry on the walk for some piece's address, at one of its levels.
const corruptionArb = fc.record({
  piece: fc.nat(),
  offset: fc.nat(0x200000),
  level: fc.nat(),
  mode: fc.integer({ min: 0, max: 4 }),
  bits: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
  bit: fc.oneof(fc.integer({ min: 0, max: 11 }), fc.integer({ min: 0, max: 63 })),
  table: fc.nat(),
});
type Corruption = typeof corruptionArb extends fc.Arbitrary<infer T> ? T : never;

const probeArb = fc.record({
  piece: fc.nat(),
  offset: fc.nat(2 * 0x200000),
  random: fc.oneof(fc.nat(3 * GiB), fc.nat(2 ** 48 + 4096), fc.constant(2 ** 53 - 4096)),
  useRandom: fc.nat(3).map((n) => n === 0),
  access: fc.nat(7),
});
type Probe = typeof probeArb extends fc.Arbitrary<infer T> ? T : never;

type Make<A> = (memory: GuestMemoryMap, allocator: TableAllocator, root: number | undefined) => PageTables<A>;

function build<A>(
  make: Make<A>,
  attrs: (a: number, b: number) => A,
  pieces: Piece[],
  split: boolean,
  corruptions: Corruption[],
): { t: PageTables<A>; memory: GuestMemoryMap } {
  const memory = GuestMemoryMap.allocate([
    { base: 0, size: 4 * MiB },
    { base: REGION_B, size: 2 * MiB },
  ]);
  // Either everything in region A, or the root in A and every other table in B (so walks cross
  // regions and leave the quick path).
  const allocator = split ? new TableAllocator(memory, REGION_B, 2 * MiB) : new TableAllocator(memory, MiB, 2 * MiB);
  const t = make(memory, allocator, split ? 0x3ff000 : undefined);
  for (const p of pieces) {
    try {
      t.map(p.va, p.pa, p.size, attrs(p.a, p.b), { pageSize: p.page });
    } catch {
      // Overlaps and attributes the format refuses are another test's business.
    }
  }
  const pages = t.tablePages();
  for (const c of corruptions) {
    const piece = pieces[c.piece % pieces.length]!;
    const steps = t.translate(piece.va + (c.offset % piece.size)).steps;
    const at = steps[c.level % steps.length]!.entryAddress;
    const old = memory.readU64(at);
    const value =
      c.mode === 0
        ? old ^ (1n << BigInt(c.bit))
        : c.mode === 1
          ? c.bits
          : c.mode === 2
            ? (old & 0xfffn) | BigInt(64 * MiB) // a table or page outside guest memory
            : c.mode === 3
              ? (old & 0xfffn) | BigInt(pages[(c.table + 1) % pages.length]!.address)
              : old & ~7n;
    memory.writeU64(at, value);
  }
  return { t, memory };
}

function agree<A>(t: PageTables<A>, pieces: Piece[], probes: Probe[]): void {
  for (const pr of probes) {
    const piece = pieces[pr.piece % pieces.length]!;
    const address = pr.useRandom ? pr.random : piece.va + (pr.offset % (piece.size + 4096));
    const fast = t.translateFast(address, pr.access);
    const full = t.translate(address, {
      write: (pr.access & Access.WRITE) !== 0,
      execute: (pr.access & Access.EXECUTE) !== 0,
      user: (pr.access & Access.USER) !== 0,
    });
    if (fast >= 0) {
      expect(full.ok, `${address.toString(16)} access ${pr.access}: fast ${fast.toString(16)}, full ${full.fault?.reason}`).toBe(true);
      expect(full.physical).toBe(BigInt(fast));
    } else {
      expect(full.fault?.reason, `${address.toString(16)} access ${pr.access}`).toBe(REASONS[fast]);
    }
  }
}

function check<A>(formatArb: fc.Arbitrary<{ make: Make<A>; attrs: (a: number, b: number) => A }>): void {
  fc.assert(
    fc.property(
      formatArb,
      fc.array(pieceArb, { minLength: 1, maxLength: 8 }),
      fc.boolean(),
      fc.array(corruptionArb, { maxLength: 3 }),
      fc.array(probeArb, { minLength: 1, maxLength: 60 }),
      ({ make, attrs }, pieces, split, corruptions, probes) => {
        const { t } = build(make, attrs, pieces, split, corruptions);
        agree(t, pieces, probes);
      },
    ),
    { numRuns: 80 },
  );
}

describe("translateFast agrees with translate", () => {
  it("EPT, every capability combination, corrupted tables included", () => {
    const make = fc
      .record({
        levels: fc.constantFrom(4 as const, 4 as const, 5 as const),
        maxPhyAddr: fc.constantFrom(39, 46, 52),
        mbec: fc.boolean(),
        executeOnly: fc.boolean(),
        pages2M: fc.boolean(),
        pages1G: fc.boolean(),
      })
      .map((o) => ({
        make: ((memory, allocator, root) => new EptTables(memory, allocator, { ...o, root })) as Make<EptPageAttributes>,
        // Attributes the options allow, so most pieces get mapped.
        attrs: (a: number, b: number): EptPageAttributes => ({
          read: (a & 1) !== 0 || !o.executeOnly,
          write: (a & 3) === 3 || (a & 3) === 2 && !o.executeOnly,
          execute: (a & 4) !== 0 || (a & 7) === 0,
          userExecute: o.mbec && (a & 8) !== 0,
          memoryType: (b & 1) === 0 ? 6 : 0,
          ignorePat: (b & 2) !== 0,
          suppressVe: (b & 4) !== 0,
        }),
      }));
    check(make);
  });

  it("IA-32e, with NXE, WP, SMEP, SMAP and protection keys", () => {
    const make = fc
      .record({
        levels: fc.constantFrom(4 as const, 5 as const),
        maxPhyAddr: fc.constantFrom(36, 46, 52),
        nxe: fc.boolean(),
        wp: fc.boolean(),
        smep: fc.boolean(),
        smap: fc.boolean(),
        pages1G: fc.boolean(),
        pkru: fc.option(fc.nat(0xffffffff), { nil: undefined }),
        pkrs: fc.option(fc.nat(0xffffffff), { nil: undefined }),
      })
      .map((o) => ({
        make: ((memory, allocator, root) => new PagingTables(memory, allocator, { ...o, root })) as Make<PagingPageAttributes>,
        attrs: (a: number, b: number): PagingPageAttributes => ({
          write: (a & 1) !== 0,
          user: (a & 2) !== 0,
          execute: (a & 4) !== 0 || !o.nxe,
          global: (a & 8) !== 0,
          pat: (b & 1) !== 0,
          protectionKey: (b >>> 1) & 15,
        }),
      }));
    check(make);
  });

  it("the quick EPT walk hands back every fault with its exact reason", () => {
    const memory = GuestMemoryMap.allocate([{ base: 0, size: 4 * MiB }]);
    const t = new EptTables(memory, new TableAllocator(memory, 0, 4 * MiB), { maxPhyAddr: 46 });
    t.map(0, 0x100000000, 0x4000, { read: true, write: false, execute: true }, { pageSize: 4096 });
    expect(t.translateFast(0x1234)).toBe(0x100001234);
    expect(t.translateFast(0x1234, Access.WRITE)).toBe(Fault.PERMISSION);
    expect(t.translateFast(0x5000)).toBe(Fault.NOT_PRESENT);
    expect(t.translateFast(2 ** 48)).toBe(Fault.ADDRESS_OUT_OF_RANGE);
    const pte = t.translate(0x2000).steps[3]!.entryAddress;
    memory.writeU64(pte, memory.readU64(pte) | (1n << 50n)); // past MAXPHYADDR 46
    expect(t.translateFast(0x2000)).toBe(Fault.RESERVED);
    memory.writeU64(pte, (memory.readU64(pte) & ~(1n << 50n) & ~0x38n) | 0x10n); // memory type 2
    expect(t.translateFast(0x2000)).toBe(Fault.RESERVED);
    // Write-only is a misconfiguration even when the access asks only for the write bit.
    const pte1 = t.translate(0x1000).steps[3]!.entryAddress;
    memory.writeU64(pte1, memory.readU64(pte1) & ~1n | 2n);
    expect(t.translateFast(0x1000, Access.WRITE)).toBe(Fault.RESERVED);
    const pde = t.translate(0x3000).steps[2]!.entryAddress;
    memory.writeU64(pde, (memory.readU64(pde) & 0xfffn) | BigInt(64 * MiB));
    expect(t.translateFast(0x3000)).toBe(Fault.TABLE_OUTSIDE_MEMORY);
  });

  it("the quick EPT walk leaves large pages, disallowed leaves and region edges to the full walk", () => {
    const memory = GuestMemoryMap.allocate([{ base: 0, size: 4 * MiB }]);
    // Tables end exactly at the end of the region, so the last table is the region's last page.
    const allocator = new TableAllocator(memory, 2 * MiB, 2 * MiB);
    const t = new EptTables(memory, allocator, { maxPhyAddr: 46 });
    // A UC 2 MiB page whose frame holds this very table tree: read as a table it would "translate".
    t.map(0x200000, 2 * MiB, 0x200000, { read: true, write: true, execute: true, memoryType: 0 });
    t.map(0x400000, 0x7000, 0x1000, { read: true, write: true, execute: true }, { pageSize: 4096 });
    for (let off = 0; off < 0x200000; off += 0x1000) expect(t.translateFast(0x200000 + off + 8)).toBe(2 * MiB + off + 8);
    const pt = t.translate(0x400000).steps[3]!.table;
    expect(pt).toBeLessThan(BigInt(4 * MiB));
    expect(t.translateFast(0x400010)).toBe(0x7010);
    // Without 2 MiB pages, a PDE with bit 7 set is reserved, not a leaf.
    const small = new EptTables(memory, allocator, { maxPhyAddr: 46, pages2M: false });
    small.map(0, 0x200000, 0x1000, { read: true, write: true, execute: true });
    // (A 2 MiB-aligned frame, so only the leaf rule, not the leaf's reserved bits 20:12, refuses it.)
    const pde = small.translate(0).steps[2]!.entryAddress;
    memory.writeU64(pde, 0x200000n | 0x87n);
    expect(small.translateFast(0)).toBe(Fault.RESERVED);
    expect(small.translate(0).fault?.reason).toBe("reserved");
    // A table just past the end of the region is outside memory, not the region's last page.
    memory.writeU64(pde, BigInt(4 * MiB) | 7n);
    expect(small.translateFast(0)).toBe(Fault.TABLE_OUTSIDE_MEMORY);
    // The region's last page (unused, so all zero) is inside: the walk reads it and finds nothing.
    memory.writeU64(pde, BigInt(4 * MiB - 4096) | 7n);
    expect(small.translateFast(0)).toBe(Fault.NOT_PRESENT);
    expect(small.translate(0).fault).toMatchObject({ reason: "not-present", level: 1 });
  });
});
