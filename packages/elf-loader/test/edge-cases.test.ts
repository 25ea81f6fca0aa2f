// Header variants and malformed inputs the other suites do not reach: x32/ELF32 relocation tables,
// PLT/RELR tables, offsets that leave the address space, symbol tables from .dynsym and ELF32,
// section-only notes, bzImage/Multiboot/PVH option errors and placement above 4 GiB. Every refusal
// is checked by its typed error code; accepted images by what lands in guest memory, with readelf
// as the oracle where the input is a real gcc-built file.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GuestMemoryMap } from "@tsvmm/abi";
import {
  BootError,
  bootLinux as bootLinuxWith,
  bootMultiboot,
  bootPvh,
  defaultMemoryMap,
  ElfError,
  elfSymbols,
  type LinuxBootOptions,
  LoadError,
  loadElf,
  looksLikeBzImage,
  multibootMemorySizes,
  parseBzImage,
  parseElf,
  planElfLoad,
  RelocationError,
} from "@tsvmm/elf-loader";
import { identityPageTables } from "@tsvmm/ept";
import { afterAll, describe, expect, it } from "vitest";
import { buildBzImage } from "./helpers/bzimage-builder.js";
import { buildElf, note } from "./helpers/elf-builder.js";
import { RecordingMemory } from "./helpers/recording-memory.js";
import { compile, elf32Exec, elf64Exec, readelf } from "./helpers/seeds.js";

const MiB = 1 << 20;
const bootLinux = (m: Parameters<typeof bootLinuxWith>[0], i: Parameters<typeof bootLinuxWith>[1], o: Partial<LinuxBootOptions> = {}) =>
  bootLinuxWith(m, i, { pageTables: identityPageTables(), ...o });

function code(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof BootError || e instanceof LoadError || e instanceof RelocationError || e instanceof ElfError) return e.code;
    throw e;
  }
  throw new Error("did not throw");
}

// d_tag values (elf.h).
const DT_PLTRELSZ = 2, DT_RELA = 7, DT_RELASZ = 8, DT_RELAENT = 9, DT_REL = 17, DT_RELSZ = 18, DT_RELENT = 19, DT_JMPREL = 23, DT_RELRSZ = 35, DT_RELR = 36;
const EM_X86_64 = 62;

/** Dynamic array entries (tag, value) as ELF32 (8-byte) or ELF64 (16-byte) Elf_Dyn, DT_NULL-terminated. */
function dynamic(is64: boolean, entries: [number, number][]): Buffer {
  const size = is64 ? 16 : 8;
  const b = Buffer.alloc((entries.length + 1) * size);
  entries.forEach(([t, v], i) => {
    if (is64) {
      b.writeBigInt64LE(BigInt(t), i * size);
      b.writeBigUInt64LE(BigInt(v), i * size + 8);
    } else {
      b.writeInt32LE(t, i * size);
      b.writeUInt32LE(v, i * size + 4);
    }
  });
  return b;
}

/**
 * An ET_DYN image linked at 0: one PT_LOAD (vaddr 0, 0x2000 bytes in memory) whose file bytes hold
 * `table` at vaddr 0x100, and a PT_DYNAMIC with `dyn`.
 */
function dynImage(cls: 32 | 64, dyn: [number, number][], table: Buffer = Buffer.alloc(0), machine?: number): Buffer {
  const load = Buffer.alloc(0x200);
  table.copy(load, 0x100);
  load.writeUInt32LE(0x11223344, 0x180); // a word a REL entry can point at
  return buildElf({
    class: cls,
    type: 3,
    machine,
    entry: 0x10n,
    segments: [
      { vaddr: 0n, data: load, memsz: 0x2000n },
      { type: 2, vaddr: 0x1000n, data: dynamic(cls === 64, dyn), flags: 6 },
    ],
  });
}

/** Elf32_Rela (r_offset, r_info, r_addend) entries. */
function rela32(entries: [number, number, number][]): Buffer {
  const b = Buffer.alloc(12 * entries.length);
  entries.forEach(([o, info, add], i) => {
    b.writeUInt32LE(o, 12 * i);
    b.writeUInt32LE(info, 12 * i + 4);
    b.writeInt32LE(add, 12 * i + 8);
  });
  return b;
}

describe("relocation tables", () => {
  const mem = () => GuestMemoryMap.allocate([{ base: 0, size: 4 * MiB }]);

  it("x32 (ELF32 EM_X86_64): relocation tables are refused, an image without them loads unrelocated", () => {
    const withRela = dynImage(32, [[DT_RELA, 0x100], [DT_RELASZ, 12], [DT_RELAENT, 12]], rela32([[0x40, 8, 0]]), EM_X86_64);
    expect(code(() => loadElf(mem(), parseElf(withRela), { offset: 0x100000 }))).toBe("RELOC_UNSUPPORTED_TYPE");
    const withRel = dynImage(32, [[DT_REL, 0x100], [DT_RELSZ, 8], [DT_RELENT, 8]], Buffer.alloc(8), EM_X86_64);
    expect(code(() => loadElf(mem(), parseElf(withRel), { offset: 0x100000 }))).toBe("RELOC_UNSUPPORTED_TYPE");
    const m = mem();
    const r = loadElf(m, parseElf(dynImage(32, [], Buffer.alloc(0), EM_X86_64)), { offset: 0x100000 });
    expect(r.relocations).toBe(0);
    expect(m.readU32(0x100180)).toBe(0x11223344);
  });

  it("PLT relocations (DT_JMPREL with DT_PLTRELSZ > 0) and DT_RELR are refused; empty ones are not", () => {
    expect(code(() => loadElf(mem(), parseElf(dynImage(64, [[DT_JMPREL, 0x100], [DT_PLTRELSZ, 24]])), { offset: 0x100000 }))).toBe("RELOC_UNSUPPORTED_TABLE");
    expect(code(() => loadElf(mem(), parseElf(dynImage(64, [[DT_RELR, 0x100], [DT_RELRSZ, 8]])), { offset: 0x100000 }))).toBe("RELOC_UNSUPPORTED_TABLE");
    // DT_RELR without a size is taken as non-empty (refused); with size 0 there is nothing to apply.
    expect(code(() => loadElf(mem(), parseElf(dynImage(64, [[DT_RELR, 0x100]])), { offset: 0x100000 }))).toBe("RELOC_UNSUPPORTED_TABLE");
    expect(loadElf(mem(), parseElf(dynImage(64, [[DT_RELR, 0x100], [DT_RELRSZ, 0], [DT_JMPREL, 0x100], [DT_PLTRELSZ, 0]])), { offset: 0x100000 }).relocations).toBe(0);
    expect(loadElf(mem(), parseElf(dynImage(64, [[DT_JMPREL, 0x100]])), { offset: 0x100000 }).relocations).toBe(0);
  });

  it("ELF32 i386 DT_RELA: R_386_RELATIVE stores bias + r_addend (32-bit); a sum past 4 GiB is refused", () => {
    const m = mem();
    const img = dynImage(32, [[DT_RELA, 0x100], [DT_RELASZ, 24], [DT_RELAENT, 12]], rela32([[0x40, 8, 0x1234], [0x44, 0, 0]]));
    const r = loadElf(m, parseElf(img), { offset: 0x100000 });
    expect(r.relocations).toBe(1);
    expect(m.readU32(0x100040)).toBe(0x101234);
    // r_addend -0x10 reads as 0xfffffff0 unsigned: + bias 0x100000 no longer fits 32 bits.
    const over = dynImage(32, [[DT_RELA, 0x100], [DT_RELASZ, 12], [DT_RELAENT, 12]], rela32([[0x40, 8, -0x10]]));
    expect(code(() => loadElf(mem(), parseElf(over), { offset: 0x100000 }))).toBe("RELOC_OUT_OF_IMAGE");
    // DT_RELSZ not a multiple of Elf32_Rel's 8 bytes.
    const ragged = dynImage(32, [[DT_REL, 0x100], [DT_RELSZ, 12], [DT_RELENT, 8]], Buffer.alloc(16));
    expect(code(() => loadElf(mem(), parseElf(ragged), { offset: 0x100000 }))).toBe("RELOC_BAD_TABLE");
  });

  it("ELF32 DT_REL: the implicit addend is the word at r_offset", () => {
    const rel = Buffer.alloc(8);
    rel.writeUInt32LE(0x180, 0);
    rel.writeUInt32LE(8, 4);
    const m = mem();
    loadElf(m, parseElf(dynImage(32, [[DT_REL, 0x100], [DT_RELSZ, 8], [DT_RELENT, 8]], rel)), { offset: 0x200000 });
    expect(m.readU32(0x200180)).toBe(0x11223344 + 0x200000);
  });
});

describe("load options and address arithmetic", () => {
  const seg = (paddr: bigint, entry: bigint) => parseElf(buildElf({ class: 64, entry, segments: [{ vaddr: 0xffffffff80000000n + paddr, paddr, data: Buffer.from([0xf4]), memsz: 0x1000n }] }));
  const mem = GuestMemoryMap.allocate([{ base: 0, size: 4 * MiB }]);

  it("an offset that is not a safe integer, or an unknown addressing, is LOAD_BAD_OPTION", () => {
    expect(code(() => planElfLoad(mem, seg(0x100000n, 0x100000n), { offset: 2 ** 60 }))).toBe("LOAD_BAD_OPTION");
    expect(code(() => planElfLoad(mem, seg(0x100000n, 0x100000n), { offset: 0.5 }))).toBe("LOAD_BAD_OPTION");
    expect(code(() => planElfLoad(mem, seg(0x100000n, 0x100000n), { addressing: "linear" as "physical" }))).toBe("LOAD_BAD_OPTION");
  });

  it("segment or entry + offset outside 0..2^64 is LOAD_ADDRESS_OVERFLOW, by physical and by virtual address", () => {
    expect(code(() => planElfLoad(mem, seg(0x100000n, 0x100000n), { offset: -0x200000n }))).toBe("LOAD_ADDRESS_OVERFLOW");
    expect(code(() => planElfLoad(mem, seg(0x100000n, 0x100000n), { addressing: "virtual", offset: 1n << 63n }))).toBe("LOAD_ADDRESS_OVERFLOW");
    // The segment lands at 0x100000, but e_entry 0x10 - 0x100000 is below 0.
    expect(code(() => planElfLoad(mem, seg(0x200000n, 0x10n), { offset: -0x100000n, checkEntry: false }))).toBe("LOAD_ADDRESS_OVERFLOW");
    // Virtual addressing with an offset that brings the kernel's vaddr down to 1 MiB loads.
    const p = planElfLoad(mem, seg(0x100000n, 0xffffffff80100000n), { addressing: "virtual", offset: -(0xffffffff80000000n) });
    expect(p.segments[0]!.guestAddress).toBe(0x100000);
    expect(p.entry).toBe(0x100000n);
  });
});

describe("symbols, notes and sections of real files (readelf is the oracle)", () => {
  const dir = mkdtempSync(join(tmpdir(), "elf-edge-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  function readelfSymbols(bytes: Buffer, which: "-s" | "--dyn-syms"): Map<string, bigint> {
    const out = new Map<string, bigint>();
    for (const l of readelf(bytes, [which]).split("\n")) {
      const f = l.trim().split(/\s+/);
      if (f.length === 8 && /^\d+:$/.test(f[0]!)) out.set(f[7]!, BigInt(`0x${f[1]}`));
    }
    return out;
  }

  it("ELF32: every named symbol and its value agree with readelf -s", () => {
    const b = elf32Exec();
    expect(b).not.toBeNull();
    const syms = elfSymbols(parseElf(b!));
    const want = readelfSymbols(b!, "-s");
    expect(want.size).toBeGreaterThan(3);
    for (const [name, value] of want) expect([name, syms.find((s) => s.name === name)?.value]).toEqual([name, value]);
  });

  it("a stripped shared object: symbols come from .dynsym; an image without sections has none", () => {
    const so = join(dir, "lib.so");
    writeFileSync(join(dir, "lib.c"), "int exported_one(int x) { return x + 1; }\nint exported_two = 7;\n");
    execFileSync("gcc", ["-shared", "-fPIC", "-nostdlib", "-o", so, join(dir, "lib.c")]);
    execFileSync("strip", ["--strip-all", so]);
    const bytes = readFileSync(so);
    const elf = parseElf(bytes);
    expect(elf.sections.some((s) => s.type === 2)).toBe(false); // no SHT_SYMTAB left
    const syms = elfSymbols(elf);
    const want = readelfSymbols(bytes, "--dyn-syms");
    expect(want.get("exported_one")).toBeDefined();
    for (const [name, value] of want) expect([name, syms.find((s) => s.name === name)?.value]).toEqual([name, value]);
    expect(elfSymbols(parseElf(buildElf({ class: 64, entry: 0n, segments: [{ vaddr: 0n, data: Buffer.alloc(4) }] })))).toEqual([]);
  });

  it("a symbol table with a wrong sh_entsize or an sh_link that is not a string table is ELF_BAD_SYMBOL", () => {
    const bytes = Buffer.from(elf64Exec());
    const elf = parseElf(bytes);
    const tab = elf.sections.find((s) => s.type === 2)!;
    const shoff = Number(bytes.readBigUInt64LE(0x28));
    const shentsize = bytes.readUInt16LE(0x3a);
    const hdr = shoff + tab.index * shentsize;
    const badEnt = Buffer.from(bytes);
    badEnt.writeBigUInt64LE(23n, hdr + 0x38); // sh_entsize
    expect(code(() => elfSymbols(parseElf(badEnt)))).toBe("ELF_BAD_SYMBOL");
    const badLink = Buffer.from(bytes);
    badLink.writeUInt32LE(tab.index, hdr + 0x28); // sh_link pointing at itself
    expect(code(() => elfSymbols(parseElf(badLink)))).toBe("ELF_BAD_SYMBOL");
  });

  it("without PT_NOTE, notes come from SHT_NOTE sections (sh_addralign 4, 8 and >8), as readelf -n lists them", () => {
    const src = `
      struct n { unsigned namesz, descsz, type; char name[4]; unsigned desc[2]; };
      __attribute__((section(".note.tsvmm"), aligned(4), used)) static const struct n a = { 4, 8, 0x1234, "Xen", { 0x100000, 0 } };
      void _start(void) { for (;;) {} }`;
    const exe = Buffer.from(compile("notes", src, ["-static", "-fno-pie", "-no-pie"]));
    const shoff = Number(exe.readBigUInt64LE(0x28));
    const shentsize = exe.readUInt16LE(0x3a);
    const phoff = Number(exe.readBigUInt64LE(0x20));
    const phnum = exe.readUInt16LE(0x38);
    // Turn every PT_NOTE into PT_NULL so only the section table describes the notes.
    for (let i = 0; i < phnum; i++) if (exe.readUInt32LE(phoff + 56 * i) === 4) exe.writeUInt32LE(0, phoff + 56 * i);
    const elf = parseElf(exe);
    const sec = elf.sections.find((s) => s.name === ".note.tsvmm")!;
    expect(sec.type).toBe(7);
    const got = () => parseElf(exe).notes.find((n) => n.type === 0x1234);
    const listed = readelf(exe, ["-n"]);
    expect(listed).toMatch(/Xen\s+0x00000008\s+Unknown note type: \(0x00001234\)/);
    const want = { name: "Xen", type: 0x1234, desc: Uint8Array.from([0, 0, 0x10, 0, 0, 0, 0, 0]) };
    expect({ ...got()!, desc: Uint8Array.from(got()!.desc) }).toEqual(want);
    // sh_addralign 8 pads name and desc to 8 (the 4-byte name "Xen\\0" becomes 8): the same bytes no longer parse as one note.
    exe.writeBigUInt64LE(8n, shoff + sec.index * shentsize + 0x30);
    expect(() => parseElf(exe)).toThrow(ElfError);
    // An alignment above 8 means 4, as the note readers of binutils treat it.
    exe.writeBigUInt64LE(16n, shoff + sec.index * shentsize + 0x30);
    expect({ ...got()!, desc: Uint8Array.from(got()!.desc) }).toEqual(want);
  });
});

describe("bzImage variants and option errors", () => {
  const kernel = Buffer.alloc(0x4000, 0x90);
  const mem = () => GuestMemoryMap.allocate([{ base: 0, size: 64 * MiB }]);

  it("looksLikeBzImage is false for a buffer too short to hold the version field", () => {
    const img = buildBzImage({ kernel });
    expect(looksLikeBzImage(img)).toBe(true);
    // The boot flag and "HdrS" (which ends at 0x206) are all it looks at.
    expect(looksLikeBzImage(img.subarray(0, 0x206))).toBe(true);
    expect(looksLikeBzImage(img.subarray(0, 0x205))).toBe(false);
  });

  it("the short jump's displacement sets the header end (at most 0x301, always inside the >= 2 setup sectors); setup_sects 0 means 4", () => {
    const img = buildBzImage({ kernel, setupSects: 1 });
    img.writeUInt8(0xff, 0x201);
    expect(parseBzImage(img).headerBytes.length).toBe(0x202 + 0xff - 0x1f1);
    const zero = buildBzImage({ kernel, setupSects: 1 });
    zero.writeUInt8(0, 0x1f1);
    zero.writeUInt32LE(0, 0x1f4); // syssize 0: the length check below is the setup's
    // Read as 4 sectors (0xa00 bytes of setup), which this 0x400 + 0x4000-byte image has: the kernel starts 0x600 later.
    expect(parseBzImage(zero).kernel.length).toBe(zero.length - 0xa00);
    expect(code(() => parseBzImage(zero.subarray(0, 0x900)))).toBe("BZIMAGE_TRUNCATED");
  });

  it("bootLinux accepts a parsed BzImage; protocol < 2.10 ignores pref_address and min_alignment", () => {
    const m = mem();
    const old = parseBzImage(buildBzImage({ kernel, version: 0x209, prefAddress: 0x2000000n, kernelAlignment: 0x100000, minAlignment: 25 }));
    const r = bootLinux(m, old);
    expect(r.loadAddress).toBe(0x100000);
    expect(m.read(0x100000, 16).equals(kernel.subarray(0, 16))).toBe(true);
    // kernel_alignment (1 MiB) rules, not 2^min_alignment (32 MiB): 0x300000 is fine.
    expect(bootLinux(mem(), old, { loadAddress: 0x300000 }).entry).toBe(0x300200n);
    expect(code(() => bootLinux(mem(), old, { loadAddress: 0x380000 }))).toBe("BZIMAGE_BAD_ALIGNMENT");
  });

  it("a load address that is not a non-negative safe integer is BOOT_BAD_OPTION; a placement address that is not an integer is BOOT_OUTSIDE_MEMORY", () => {
    const img = buildBzImage({ kernel });
    expect(code(() => bootLinux(mem(), img, { loadAddress: -0x200000 }))).toBe("BOOT_BAD_OPTION");
    expect(code(() => bootLinux(mem(), img, { loadAddress: 1.5 }))).toBe("BOOT_BAD_OPTION");
    expect(code(() => bootLinux(mem(), img, { bootParamsAddress: 2 ** 60 }))).toBe("BOOT_OUTSIDE_MEMORY");
    expect(code(() => bootLinux(mem(), img, { cmdline: "a\0b" }))).toBe("BOOT_BAD_OPTION");
  });

  it("memory above 4 GiB: the identity map grows to cover it; boot structures must sit below 4 GiB and inside the map", () => {
    const big = GuestMemoryMap.allocate([
      { base: 0, size: 64 * MiB },
      { base: 2 ** 32 + 2 ** 30, size: 64 * 1024 },
    ]);
    const calls: bigint[] = [];
    const builder = {
      buildIdentityMap: (_m: unknown, base: number, size: bigint) => {
        calls.push(size);
        return BigInt(base);
      },
    };
    bootLinuxWith(big, buildBzImage({ kernel }), { pageTables: builder });
    expect(calls).toEqual([6n << 30n]); // 5 GiB + 64 KiB rounded up to whole GiB
    const img = buildBzImage({ kernel });
    expect(code(() => bootLinuxWith(big, img, { pageTables: builder, gdtAddress: 2 ** 32 + 2 ** 30 }))).toBe("BOOT_ADDRESS_ABOVE_4G");
    expect(code(() => bootLinuxWith(big, img, { pageTables: builder, identityMapSize: 1n << 30n, cmdlineAddress: 2 ** 32 + 2 ** 30 }))).toBe("BOOT_BAD_OPTION");
  });

  it("initrd at a caller-given address; one that ends above initrd_addr_max is BOOT_ADDRESS_ABOVE_4G", () => {
    const m = mem();
    const initrd = Buffer.from("rd");
    const img = buildBzImage({ kernel, initrdAddrMax: 0x2ffffff, xloadflags: 0x1 });
    const r = bootLinux(m, img, { initrd, initrdAddress: 0x2fffffe });
    expect(r.initrd).toEqual({ address: 0x2fffffe, size: 2 });
    expect(m.read(0x2fffffe, 2).toString()).toBe("rd");
    expect(m.readU32(r.bootParamsAddress + 0x218)).toBe(0x2fffffe);
    expect(code(() => bootLinux(mem(), img, { initrd, initrdAddress: 0x2ffffff }))).toBe("BOOT_ADDRESS_ABOVE_4G");
  });
});

describe("Multiboot and PVH options", () => {
  const mbHeader = (flags: number) => {
    const b = Buffer.alloc(12);
    b.writeUInt32LE(0x1badb002, 0);
    b.writeUInt32LE(flags, 4);
    b.writeUInt32LE(-(0x1badb002 + flags) >>> 0, 8);
    return b;
  };

  it("a magic at an unaligned offset is skipped; the aligned header after it is used", () => {
    const h = mbHeader(0x3);
    // Unaligned copy at offset 2, the real one at offset 16.
    const body = Buffer.concat([Buffer.alloc(2), h, Buffer.alloc(2), h, Buffer.from("code")]);
    const img = buildElf({ class: 32, entry: 0x100000n, segments: [{ vaddr: 0x100000n, data: body, memsz: 0x1000n }] });
    const mem = GuestMemoryMap.allocate([{ base: 0, size: 4 * MiB }]);
    expect(bootMultiboot(mem, img).header.offset % 4).toBe(0);
  });

  it("an ELF64 entry above 4 GiB is MULTIBOOT_ENTRY_ABOVE_4G", () => {
    const img = buildElf({ class: 64, entry: 0x1_0000_0000n, segments: [{ vaddr: 0x1_0000_0000n, data: Buffer.concat([mbHeader(0x3), Buffer.alloc(4)]) }] });
    const mem = new RecordingMemory(GuestMemoryMap.allocate([{ base: 0, size: 4 * MiB }, { base: 2 ** 32, size: 64 * 1024 }]));
    expect(code(() => bootMultiboot(mem, img))).toBe("MULTIBOOT_ENTRY_ABOVE_4G");
    expect(mem.writes).toEqual([]);
  });

  it("a module at a caller-given address with a command line; mem_lower/upper from an unsorted map", () => {
    const img = buildElf({ class: 32, entry: 0x100000n, segments: [{ vaddr: 0x100000n, data: Buffer.concat([mbHeader(0x3), Buffer.alloc(4)]) }] });
    const mem = GuestMemoryMap.allocate([{ base: 0, size: 8 * MiB }]);
    const memoryMap = [
      { addr: 0x100000n, size: BigInt(7 * MiB), type: 1 },
      { addr: 0n, size: 0x9fc00n, type: 1 },
      { addr: 0x9fc00n, size: 0x60400n, type: 2 },
    ];
    const r = bootMultiboot(mem, img, { memoryMap, modules: [{ data: Buffer.from("mod"), address: 0x400000, cmdline: "m" }] });
    expect(r.modules).toEqual([{ address: 0x400000, size: 3 }]);
    expect(mem.read(0x400000, 3).toString()).toBe("mod");
    const list = mem.readU32(r.infoAddress + 24);
    expect(mem.read(mem.readU32(list + 8), 2).toString("latin1")).toBe("m\0");
    expect([mem.readU32(r.infoAddress + 4), mem.readU32(r.infoAddress + 8)]).toEqual([0x9fc00 / 1024, 7 * 1024]);
    // RAM from 0 beyond 640 KiB still reports 640 for mem_lower.
    expect(multibootMemorySizes([{ addr: 0n, size: BigInt(2 * MiB), type: 1 }])).toEqual({ lower: 640, upper: 1024 });
  });

  it("the default memory map skips the legacy hole where no memory backs it", () => {
    const mem = GuestMemoryMap.allocate([
      { base: 0, size: 0x9f000 },
      { base: 0x100000, size: 2 * MiB },
    ]);
    expect(defaultMemoryMap(mem)).toEqual([
      { addr: 0n, size: 0x9f000n, type: 1 },
      { addr: 0x100000n, size: BigInt(2 * MiB), type: 1 },
    ]);
  });

  const pvhKernel = (entry: number) => {
    const d = Buffer.alloc(4);
    d.writeUInt32LE(entry);
    return buildElf({
      class: 64,
      entry: 0xffffffff81000000n,
      segments: [
        { vaddr: 0xffffffff81000000n, paddr: 0x100000n, data: Buffer.from("PVH kernel text"), memsz: 0x3000n },
        { type: 4, vaddr: 0n, data: note("Xen", 18, d) },
      ],
    });
  };

  it("PVH: offset not a safe integer, entry + offset beyond 32 bits, and an rsdpAddress that is not a u64 are refused", () => {
    const mem = new RecordingMemory(GuestMemoryMap.allocate([{ base: 0, size: 4 * MiB }]));
    expect(code(() => bootPvh(mem, pvhKernel(0x100000), { offset: 0.5 }))).toBe("BOOT_BAD_OPTION");
    expect(code(() => bootPvh(mem, pvhKernel(0x100000), { offset: 0xffffffff }))).toBe("BOOT_ADDRESS_ABOVE_4G");
    expect(code(() => bootPvh(mem, pvhKernel(0x100000), { offset: -0x200000 }))).toBe("BOOT_ADDRESS_ABOVE_4G");
    expect(code(() => bootPvh(mem, pvhKernel(0x100000), { rsdpAddress: -1n }))).toBe("BOOT_BAD_OPTION");
    expect(code(() => bootPvh(mem, pvhKernel(0x100000), { rsdpAddress: 1n << 64n }))).toBe("BOOT_BAD_OPTION");
    expect(code(() => bootPvh(mem, pvhKernel(0x100000), { rsdpAddress: 0xe0000 as unknown as bigint }))).toBe("BOOT_BAD_OPTION");
    expect(mem.writes).toEqual([]);
  });

  it("PVH: modules without an address go page-aligned after the kernel, each past the one before; no room is BOOT_OUTSIDE_MEMORY", () => {
    const mem = GuestMemoryMap.allocate([{ base: 0, size: 4 * MiB }]);
    const r = bootPvh(mem, pvhKernel(0x100004), { modules: [{ data: Buffer.alloc(5000, 1) }, { data: Buffer.alloc(10, 2) }] });
    const list = Number(mem.readU64(r.startInfoAddress + 16));
    const [a, b] = [Number(mem.readU64(list)), Number(mem.readU64(list + 32))];
    expect(a).toBe(0x103000); // the kernel's PT_LOAD ends at 0x103000
    expect(b).toBe(0x105000); // 5000 bytes take two pages
    expect([mem.readU8(a + 4999), mem.readU8(b)]).toEqual([1, 2]);
    const small = new RecordingMemory(GuestMemoryMap.allocate([{ base: 0, size: 2 * MiB }]));
    expect(code(() => bootPvh(small, pvhKernel(0x100004), { modules: [{ data: Buffer.alloc(MiB) }] }))).toBe("BOOT_OUTSIDE_MEMORY");
    expect(small.writes).toEqual([]);
  });

  it("PVH: modules with and without command lines, one at a caller-given address; RSDP recorded", () => {
    const mem = GuestMemoryMap.allocate([{ base: 0, size: 4 * MiB }]);
    const r = bootPvh(mem, pvhKernel(0x100004), {
      rsdpAddress: 0xe0000n,
      modules: [{ data: Buffer.from("first"), cmdline: "one" }, { data: Buffer.from("second"), address: 0x300000 }],
    });
    const si = r.startInfoAddress;
    expect(mem.readU64(si + 32)).toBe(0xe0000n);
    expect(mem.readU32(si + 12)).toBe(2);
    const list = Number(mem.readU64(si + 16));
    const m0 = { paddr: Number(mem.readU64(list)), size: mem.readU64(list + 8), cmd: Number(mem.readU64(list + 16)) };
    const m1 = { paddr: Number(mem.readU64(list + 32)), size: mem.readU64(list + 40), cmd: mem.readU64(list + 48) };
    expect(mem.read(m0.paddr, 5).toString()).toBe("first");
    expect(mem.read(m0.cmd, 4).toString("latin1")).toBe("one\0");
    expect(m1).toEqual({ paddr: 0x300000, size: 6n, cmd: 0n });
    expect(mem.read(0x300000, 6).toString()).toBe("second");
  });
});
