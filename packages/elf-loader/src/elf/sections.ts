import { type ByteReader, fileRange, tableString } from "../bytes.js";
import { ElfError } from "../errors.js";
import { SHT_NOBITS, SHT_NULL } from "./constants.js";
import { classLayouts } from "./header.js";
import type { ElfHeader, SectionHeader } from "./types.js";

export function parseSections(r: ByteReader, h: ElfHeader): SectionHeader[] {
  const layout = classLayouts(h.class).shdr;
  const raw: Omit<SectionHeader, "name">[] = [];
  const base = Number(h.shoff);
  for (let i = 0; i < h.shnum; i++) {
    const o = base + i * h.shentsize;
    const what = `section header ${i}`;
    const x = r.struct(layout, o, what);
    const s = {
      index: i,
      nameIndex: x.shName,
      type: x.shType,
      flags: BigInt(x.shFlags),
      addr: BigInt(x.shAddr),
      offset: BigInt(x.shOffset),
      size: BigInt(x.shSize),
      link: x.shLink,
      info: x.shInfo,
      addralign: BigInt(x.shAddralign),
      entsize: BigInt(x.shEntsize),
    };
    // Section 0 holds extended counts in sh_size, not a file range.
    if (i > 0 && s.type !== SHT_NOBITS && s.type !== SHT_NULL && s.size > 0n) {
      fileRange(s.offset, s.size, r.length, `${what} sh_offset/sh_size`);
    }
    if (i > 0 && s.link >= h.shnum && s.link !== 0) {
      throw new ElfError("ELF_BAD_SECTION", `${what} sh_link: ${s.link} is not below the section count ${h.shnum}`);
    }
    raw.push(s);
  }
  let names: Uint8Array | undefined;
  if (h.shstrndx !== 0) {
    const st = raw[h.shstrndx]!;
    if (st.type === SHT_NOBITS) throw new ElfError("ELF_BAD_SECTION", `e_shstrndx: section ${h.shstrndx} has no file bytes (SHT_NOBITS)`);
    const rg = fileRange(st.offset, st.size, r.length, `section name table (section ${h.shstrndx})`);
    names = r.sub(rg.offset, rg.size);
  }
  return raw.map((s) => ({ ...s, name: names === undefined || s.index === 0 ? "" : tableString(names, s.nameIndex, `section header ${s.index} sh_name`) }));
}

/** File bytes of a section, range-checked (callers pass note, symbol and string tables, never SHT_NOBITS). */
export function sectionBytes(r: ByteReader, s: SectionHeader): Uint8Array {
  const rg = fileRange(s.offset, s.size, r.length, `section ${s.index} (${s.name}) sh_offset/sh_size`);
  return r.sub(rg.offset, rg.size);
}
