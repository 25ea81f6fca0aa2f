import { type ByteReader, fileRange } from "../bytes.js";
import { ElfError } from "../errors.js";
import { ELFCLASS32, ELFCLASS64, ELFDATA2LSB, EM_386, EM_X86_64, ET_DYN, ET_EXEC, EV_CURRENT, PN_XNUM, SHN_XINDEX } from "./constants.js";
import type { ElfHeader } from "./types.js";

export const EHDR_SIZE = { 32: 52, 64: 64 } as const;
export const PHDR_SIZE = { 32: 32, 64: 56 } as const;
export const SHDR_SIZE = { 32: 40, 64: 64 } as const;

export function parseHeader(r: ByteReader): ElfHeader {
  if (r.length < 16) throw new ElfError("ELF_TRUNCATED", `e_ident: file is ${r.length} bytes, shorter than the 16-byte identification`);
  if (r.u8(0) !== 0x7f || r.u8(1) !== 0x45 || r.u8(2) !== 0x4c || r.u8(3) !== 0x46) {
    throw new ElfError("ELF_BAD_MAGIC", "e_ident[EI_MAG0..3]: not \\x7fELF");
  }
  const cls = r.u8(4);
  if (cls !== ELFCLASS32 && cls !== ELFCLASS64) throw new ElfError("ELF_BAD_CLASS", `e_ident[EI_CLASS]: ${cls} is neither ELFCLASS32 nor ELFCLASS64`);
  const is64 = cls === ELFCLASS64;
  const bits = is64 ? 64 : 32;
  if (r.u8(5) !== ELFDATA2LSB) throw new ElfError("ELF_BAD_ENDIANNESS", `e_ident[EI_DATA]: ${r.u8(5)} is not ELFDATA2LSB (x86 is little-endian)`);
  if (r.u8(6) !== EV_CURRENT) throw new ElfError("ELF_BAD_VERSION", `e_ident[EI_VERSION]: ${r.u8(6)} is not EV_CURRENT`);
  if (r.length < EHDR_SIZE[bits]) throw new ElfError("ELF_TRUNCATED", `ELF${bits} header: file is ${r.length} bytes, header needs ${EHDR_SIZE[bits]}`);
  const type = r.u16(16);
  const machine = r.u16(18);
  const version = r.u32(20);
  if (type !== ET_EXEC && type !== ET_DYN) throw new ElfError("ELF_BAD_TYPE", `e_type: ${type} is neither ET_EXEC nor ET_DYN`);
  if (is64 ? machine !== EM_X86_64 : machine !== EM_386 && machine !== EM_X86_64) {
    throw new ElfError("ELF_BAD_MACHINE", `e_machine: ${machine} is not ${is64 ? "EM_X86_64" : "EM_386 or EM_X86_64"}`);
  }
  if (version !== EV_CURRENT) throw new ElfError("ELF_BAD_VERSION", `e_version: ${version} is not EV_CURRENT`);
  const w = is64 ? 8 : 4;
  const entry = r.word(24, is64, "e_entry");
  const phoff = r.word(24 + w, is64, "e_phoff");
  const shoff = r.word(24 + 2 * w, is64, "e_shoff");
  const o = 24 + 3 * w;
  const flags = r.u32(o);
  const ehsize = r.u16(o + 4);
  const phentsize = r.u16(o + 6);
  let phnum = r.u16(o + 8);
  const shentsize = r.u16(o + 10);
  let shnum = r.u16(o + 12);
  let shstrndx = r.u16(o + 14);
  if (ehsize < EHDR_SIZE[bits]) throw new ElfError("ELF_BAD_HEADER_SIZE", `e_ehsize: ${ehsize} is smaller than the ${EHDR_SIZE[bits]}-byte ELF${bits} header`);

  // Counts that do not fit the 16-bit fields live in section 0 (PN_XNUM, e_shnum = 0, SHN_XINDEX).
  const needSection0 = shoff !== 0n && (phnum === PN_XNUM || shnum === 0 || shstrndx === SHN_XINDEX);
  if (needSection0) {
    if (shentsize < SHDR_SIZE[bits]) throw new ElfError("ELF_BAD_HEADER_SIZE", `e_shentsize: ${shentsize} is smaller than the ${SHDR_SIZE[bits]}-byte section header`);
    const s0 = fileRange(shoff, BigInt(SHDR_SIZE[bits]), r.length, "section header 0 (extended counts)").offset;
    const size0 = r.word(s0 + (is64 ? 32 : 20), is64, "section 0 sh_size");
    const link0 = r.u32(s0 + (is64 ? 40 : 24), "section 0 sh_link");
    const info0 = r.u32(s0 + (is64 ? 44 : 28), "section 0 sh_info");
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
  if (phnum > 0 && phentsize < PHDR_SIZE[bits]) {
    throw new ElfError("ELF_BAD_HEADER_SIZE", `e_phentsize: ${phentsize} is smaller than the ${PHDR_SIZE[bits]}-byte program header`);
  }
  if (shnum > 0 && shentsize < SHDR_SIZE[bits]) {
    throw new ElfError("ELF_BAD_HEADER_SIZE", `e_shentsize: ${shentsize} is smaller than the ${SHDR_SIZE[bits]}-byte section header`);
  }
  if (phnum > 0) fileRange(phoff, BigInt(phnum) * BigInt(phentsize), r.length, `program header table (e_phoff, ${phnum} x e_phentsize ${phentsize})`);
  if (shnum > 0) fileRange(shoff, BigInt(shnum) * BigInt(shentsize), r.length, `section header table (e_shoff, ${shnum} x e_shentsize ${shentsize})`);
  if (shnum > 0 && shstrndx !== 0 && shstrndx >= shnum) {
    throw new ElfError("ELF_BAD_SECTION", `e_shstrndx: ${shstrndx} is not below the section count ${shnum}`);
  }
  return {
    class: bits,
    osabi: r.u8(7),
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
