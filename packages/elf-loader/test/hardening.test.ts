import { GuestMemoryMap } from "@tsvmm/abi";
import { BootError, bootMultiboot, bootPvh, LoadError, loadElf, PF_R, PF_W, PF_X, parseBzImage } from "@tsvmm/elf-loader";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { buildBzImage } from "./helpers/bzimage-builder.js";
import { buildElf, note } from "./helpers/elf-builder.js";
import { RecordingMemory } from "./helpers/recording-memory.js";

// Images that would run over the VMM's own boot data, or start outside their own code, are
// refused before anything is written: typed errors the CLI reports as bad input (exit 2).

const MEM = 4 << 20;
const code = Buffer.alloc(0x100, 0x90);

function refused(f: () => unknown, code: string, mem: RecordingMemory): void {
  mem.reset();
  expect(f).toThrowError(expect.objectContaining({ code }));
  expect(mem.writes).toEqual([]);
}

describe("segments over ranges the VMM reserves", () => {
  const mem = new RecordingMemory(GuestMemoryMap.allocate([{ base: 0, size: MEM }]));
  // The boot contract of the test kernels: GDT and page tables in 0x500..0x4000.
  const reserved = [{ address: 0x500, size: 0x4000 - 0x500, what: "boot GDT and page tables" }];

  it("a segment over the reserved area is LOAD_OVERLAPS_RESERVED, one beside it loads", () => {
    const over = buildElf({ class: 64, entry: 0x3000n, segments: [{ vaddr: 0x3000n, data: code, memsz: 0x2000n }] });
    refused(() => loadElf(mem, over, { reserved }), "LOAD_OVERLAPS_RESERVED", mem);
    expect(() => loadElf(mem, over, { reserved })).toThrow(LoadError);
    expect(() => loadElf(mem, over, { reserved })).toThrowError(/boot GDT and page tables/);
    const beside = buildElf({ class: 64, entry: 0x4000n, segments: [{ vaddr: 0x4000n, data: code }] });
    expect(loadElf(mem, beside, { reserved }).entry).toBe(0x4000n);
    // Only the bss tail overlapping counts too: what is zeroed is written.
    const bss = buildElf({ class: 32, entry: 0x100n, segments: [{ vaddr: 0x100n, data: Buffer.alloc(0x10, 0x90), memsz: 0x500n }] });
    refused(() => loadElf(mem, bss, { reserved }), "LOAD_OVERLAPS_RESERVED", mem);
    expect(loadElf(mem, bss).entry).toBe(0x100n);
  });

  it("refused exactly when some segment intersects some reserved range (property)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ at: fc.nat({ max: 0x3f }), pages: fc.integer({ min: 1, max: 3 }) }), { minLength: 1, maxLength: 3 }),
        fc.array(fc.record({ address: fc.nat({ max: 0x50000 }), size: fc.nat({ max: 0x3000 }) }), { maxLength: 3 }),
        (segs, res) => {
          // Disjoint segments: each in its own 0x10000 slot.
          const segments = segs.map((s, i) => ({ vaddr: BigInt(i * 0x10000 + s.at * 0x100), data: Buffer.alloc(0x10, 0x90), memsz: BigInt(s.pages * 0x1000), flags: PF_R | PF_X }));
          const elf = buildElf({ class: 64, entry: segments[0]!.vaddr, segments });
          const ranges = res.map((r, i) => ({ ...r, what: `r${i}` }));
          const hits = segments.some((s) => ranges.some((r) => r.size > 0 && BigInt(r.address) < s.vaddr + s.memsz && s.vaddr < BigInt(r.address + r.size)));
          mem.reset();
          if (hits) refused(() => loadElf(mem, elf, { reserved: ranges }), "LOAD_OVERLAPS_RESERVED", mem);
          else expect(loadElf(mem, elf, { reserved: ranges }).segments.length).toBe(segments.length);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("a reserved range of no bytes keeps nothing, even when it points inside a segment (seed -1147817780 of the property above)", () => {
    const elf = buildElf({ class: 64, entry: 0x10000n, segments: [{ vaddr: 0x10000n, data: code }] });
    mem.reset();
    expect(loadElf(mem, elf, { reserved: [{ address: 0x10001, size: 0, what: "r0" }] }).segments.length).toBe(1);
    mem.reset();
    refused(() => loadElf(mem, elf, { reserved: [{ address: 0x10001, size: 1, what: "r0" }] }), "LOAD_OVERLAPS_RESERVED", mem);
  });

  it("malformed reserved ranges are LOAD_BAD_OPTION", () => {
    const elf = buildElf({ class: 64, entry: 0x10000n, segments: [{ vaddr: 0x10000n, data: code }] });
    for (const bad of [[{ address: Number.NaN, size: 1, what: "x" }], [{ address: 0, size: -1, what: "x" }], "no" as unknown as []]) {
      refused(() => loadElf(mem, elf, { reserved: bad }), "LOAD_BAD_OPTION", mem);
    }
  });
});

describe("an entry point outside the image's own code", () => {
  const mem = new RecordingMemory(GuestMemoryMap.allocate([{ base: 0, size: MEM }]));

  it("e_entry in no segment, in a non-executable segment, or past the end is LOAD_ENTRY_OUTSIDE_SEGMENTS", () => {
    const text = { vaddr: 0x100000n, data: code, memsz: 0x1000n, flags: PF_R | PF_X };
    const data = { vaddr: 0x200000n, data: code, memsz: 0x1000n, flags: PF_R | PF_W };
    for (const entry of [0x0n, 0xfffffn, 0x101000n, 0x200010n, 0xffffffff81000000n]) {
      for (const cls of [32, 64] as const) {
        if (cls === 32 && entry > 0xffffffffn) continue;
        refused(() => loadElf(mem, buildElf({ class: cls, entry, segments: [text, data] })), "LOAD_ENTRY_OUTSIDE_SEGMENTS", mem);
      }
    }
    // The first and last byte of the executable segment (bss included) are inside.
    expect(loadElf(mem, buildElf({ class: 64, entry: 0x100000n, segments: [text, data] })).entry).toBe(0x100000n);
    expect(loadElf(mem, buildElf({ class: 64, entry: 0x100fffn, segments: [text, data] })).entry).toBe(0x100fffn);
    // With an offset the entry moves with the segments.
    expect(loadElf(mem, buildElf({ class: 64, entry: 0x100010n, segments: [text] }), { offset: 0x10000 }).entry).toBe(0x110010n);
    // Turned off on request (a protocol with its own entry).
    expect(loadElf(mem, buildElf({ class: 64, entry: 0n, segments: [text] }), { checkEntry: false }).entry).toBe(0n);
  });

  it("a PVH entry outside the kernel's code is refused; e_entry does not matter to PVH", () => {
    const pvh = (entry: number, eEntry: bigint) => {
      const e = Buffer.alloc(4);
      e.writeUInt32LE(entry);
      return buildElf({
        class: 64,
        entry: eEntry,
        segments: [
          { vaddr: 0x100000n, data: code, memsz: 0x2000n, flags: PF_R | PF_X },
          { type: 4, vaddr: 0n, data: note("Xen", 18, e) },
        ],
      });
    };
    refused(() => bootPvh(mem, pvh(0x300000, 0x100000n)), "LOAD_ENTRY_OUTSIDE_SEGMENTS", mem);
    expect(bootPvh(mem, pvh(0x100010, 0xffffffff81000000n)).entry).toBe(0x100010);
  });

  it("a Multiboot a.out-kludge entry outside the loaded image is MULTIBOOT_BAD_ADDRESS", () => {
    const kludge = (entry: number) => {
      const h = Buffer.alloc(32);
      h.writeUInt32LE(0x1badb002, 0);
      h.writeUInt32LE(0x10003, 4);
      h.writeUInt32LE(-(0x1badb002 + 0x10003) >>> 0, 8);
      [0x100020, 0x100000, 0x100100, 0x102000, entry].forEach((v, i) => {
        h.writeUInt32LE(v, 12 + 4 * i);
      });
      return Buffer.concat([Buffer.alloc(32, 0x90), h, Buffer.alloc(0x100 - 64, 0x90)]);
    };
    for (const entry of [0xfffff, 0x100100, 0x101000, 0]) {
      refused(() => bootMultiboot(mem, kludge(entry)), "MULTIBOOT_BAD_ADDRESS", mem);
      expect(() => bootMultiboot(mem, kludge(entry))).toThrow(BootError);
    }
    expect(bootMultiboot(mem, kludge(0x1000ff)).entry).toBe(0x1000ff);
  });

  it("a bzImage whose protected-mode kernel ends before startup_64 is BZIMAGE_TRUNCATED", () => {
    expect(() => parseBzImage(buildBzImage({ kernel: Buffer.alloc(0x200, 0xcc) }))).toThrowError(expect.objectContaining({ code: "BZIMAGE_TRUNCATED" }));
    expect(parseBzImage(buildBzImage({ kernel: Buffer.alloc(0x210, 0xcc) })).kernel.length).toBe(0x210);
  });
});
