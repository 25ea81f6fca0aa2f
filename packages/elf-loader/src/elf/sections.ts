import { type ByteReader, fileRange, tableString } from "../bytes.js";
import { ElfError } from "../errors.js";
import { SHT_NOBITS, SHT_NULL } from "./constants.js";
import type { ElfHeader, SectionHeader } from "./types.js";

export function parseSections(r: ByteReader, h: ElfHeader): SectionHeader[] {
  const is64 = h.class === 64;
  const raw: Omit<SectionHeader, "name">[] = [];
  const base = Number(h.shoff);
  for (let i = 0; i < h.shnum; i++) {
    const o = base + i * h.shentsize;
    const what = `section header ${i}`;
    const s = is64
      ? {
          index: i,
          nameIndex: r.u32(o, what),
          type: r.u32(o + 4, what),
          flags: r.u64(o + 8, what),
          addr: r.u64(o + 16, what),
          offset: r.u64(o + 24, what),
          size: r.u64(o + 32, what),
          link: r.u32(o + 40, what),
          info: r.u32(o + 44, what),
          addralign: r.u64(o + 48, what),
          entsize: r.u64(o + 56, what),
        }
      : {
          index: i,
          nameIndex: r.u32(o, what),
          type: r.u32(o + 4, what),
          flags: BigInt(r.u32(o + 8, what)),
          addr: BigInt(r.u32(o + 12, what)),
          offset: BigInt(r.u32(o + 16, what)),
          size: BigInt(r.u32(o + 20, what)),
          link: r.u32(o + 24, what),
          info: r.u32(o + 28, what),
          addralign: BigInt(r.u32(o + 32, what)),
          entsize: BigInt(r.u32(o + 36, what)),
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

/** File bytes of a section, range-checked. */
export function sectionBytes(r: ByteReader, s: SectionHeader): Uint8Array {
  if (s.type === SHT_NOBITS) return new Uint8Array(0);
  const rg = fileRange(s.offset, s.size, r.length, `section ${s.index} (${s.name}) sh_offset/sh_size`);
  return r.sub(rg.offset, rg.size);
}
