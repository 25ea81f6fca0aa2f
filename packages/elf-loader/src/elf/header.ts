import type { StructLayout } from "@tsvmm/abi";
import { type ByteReader, fileRange } from "../bytes.js";
import { ElfError } from "../errors.js";
import {
  EI_CLASS,
  EI_DATA,
  EI_MAG0,
  EI_MAG1,
  EI_MAG2,
  EI_MAG3,
  EI_NIDENT,
  EI_OSABI,
  EI_VERSION,
  ELFCLASS32,
  ELFCLASS64,
  ELFDATA2LSB,
  ELFMAG0,
  ELFMAG1,
  ELFMAG2,
  ELFMAG3,
  EM_386,
  EM_X86_64,
  ET_DYN,
  ET_EXEC,
  EV_CURRENT,
  PN_XNUM,
  SHN_XINDEX,
} from "./constants.js";
import {
  type Elf32Ehdr,
  Elf32EhdrLayout,
  type Elf32Phdr,
  Elf32PhdrLayout,
  type Elf32Shdr,
  Elf32ShdrLayout,
  type Elf64Ehdr,
  Elf64EhdrLayout,
  type Elf64Phdr,
  Elf64PhdrLayout,
  type Elf64Shdr,
  Elf64ShdrLayout,
} from "./structs.js";
import type { ElfHeader } from "./types.js";

/** The layouts of one ELF class, so parsing code is written once for both. */
export interface ElfClassLayouts {
  readonly bits: 32 | 64;
  readonly ehdr: StructLayout<Elf64Ehdr | Elf32Ehdr>;
  readonly phdr: StructLayout<Elf64Phdr | Elf32Phdr>;
  readonly shdr: StructLayout<Elf64Shdr | Elf32Shdr>;
}
const CLASS64: ElfClassLayouts = { bits: 64, ehdr: Elf64EhdrLayout, phdr: Elf64PhdrLayout, shdr: Elf64ShdrLayout } as ElfClassLayouts;
const CLASS32: ElfClassLayouts = { bits: 32, ehdr: Elf32EhdrLayout, phdr: Elf32PhdrLayout, shdr: Elf32ShdrLayout } as ElfClassLayouts;
export const classLayouts = (bits: 32 | 64): ElfClassLayouts => (bits === 64 ? CLASS64 : CLASS32);

export function parseHeader(r: ByteReader): ElfHeader {
  if (r.length < EI_NIDENT) throw new ElfError("ELF_TRUNCATED", `e_ident: file is ${r.length} bytes, shorter than the ${EI_NIDENT}-byte identification`);
  const ident = r.sub(0, EI_NIDENT, "e_ident");
  if (ident[EI_MAG0] !== ELFMAG0 || ident[EI_MAG1] !== ELFMAG1 || ident[EI_MAG2] !== ELFMAG2 || ident[EI_MAG3] !== ELFMAG3) {
    throw new ElfError("ELF_BAD_MAGIC", "e_ident[EI_MAG0..3]: not \\x7fELF");
  }
  const cls = ident[EI_CLASS]!;
  if (cls !== ELFCLASS32 && cls !== ELFCLASS64) throw new ElfError("ELF_BAD_CLASS", `e_ident[EI_CLASS]: ${cls} is neither ELFCLASS32 nor ELFCLASS64`);
  const is64 = cls === ELFCLASS64;
  const L = classLayouts(is64 ? 64 : 32);
  const bits = L.bits;
  if (ident[EI_DATA] !== ELFDATA2LSB) throw new ElfError("ELF_BAD_ENDIANNESS", `e_ident[EI_DATA]: ${ident[EI_DATA]} is not ELFDATA2LSB (x86 is little-endian)`);
  if (ident[EI_VERSION] !== EV_CURRENT) throw new ElfError("ELF_BAD_VERSION", `e_ident[EI_VERSION]: ${ident[EI_VERSION]} is not EV_CURRENT`);
  if (r.length < L.ehdr.size) throw new ElfError("ELF_TRUNCATED", `ELF${bits} header: file is ${r.length} bytes, header needs ${L.ehdr.size}`);
  const e = r.struct(L.ehdr, 0, `ELF${bits} header`);
  const type = e.eType;
  const machine = e.eMachine;
  const version = e.eVersion;
  if (type !== ET_EXEC && type !== ET_DYN) throw new ElfError("ELF_BAD_TYPE", `e_type: ${type} is neither ET_EXEC nor ET_DYN`);
  if (is64 ? machine !== EM_X86_64 : machine !== EM_386 && machine !== EM_X86_64) {
    throw new ElfError("ELF_BAD_MACHINE", `e_machine: ${machine} is not ${is64 ? "EM_X86_64" : "EM_386 or EM_X86_64"}`);
  }
  if (version !== EV_CURRENT) throw new ElfError("ELF_BAD_VERSION", `e_version: ${version} is not EV_CURRENT`);
  const entry = BigInt(e.eEntry);
  const phoff = BigInt(e.ePhoff);
  const shoff = BigInt(e.eShoff);
  const flags = e.eFlags;
  const ehsize = e.eEhsize;
  const phentsize = e.ePhentsize;
  let phnum = e.ePhnum;
  const shentsize = e.eShentsize;
  let shnum = e.eShnum;
  let shstrndx = e.eShstrndx;
  if (ehsize < L.ehdr.size) throw new ElfError("ELF_BAD_HEADER_SIZE", `e_ehsize: ${ehsize} is smaller than the ${L.ehdr.size}-byte ELF${bits} header`);

  // Counts that do not fit the 16-bit fields live in section 0 (PN_XNUM, e_shnum = 0, SHN_XINDEX).
  const needSection0 = shoff !== 0n && (phnum === PN_XNUM || shnum === 0 || shstrndx === SHN_XINDEX);
  if (needSection0) {
    if (shentsize < L.shdr.size) throw new ElfError("ELF_BAD_HEADER_SIZE", `e_shentsize: ${shentsize} is smaller than the ${L.shdr.size}-byte section header`);
    const s0 = fileRange(shoff, BigInt(L.shdr.size), r.length, "section header 0 (extended counts)").offset;
    const sec0 = r.struct(L.shdr, s0, "section header 0 (extended counts)");
    const size0 = BigInt(sec0.shSize);
    const link0 = sec0.shLink;
    const info0 = sec0.shInfo;
    if (phnum === PN_XNUM) phnum = info0;
    if (shnum === 0) {
      // The table bytes are checked against the file below, so a count beyond it is caught there.
      if (size0 > BigInt(r.length)) throw new ElfError("ELF_OUT_OF_FILE", `section 0 sh_size: extended section count ${size0} cannot fit in the file`);
      shnum = Number(size0);
    }
    if (shstrndx === SHN_XINDEX) shstrndx = link0;
  } else if (phnum === PN_XNUM) {
    throw new ElfError("ELF_BAD_HEADER_SIZE", "e_phnum: PN_XNUM without a section header table to hold the real count");
  }
  if (shoff === 0n) shnum = 0;
  if (phnum > 0 && phentsize < L.phdr.size) {
    throw new ElfError("ELF_BAD_HEADER_SIZE", `e_phentsize: ${phentsize} is smaller than the ${L.phdr.size}-byte program header`);
  }
  if (shnum > 0 && shentsize < L.shdr.size) {
    throw new ElfError("ELF_BAD_HEADER_SIZE", `e_shentsize: ${shentsize} is smaller than the ${L.shdr.size}-byte section header`);
  }
  if (phnum > 0) fileRange(phoff, BigInt(phnum) * BigInt(phentsize), r.length, `program header table (e_phoff, ${phnum} x e_phentsize ${phentsize})`);
  if (shnum > 0) fileRange(shoff, BigInt(shnum) * BigInt(shentsize), r.length, `section header table (e_shoff, ${shnum} x e_shentsize ${shentsize})`);
  if (shnum > 0 && shstrndx !== 0 && shstrndx >= shnum) {
    throw new ElfError("ELF_BAD_SECTION", `e_shstrndx: ${shstrndx} is not below the section count ${shnum}`);
  }
  return {
    class: bits,
    osabi: ident[EI_OSABI]!,
    type,
    machine,
    version,
    entry,
    phoff,
    shoff,
    flags,
    ehsize,
    phentsize,
    phnum,
    shentsize,
    shnum,
    shstrndx: shnum === 0 ? 0 : shstrndx,
  };
}
