import { ByteReader, fileRange } from "./bytes.js";
import {
  DT_JMPREL,
  DT_PLTRELSZ,
  DT_REL,
  DT_RELA,
  DT_RELAENT,
  DT_RELASZ,
  DT_RELENT,
  DT_RELR,
  DT_RELRSZ,
  DT_RELSZ,
  EM_386,
  EM_X86_64,
  PT_LOAD,
} from "./elf/constants.js";
import {
  type Elf32Rel,
  type Elf32Rela,
  Elf32RelaLayout,
  Elf32RelLayout,
  type Elf64Rel,
  type Elf64Rela,
  Elf64RelaLayout,
  Elf64RelLayout,
} from "./elf/structs.js";
import type { ElfFile } from "./elf/types.js";
import { hex, RelocationError } from "./errors.js";

export const R_X86_64_NONE = 0;
export const R_X86_64_RELATIVE = 8;
export const R_386_NONE = 0;
export const R_386_RELATIVE = 8;

/** One relocated word to store in guest memory. */
export interface RelocationWrite {
  readonly gpa: number;
  readonly value: bigint;
  readonly width: 4 | 8;
}

export interface PlacedSegment {
  readonly guestAddress: number;
  readonly memorySize: number;
  readonly vaddr: bigint;
}

function dyn(elf: ElfFile, tag: bigint): bigint | undefined {
  return elf.dynamic.find((d) => d.tag === tag)?.value;
}

/** File offset of a table addressed by vaddr: it must lie in the file bytes of one PT_LOAD. */
function tableOffset(elf: ElfFile, vaddr: bigint, size: bigint, what: string): number {
  for (const p of elf.programHeaders) {
    if (p.type === PT_LOAD && vaddr >= p.vaddr && vaddr + size <= p.vaddr + p.filesz) {
      return fileRange(p.offset + (vaddr - p.vaddr), size, elf.bytes.length, what).offset;
    }
  }
  throw new RelocationError("RELOC_BAD_TABLE", `${what}: ${hex(vaddr)}..${hex(vaddr + size)} is not inside the file bytes of one PT_LOAD segment`);
}

/** The guest address where vaddr `v` (width bytes) was placed, or an error. */
function target(segments: readonly PlacedSegment[], v: bigint, width: number, what: string): number {
  for (const s of segments) {
    if (v >= s.vaddr && v + BigInt(width) <= s.vaddr + BigInt(s.memorySize)) return s.guestAddress + Number(v - s.vaddr);
  }
  throw new RelocationError("RELOC_OUT_OF_IMAGE", `${what}: r_offset ${hex(v)} is not inside a loaded segment`);
}

/** Implicit addend of a REL entry: the word the file holds at the target (0 inside bss). */
function implicitAddend(elf: ElfFile, r: ByteReader, v: bigint): bigint {
  for (const p of elf.programHeaders) {
    if (p.type === PT_LOAD && v >= p.vaddr && v + 4n <= p.vaddr + p.filesz) return BigInt(r.u32(Number(p.offset + (v - p.vaddr)), "REL implicit addend"));
  }
  return 0n;
}

/**
 * Work out the writes that relocate an ET_DYN image by `bias`: R_X86_64_RELATIVE from
 * DT_RELA (ELF64) or R_386_RELATIVE from DT_REL (ELF32 i386). Anything that needs symbol
 * lookup (other types, PLT relocations) is refused with {@link RelocationError}.
 */
export function planRelocations(elf: ElfFile, segments: readonly PlacedSegment[], bias: bigint): RelocationWrite[] {
  const is64 = elf.header.class === 64;
  if (!is64 && elf.header.machine === EM_X86_64) {
    if (elf.dynamic.some((d) => d.tag === DT_RELA || d.tag === DT_REL)) throw new RelocationError("RELOC_UNSUPPORTED_TYPE", "x32 (ELF32 EM_X86_64) relocations are not supported");
    return [];
  }
  const pltSize = dyn(elf, DT_PLTRELSZ);
  if (dyn(elf, DT_JMPREL) !== undefined && pltSize !== undefined && pltSize > 0n) {
    throw new RelocationError("RELOC_UNSUPPORTED_TABLE", `DT_JMPREL: ${pltSize} bytes of PLT relocations need symbol resolution, which a kernel loader does not do`);
  }
  if (dyn(elf, DT_RELR) !== undefined && (dyn(elf, DT_RELRSZ) ?? 1n) > 0n) {
    throw new RelocationError("RELOC_UNSUPPORTED_TABLE", "DT_RELR: packed relative relocations are not supported");
  }
  const r = new ByteReader(elf.bytes);
  const out: RelocationWrite[] = [];
  const tables: [bigint, bigint, bigint, boolean][] = [
    [DT_RELA, DT_RELASZ, DT_RELAENT, true],
    [DT_REL, DT_RELSZ, DT_RELENT, false],
  ];
  for (const [tAddr, tSize, tEnt, rela] of tables) {
    const name = rela ? "DT_RELA" : "DT_REL";
    const addr = dyn(elf, tAddr);
    if (addr === undefined) continue;
    const size = dyn(elf, tSize);
    const entsize = dyn(elf, tEnt);
    const layout = is64 ? (rela ? Elf64RelaLayout : Elf64RelLayout) : rela ? Elf32RelaLayout : Elf32RelLayout;
    const want = BigInt(layout.size);
    if (size === undefined) throw new RelocationError("RELOC_BAD_TABLE", `${name}: present without its size (${rela ? "DT_RELASZ" : "DT_RELSZ"})`);
    if (entsize !== want) throw new RelocationError("RELOC_BAD_TABLE", `${rela ? "DT_RELAENT" : "DT_RELENT"}: ${String(entsize)} is not ${want}`);
    if (size % want !== 0n) throw new RelocationError("RELOC_BAD_TABLE", `${rela ? "DT_RELASZ" : "DT_RELSZ"}: ${size} is not a multiple of ${want}`);
    const base = tableOffset(elf, addr, size, name);
    const count = Number(size / want);
    for (let i = 0; i < count; i++) {
      const o = base + i * layout.size;
      const what = `${name} entry ${i}`;
      const e: { rOffset: bigint | number; rInfo: bigint | number; rAddend?: bigint | number } = r.struct<Elf64Rela | Elf64Rel | Elf32Rela | Elf32Rel>(layout, o, what);
      const rOffset = BigInt(e.rOffset);
      const info = BigInt(e.rInfo);
      // ELF64_R_TYPE is the low 32 bits of r_info, ELF32_R_TYPE the low 8.
      const type = Number(is64 ? info & 0xffffffffn : info & 0xffn);
      if (type === 0) continue;
      if (is64) {
        if (elf.header.machine !== EM_X86_64 || type !== R_X86_64_RELATIVE) {
          throw new RelocationError("RELOC_UNSUPPORTED_TYPE", `${what}: type ${type} is not R_X86_64_RELATIVE (only relative relocations are applied)`);
        }
        const addend = BigInt(e.rAddend ?? 0n);
        out.push({ gpa: target(segments, rOffset, 8, what), value: BigInt.asUintN(64, bias + addend), width: 8 });
      } else {
        if (elf.header.machine !== EM_386 || type !== R_386_RELATIVE) {
          throw new RelocationError("RELOC_UNSUPPORTED_TYPE", `${what}: type ${type} is not R_386_RELATIVE (only relative relocations are applied)`);
        }
        // The 32-bit sum wraps as the CPU's would, so a signed and an unsigned reading agree.
        const addend = rela ? BigInt.asUintN(32, BigInt(e.rAddend ?? 0)) : implicitAddend(elf, r, rOffset);
        const value = bias + addend;
        if (value < 0n || value > 0xffffffffn) throw new RelocationError("RELOC_OUT_OF_IMAGE", `${what}: relocated value ${hex(value)} does not fit 32 bits`);
        out.push({ gpa: target(segments, rOffset, 4, what), value, width: 4 });
      }
    }
  }
  return out;
}
