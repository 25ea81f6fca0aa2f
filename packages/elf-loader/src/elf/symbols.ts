import { ByteReader, tableString } from "../bytes.js";
import { ElfError } from "../errors.js";
import { SHT_DYNSYM, SHT_STRTAB, SHT_SYMTAB } from "./constants.js";
import { sectionBytes } from "./sections.js";
import { Elf32SymLayout, Elf64SymLayout } from "./structs.js";
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
  const ent = is64 ? Elf64SymLayout.size : Elf32SymLayout.size;
  const what = `symbol table (section ${tab.index})`;
  if (tab.entsize !== BigInt(ent)) throw new ElfError("ELF_BAD_SYMBOL", `${what} sh_entsize: ${tab.entsize} is not ${ent}`);
  const strSec = elf.sections[tab.link];
  if (strSec === undefined || strSec.type !== SHT_STRTAB) throw new ElfError("ELF_BAD_SYMBOL", `${what} sh_link: ${tab.link} is not a string table`);
  const data = sectionBytes(r, tab);
  const strings = sectionBytes(r, strSec);
  const d = new ByteReader(data);
  const out: ElfSymbol[] = [];
  for (let o = 0; o + ent <= data.length; o += ent) {
    const x = is64 ? d.struct(Elf64SymLayout, o) : d.struct(Elf32SymLayout, o);
    const nameIdx = x.stName;
    const sym = { info: x.stInfo, other: x.stOther, shndx: x.stShndx, value: BigInt(x.stValue), size: BigInt(x.stSize) };
    const name = nameIdx === 0 ? "" : tableString(strings, nameIdx, `${what} symbol ${o / ent} st_name`);
    out.push({ name, ...sym });
  }
  return out;
}
