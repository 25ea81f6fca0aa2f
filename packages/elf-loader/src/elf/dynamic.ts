import type { ByteReader } from "../bytes.js";
import { ElfError } from "../errors.js";
import { DT_NULL } from "./constants.js";
import { Elf32DynLayout, Elf64DynLayout } from "./structs.js";
import type { DynamicEntry } from "./types.js";

export function parseDynamic(r: ByteReader, offset: number, size: number, is64: boolean): DynamicEntry[] {
  const ent = is64 ? Elf64DynLayout.size : Elf32DynLayout.size;
  if (size % ent !== 0) throw new ElfError("ELF_BAD_DYNAMIC", `PT_DYNAMIC: p_filesz ${size} is not a multiple of the ${ent}-byte entry`);
  const out: DynamicEntry[] = [];
  for (let o = offset; o < offset + size; o += ent) {
    // Tags are reported unsigned, as the word the file holds: no tag this loader acts on is negative.
    const d = is64 ? r.struct(Elf64DynLayout, o, "dynamic entry") : r.struct(Elf32DynLayout, o, "dynamic entry");
    const tag = BigInt.asUintN(is64 ? 64 : 32, BigInt(d.dTag));
    if (tag === DT_NULL) return out;
    out.push({ tag, value: BigInt(d.dUn) });
  }
  throw new ElfError("ELF_BAD_DYNAMIC", "PT_DYNAMIC: no DT_NULL before the end of the segment");
}
