import { GuestMemoryMap } from "@tsvmm/abi";
import { ElfError, elfSymbols, LoadError, loadElf, PT_LOAD, parseElf, RelocationError } from "@tsvmm/elf-loader";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { buildElf } from "./helpers/elf-builder.js";
import { RecordingMemory } from "./helpers/recording-memory.js";
import { elf32Exec, elf32Pie, elf64Exec, elf64Pie, readelf } from "./helpers/seeds.js";

interface ReadelfLoad {
  offset: bigint;
  vaddr: bigint;
  paddr: bigint;
  filesz: bigint;
  memsz: bigint;
}

function readelfLoads(bytes: Buffer): ReadelfLoad[] {
  return readelf(bytes, ["-l"])
    .split("\n")
    .filter((l) => /^\s+LOAD\s/.test(l))
    .map((l) => {
      const f = l.trim().split(/\s+/);
      return { offset: BigInt(f[1]!), vaddr: BigInt(f[2]!), paddr: BigInt(f[3]!), filesz: BigInt(f[4]!), memsz: BigInt(f[5]!) };
    });
}

function readelfEntry(bytes: Buffer): bigint {
  const m = /Entry point address:\s+(0x[0-9a-f]+)/.exec(readelf(bytes, ["-h"]));
  return BigInt(m![1]!);
}

function elf32(): Buffer {
  // -m32 needs an i386-capable gcc; fall back to a hand-built image so the ELF32 path is always tested.
  return (
    elf32Exec() ??
    buildElf({ class: 32, entry: 0x100000n, segments: [{ vaddr: 0x100000n, data: Buffer.from([0xeb, 0xfe, 1, 2]), memsz: 0x2000n }] })
  );
}

describe("parseElf on gcc-built seeds (readelf is the oracle)", () => {
  for (const [name, get] of [
    ["ELF64 exec", elf64Exec],
    ["ELF64 PIE", elf64Pie],
    ["ELF32 exec", elf32],
  ] as const) {
    it(`${name}: header and PT_LOAD segments match readelf`, () => {
      const bytes = get();
      const elf = parseElf(bytes);
      expect(elf.header.entry).toBe(readelfEntry(bytes));
      const loads = elf.programHeaders.filter((p) => p.type === PT_LOAD).map(({ offset, vaddr, paddr, filesz, memsz }) => ({ offset, vaddr, paddr, filesz, memsz }));
      expect(loads).toEqual(readelfLoads(bytes));
    });
  }

  it("section names and symbols match readelf", () => {
    const bytes = elf64Exec();
    const elf = parseElf(bytes);
    const names = readelf(bytes, ["-S"])
      .split("\n")
      .map((l) => /^\s+\[\s*\d+\]\s+(\S+)/.exec(l)?.[1])
      .filter((x): x is string => x !== undefined && x !== "NULL");
    expect(elf.sections.map((s) => s.name).filter((n) => n !== "")).toEqual(names);
    const syms = elfSymbols(elf);
    const line = readelf(bytes, ["-s"])
      .split("\n")
      .find((l) => /\s_start$/.test(l))!;
    expect(syms.find((s) => s.name === "_start")?.value).toBe(BigInt(`0x${line.trim().split(/\s+/)[1]}`));
  });

  it("dynamic section of the PIE holds DT_RELA", () => {
    const elf = parseElf(elf64Pie());
    expect(elf.header.type).toBe(3);
    expect(elf.dynamic.some((d) => d.tag === 7n)).toBe(true);
  });
});

describe("parseElf refuses malformed files with typed errors", () => {
  const base = () => Buffer.from(elf64Exec());
  const m = (f: (b: Buffer) => unknown) => (b: Buffer) => {
    f(b);
    return b;
  };
  const cases: [string, (b: Buffer) => Buffer, string, RegExp][] = [
    ["empty file", () => Buffer.alloc(0), "ELF_TRUNCATED", /e_ident/],
    ["bad magic", m((b) => b.writeUInt8(0x7e, 0)), "ELF_BAD_MAGIC", /EI_MAG/],
    ["class 3", m((b) => b.writeUInt8(3, 4)), "ELF_BAD_CLASS", /EI_CLASS/],
    ["big-endian", m((b) => b.writeUInt8(2, 5)), "ELF_BAD_ENDIANNESS", /EI_DATA/],
    ["ET_REL", m((b) => b.writeUInt16LE(1, 16)), "ELF_BAD_TYPE", /e_type/],
    ["ARM", m((b) => b.writeUInt16LE(40, 18)), "ELF_BAD_MACHINE", /e_machine/],
    ["header cut", (b) => b.subarray(0, 40), "ELF_TRUNCATED", /ELF64 header/],
    ["phoff near 2^64", m((b) => b.writeBigUInt64LE(0xffff_ffff_ffff_fff0n, 32)), "ELF_OVERFLOW", /program header table/],
    ["phoff past the end", m((b) => b.writeBigUInt64LE(BigInt(b.length), 32)), "ELF_OUT_OF_FILE", /program header table/],
    ["phentsize too small", m((b) => b.writeUInt16LE(8, 54)), "ELF_BAD_HEADER_SIZE", /e_phentsize/],
    ["p_offset near 2^64", m((b) => b.writeBigUInt64LE(0xffff_ffff_ffff_ff00n, 64 + 8)), "ELF_OVERFLOW", /program header 0 p_offset/],
    ["p_filesz > p_memsz", m((b) => b.writeBigUInt64LE(b.readBigUInt64LE(64 + 40) + 1n, 64 + 32)), "ELF_BAD_SEGMENT", /p_filesz/],
    ["p_paddr + p_memsz wraps", m((b) => b.writeBigUInt64LE(0xffff_ffff_ffff_ff00n, 64 + 24)), "ELF_OVERFLOW", /p_paddr/],
    ["shstrndx too big", m((b) => b.writeUInt16LE(999, 62)), "ELF_BAD_SECTION", /e_shstrndx/],
  ];
  for (const [name, mutate, code, msg] of cases) {
    it(name, () => {
      let err: unknown;
      try {
        parseElf(mutate(base()));
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ElfError);
      expect((err as ElfError).code).toBe(code);
      expect((err as ElfError).message).toMatch(msg);
    });
  }
});

describe("loadElf", () => {
  it("copies file bytes, zeroes the bss tail, reports entry and extent", () => {
    const bytes = elf64Exec();
    const loads = readelfLoads(bytes);
    const mem = GuestMemoryMap.allocate([{ base: 0, size: 8 << 20 }]);
    mem.fill(0, 8 << 20, 0xaa);
    const r = loadElf(mem, bytes);
    expect(r.entry).toBe(readelfEntry(bytes));
    expect(r.segments.length).toBe(loads.length);
    for (const l of loads) {
      const a = Number(l.paddr);
      expect(mem.read(a, Number(l.filesz)).equals(bytes.subarray(Number(l.offset), Number(l.offset + l.filesz)))).toBe(true);
      const bss = mem.read(a + Number(l.filesz), Number(l.memsz - l.filesz));
      expect(bss.every((x) => x === 0)).toBe(true);
    }
    const top = loads.map((l) => l.paddr + l.memsz).sort((a, b) => (a < b ? 1 : -1))[0]!;
    expect(BigInt(r.end)).toBe(top);
    expect(BigInt(r.highestAddress)).toBe(top - 1n);
    expect(mem.readU8(r.end)).toBe(0xaa);
  });

  it("virtual addressing with a negative offset", () => {
    const bytes = buildElf({
      class: 64,
      entry: 0xffffffff81000010n,
      segments: [{ vaddr: 0xffffffff81000000n, paddr: 0x1000000n, data: Buffer.from("kernel"), memsz: 0x100n }],
    });
    const mem = GuestMemoryMap.allocate([{ base: 0, size: 0x20000 }]);
    const r = loadElf(mem, bytes, { addressing: "virtual", offset: -0xffffffff80ff0000n });
    expect(r.segments[0]!.guestAddress).toBe(0x10000);
    expect(r.entry).toBe(0x10010n);
    expect(mem.read(0x10000, 6).toString()).toBe("kernel");
  });

  it("a segment outside guest memory fails before anything is written", () => {
    const mem = new RecordingMemory(GuestMemoryMap.allocate([{ base: 0, size: 0x401000 }]));
    const err = (() => {
      try {
        loadElf(mem, elf64Exec());
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(LoadError);
    expect((err as LoadError).code).toBe("LOAD_OUTSIDE_MEMORY");
    expect(mem.writes).toEqual([]);
  });

  it("overlapping segments are refused", () => {
    const bytes = buildElf({
      class: 32,
      entry: 0x1000n,
      segments: [
        { vaddr: 0x1000n, data: Buffer.alloc(16), memsz: 0x100n },
        { vaddr: 0x10f0n, data: Buffer.alloc(16) },
      ],
    });
    const mem = new RecordingMemory(GuestMemoryMap.allocate([{ base: 0, size: 0x10000 }]));
    expect(() => loadElf(mem, bytes)).toThrow(expect.objectContaining({ code: "LOAD_SEGMENTS_OVERLAP" }));
    expect(mem.writes).toEqual([]);
  });

  it("an image with no PT_LOAD is refused", () => {
    const bytes = buildElf({ class: 64, entry: 0n, segments: [{ type: 4, vaddr: 0n, data: Buffer.alloc(0) }] });
    expect(() => loadElf(GuestMemoryMap.allocate([{ base: 0, size: 4096 }]), bytes)).toThrow(expect.objectContaining({ code: "LOAD_NO_SEGMENTS" }));
  });
});

function relocs(bytes: Buffer): { offset: bigint; addend: bigint | undefined }[] {
  return readelf(bytes, ["-r"])
    .split("\n")
    .filter((l) => /R_(X86_64|386)_RELATIVE/.test(l))
    .map((l) => {
      const f = l.trim().split(/\s+/);
      return { offset: BigInt(`0x${f[0]}`), addend: f.length >= 4 ? BigInt(`0x${f[f.length - 1]}`) : undefined };
    });
}

describe("PIE relocation", () => {
  it("ELF64: every R_X86_64_RELATIVE target holds base + addend, at any page-aligned base", () => {
    const bytes = elf64Pie();
    const rs = relocs(bytes);
    expect(rs.length).toBeGreaterThan(0);
    const mem = GuestMemoryMap.allocate([{ base: 0, size: 16 << 20 }]);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xff0 }), (page) => {
        const base = page * 4096;
        const r = loadElf(mem, bytes, { offset: base });
        expect(r.relocations).toBe(rs.length);
        for (const x of rs) expect(mem.readU64(Number(x.offset) + base)).toBe(BigInt(base) + x.addend!);
      }),
      { numRuns: 50 },
    );
  });

  it("ELF32: R_386_RELATIVE adds the base to the implicit addend", () => {
    const bytes = elf32Pie();
    if (bytes === null) {
      // No i386 gcc here: the ELF32 relocation path is still covered by the fuzz seeds' builder.
      expect(elf32Exec()).toBeNull();
      return;
    }
    const rs = relocs(bytes);
    expect(rs.length).toBeGreaterThan(0);
    const elf = parseElf(bytes);
    const mem = GuestMemoryMap.allocate([{ base: 0, size: 4 << 20 }]);
    const base = 0x200000;
    loadElf(mem, elf, { offset: base });
    for (const x of rs) {
      const seg = elf.programHeaders.find((p) => p.type === PT_LOAD && x.offset >= p.vaddr && x.offset < p.vaddr + p.filesz)!;
      const fileWord = bytes.readUInt32LE(Number(seg.offset + (x.offset - seg.vaddr)));
      expect(mem.readU32(Number(x.offset) + base)).toBe(fileWord + base);
    }
  });

  it("other relocation types are refused by name, with nothing written", () => {
    const bytes = Buffer.from(elf64Pie());
    const elf = parseElf(bytes);
    const rela = elf.dynamic.find((d) => d.tag === 7n)!.value;
    const seg = elf.programHeaders.find((p) => p.type === PT_LOAD && rela >= p.vaddr && rela < p.vaddr + p.filesz)!;
    const off = Number(seg.offset + (rela - seg.vaddr));
    bytes.writeBigUInt64LE(1n, off + 8); // R_X86_64_64 needs a symbol
    const mem = new RecordingMemory(GuestMemoryMap.allocate([{ base: 0, size: 1 << 20 }]));
    let err: unknown;
    try {
      loadElf(mem, bytes, { offset: 0x10000 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RelocationError);
    expect((err as RelocationError).code).toBe("RELOC_UNSUPPORTED_TYPE");
    expect((err as RelocationError).message).toMatch(/DT_RELA entry 0: type 1/);
    expect(mem.writes).toEqual([]);
  });
});
