import type { ByteReader } from "../bytes.js";
import { ElfError } from "../errors.js";
import { DT_NULL } from "./constants.js";
import type { DynamicEntry } from "./types.js";

export function parseDynamic(r: ByteReader, offset: number, size: number, is64: boolean): DynamicEntry[] {
  const ent = is64 ? 16 : 8;
  const w = is64 ? 8 : 4;
  if (size % ent !== 0) throw new ElfError("ELF_BAD_DYNAMIC", `PT_DYNAMIC: p_filesz ${size} is not a multiple of the ${ent}-byte entry`);
  const out: DynamicEntry[] = [];
  for (let o = offset; o < offset + size; o += ent) {
    const tag = r.word(o, is64, "dynamic d_tag");
    if (tag === DT_NULL) return out;
    out.push({ tag, value: r.word(o + w, is64, "dynamic d_val") });
  }
  throw new ElfError("ELF_BAD_DYNAMIC", "PT_DYNAMIC: no DT_NULL before the end of the segment");
}
