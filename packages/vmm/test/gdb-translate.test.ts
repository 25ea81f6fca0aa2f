// Guest-virtual translation for the gdb target in the paging modes the test guests do not use
// (32-bit and PAE paging), against page tables written here from the SDM's formats.
import { GuestMemoryMap } from "@tsvmm/abi";
import { LinearTranslator, pagingMode, planLinear, readLinear } from "@tsvmm/vmm";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

const MiB = 1 << 20;
const CR0_PE_PG = 0x8000_0001n;
const CR4_PSE = 0x10n;
const CR4_PAE = 0x20n;
const EFER_LMA_LME = 0x500n;

/** Table pages from 1 MiB up; data pages from 4 MiB up (of 8 MiB of RAM). */
function memory(): { mem: GuestMemoryMap; alloc: () => number } {
  const mem = GuestMemoryMap.allocate([{ base: 0, size: 8 * MiB }]);
  let next = 1 * MiB;
  return {
    mem,
    alloc: () => {
      const p = next;
      next += 4096;
      return p;
    },
  };
}

/** 32-bit paging: map 4 KiB linear page `la` to `pa` (SDM 4.3: PDE/PTE of 4 bytes, bit 0 P, bit 1 R/W). */
function map32(mem: GuestMemoryMap, alloc: () => number, cr3: number, la: number, pa: number): void {
  const pdeAt = cr3 + (la >>> 22) * 4;
  let pde = mem.readU32(pdeAt);
  if ((pde & 1) === 0) {
    pde = (alloc() | 3) >>> 0;
    mem.writeU32(pdeAt, pde);
  }
  mem.writeU32((pde & 0xfffff000) + ((la >>> 12) & 0x3ff) * 4, (pa | 3) >>> 0);
}

/** PAE paging: map 4 KiB linear page `la` to `pa` (SDM 4.4: 4 PDPTEs, then 8-byte PDEs and PTEs). */
function mapPae(mem: GuestMemoryMap, alloc: () => number, cr3: number, la: number, pa: number): void {
  const pdpteAt = cr3 + (la >>> 30) * 8;
  let pdpte = Number(mem.readU64(pdpteAt));
  if ((pdpte & 1) === 0) {
    pdpte = alloc() | 1;
    mem.writeU64(pdpteAt, BigInt(pdpte));
  }
  const pdeAt = (pdpte & ~0xfff) + ((la >>> 21) & 0x1ff) * 8;
  let pde = Number(mem.readU64(pdeAt));
  if ((pde & 1) === 0) {
    pde = alloc() | 3;
    mem.writeU64(pdeAt, BigInt(pde));
  }
  mem.writeU64((pde & ~0xfff) + ((la >>> 12) & 0x1ff) * 8, BigInt(pa | 3));
}

const pageMap = fc.uniqueArray(fc.tuple(fc.integer({ min: 0, max: 0xfffff }), fc.integer({ min: 1024, max: 2047 })), { minLength: 1, maxLength: 40, selector: (t) => t[0] });

describe("LinearTranslator", () => {
  it("names the paging mode from CR0/CR4/EFER", () => {
    expect(pagingMode({ cr0: 0x10n, cr3: 0n, cr4: 0n, efer: 0n })).toBe("none");
    expect(pagingMode({ cr0: 0x11n, cr3: 0n, cr4: 0n, efer: 0n })).toBe("none");
    expect(pagingMode({ cr0: CR0_PE_PG, cr3: 0n, cr4: 0n, efer: 0n })).toBe("32-bit");
    expect(pagingMode({ cr0: CR0_PE_PG, cr3: 0n, cr4: CR4_PAE, efer: 0n })).toBe("pae");
    expect(pagingMode({ cr0: CR0_PE_PG, cr3: 0n, cr4: CR4_PAE, efer: EFER_LMA_LME })).toBe("4-level");
    expect(pagingMode({ cr0: CR0_PE_PG, cr3: 0n, cr4: CR4_PAE | 0x1000n, efer: EFER_LMA_LME })).toBe("5-level");
  });

  it("32-bit paging: mapped pages translate to their frames, every other page is unmapped", () => {
    fc.assert(
      fc.property(pageMap, fc.integer({ min: 0, max: 0xfff }), (pairs, offset) => {
        const { mem, alloc } = memory();
        const cr3 = alloc();
        for (const [lp, pp] of pairs) map32(mem, alloc, cr3, lp * 4096, pp * 4096);
        const t = new LinearTranslator(mem, { cr0: CR0_PE_PG, cr3: BigInt(cr3), cr4: 0n, efer: 0n });
        const model = new Map(pairs);
        for (const [lp, pp] of pairs) expect(t.translate(BigInt(lp * 4096 + offset))).toBe(BigInt(pp * 4096 + offset));
        for (const lp of [0, 1, 0x400, 0xfffff, pairs[0]![0] ^ 1]) {
          if (!model.has(lp)) expect(t.translate(BigInt(lp * 4096 + offset))).toBeUndefined();
        }
      }),
      { numRuns: 200 },
    );
  });

  it("32-bit paging: a 4 MiB page with CR4.PSE (and PSE-36 high bits), ignored as a page without PSE", () => {
    const { mem, alloc } = memory();
    const cr3 = alloc();
    // PDE 3 (linear 12 MiB): a 4 MiB page at physical 4 MiB | 1 << 32 (PDE bits 20:13 = PA bits 39:32).
    mem.writeU32(cr3 + 3 * 4, (0x400000 | (1 << 13) | 0x83) >>> 0);
    const pse = new LinearTranslator(mem, { cr0: CR0_PE_PG, cr3: BigInt(cr3), cr4: CR4_PSE, efer: 0n });
    expect(pse.translate(0xc12345n)).toBe((1n << 32n) | 0x412345n);
    // Without PSE the entry points at a page table (at 4 MiB, all zero): nothing mapped.
    const nopse = new LinearTranslator(mem, { cr0: CR0_PE_PG, cr3: BigInt(cr3), cr4: 0n, efer: 0n });
    expect(nopse.translate(0xc12345n)).toBeUndefined();
  });

  it("PAE paging: mapped pages translate, others are unmapped; 2 MiB pages", () => {
    fc.assert(
      fc.property(pageMap, fc.integer({ min: 0, max: 0xfff }), (pairs, offset) => {
        const { mem, alloc } = memory();
        const cr3 = alloc();
        for (const [lp, pp] of pairs) mapPae(mem, alloc, cr3, lp * 4096, pp * 4096);
        const t = new LinearTranslator(mem, { cr0: CR0_PE_PG, cr3: BigInt(cr3), cr4: CR4_PAE, efer: 0n });
        const model = new Map(pairs);
        for (const [lp, pp] of pairs) expect(t.translate(BigInt(lp * 4096 + offset))).toBe(BigInt(pp * 4096 + offset));
        for (const lp of [0, 0x200, 0x40000, 0xfffff]) if (!model.has(lp)) expect(t.translate(BigInt(lp * 4096 + offset))).toBeUndefined();
      }),
      { numRuns: 200 },
    );
    const { mem, alloc } = memory();
    const cr3 = alloc();
    const pd = alloc();
    mem.writeU64(cr3 + 2 * 8, BigInt(pd | 1)); // linear 2 GiB..3 GiB
    mem.writeU64(pd + 5 * 8, BigInt(0x600000 | 0x83)); // 2 MiB page at 6 MiB
    const t = new LinearTranslator(mem, { cr0: CR0_PE_PG, cr3: BigInt(cr3), cr4: CR4_PAE, efer: 0n });
    expect(t.translate(0x80a12345n)).toBe(0x612345n);
  });

  it("without paging, linear is physical (32 bits)", () => {
    const { mem } = memory();
    const t = new LinearTranslator(mem, { cr0: 0x11n, cr3: 0n, cr4: 0n, efer: 0n });
    expect(t.translate(0x12345n)).toBe(0x12345n);
    expect(t.translate(0x1_0000_1000n)).toBe(0x1000n);
  });

  it("reads across a page boundary join the two frames; a read into an unmapped page stops there; a write plan is all or nothing", () => {
    const { mem, alloc } = memory();
    const cr3 = alloc();
    map32(mem, alloc, cr3, 0x40000000, 0x500000);
    map32(mem, alloc, cr3, 0x40001000, 0x403000); // the next linear page is physically below
    mem.write(0x500ffc, Buffer.from([1, 2, 3, 4]));
    mem.write(0x403000, Buffer.from([5, 6, 7, 8]));
    const t = new LinearTranslator(mem, { cr0: CR0_PE_PG, cr3: BigInt(cr3), cr4: 0n, efer: 0n });
    expect([...readLinear(mem, t, 0x40000ffcn, 8)]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(readLinear(mem, t, 0x40001ffen, 8)).toHaveLength(2);
    expect(readLinear(mem, t, 0x40002000n, 8)).toHaveLength(0);
    expect(planLinear(mem, t, 0x40001ffen, 4)).toBeUndefined();
    expect(planLinear(mem, t, 0x40000ffen, 4)).toEqual([
      { pa: 0x500ffe, length: 2 },
      { pa: 0x403000, length: 2 },
    ]);
  });

  it("a table outside guest memory is unmapped, not an exception", () => {
    const { mem } = memory();
    const far = new LinearTranslator(mem, { cr0: CR0_PE_PG, cr3: 0xf000_0000n, cr4: 0n, efer: 0n });
    expect(far.translate(0x1000n)).toBeUndefined();
    const long = new LinearTranslator(mem, { cr0: CR0_PE_PG, cr3: 0x7_0000_0000n, cr4: CR4_PAE, efer: EFER_LMA_LME });
    expect(long.translate(0x1000n)).toBeUndefined();
    expect(readLinear(mem, long, 0x1000n, 16)).toHaveLength(0);
  });
});
