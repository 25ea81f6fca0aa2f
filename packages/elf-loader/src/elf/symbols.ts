import { ByteReader, tableString } from "../bytes.js";
import { ElfError } from "../errors.js";
import { SHT_DYNSYM, SHT_STRTAB, SHT_SYMTAB } from "./constants.js";
import { sectionBytes } from "./sections.js";
import type { ElfFile, ElfSymbol } from "./types.js";

/**
 * Symbols of SHT_SYMTAB (or SHT_DYNSYM when there is no SHT_SYMTAB), for diagnostics. Read on
 * demand because an unstripped kernel has hundreds of thousands of them.
 */
export function elfSymbols(elf: ElfFile): ElfSymbol[] {
  const r = new ByteReader(elf.bytes);
  const is64 = elf.header.class === 64;
  const tab = elf.sections.find((s) => s.type === SHT_SYMTAB) ?? elf.sections.find((s) => s.type === SHT_DYNSYM);
  if (tab === undefined) return [];
  const ent = is64 ? 24 : 16;
  const what = `symbol table (section ${tab.index})`;
  if (tab.entsize !== BigInt(ent)) throw new ElfError("ELF_BAD_SYMBOL", `${what} sh_entsize: ${tab.entsize} is not ${ent}`);
  const strSec = elf.sections[tab.link];
  if (strSec === undefined || strSec.type !== SHT_STRTAB) throw new ElfError("ELF_BAD_SYMBOL", `${what} sh_link: ${tab.link} is not a string table`);
  const data = sectionBytes(r, tab);
  const strings = sectionBytes(r, strSec);
  const d = new ByteReader(data);
  const out: ElfSymbol[] = [];
  for (let o = 0; o + ent <= data.length; o += ent) {
    const nameIdx = d.u32(o);
    const sym = is64
      ? { info: d.u8(o + 4), other: d.u8(o + 5), shndx: d.u16(o + 6), value: d.u64(o + 8), size: d.u64(o + 16) }
      : { value: BigInt(d.u32(o + 4)), size: BigInt(d.u32(o + 8)), info: d.u8(o + 12), other: d.u8(o + 13), shndx: d.u16(o + 14) };
    const name = nameIdx === 0 ? "" : tableString(strings, nameIdx, `${what} symbol ${o / ent} st_name`);
    out.push({ name, ...sym });
  }
  return out;
}
