import { ByteReader, fileRange } from "../bytes.js";
import { PT_DYNAMIC, PT_NOTE, SHT_NOTE } from "./constants.js";
import { parseDynamic } from "./dynamic.js";
import { parseHeader } from "./header.js";
import { parseNotes } from "./notes.js";
import { parseSections, sectionBytes } from "./sections.js";
import { parseProgramHeaders } from "./segments.js";
import type { DynamicEntry, ElfFile, ElfNote } from "./types.js";

/**
 * Parse a little-endian x86 ELF32 or ELF64 file. Every offset, size and count is checked against
 * the file before it is used; a malformed file throws {@link ElfError} naming the bad field.
 * The result keeps zero-copy views into `bytes`.
 */
export function parseElf(bytes: Uint8Array): ElfFile {
  const r = new ByteReader(bytes);
  const header = parseHeader(r);
  const programHeaders = parseProgramHeaders(r, header);
  const sections = parseSections(r, header);
  const notes: ElfNote[] = [];
  const notePhdrs = programHeaders.filter((p) => p.type === PT_NOTE);
  for (const p of notePhdrs) {
    const rg = fileRange(p.offset, p.filesz, r.length, `program header ${p.index} (PT_NOTE)`);
    notes.push(...parseNotes(r.sub(rg.offset, rg.size), Number(p.align > 8n ? 4n : p.align), `program header ${p.index} (PT_NOTE)`));
  }
  if (notePhdrs.length === 0) {
    for (const s of sections.filter((x) => x.type === SHT_NOTE)) {
      notes.push(...parseNotes(sectionBytes(r, s), Number(s.addralign > 8n ? 4n : s.addralign), `section ${s.index} (SHT_NOTE)`));
    }
  }
  let dynamic: DynamicEntry[] = [];
  const dyn = programHeaders.find((p) => p.type === PT_DYNAMIC);
  if (dyn !== undefined) {
    const rg = fileRange(dyn.offset, dyn.filesz, r.length, `program header ${dyn.index} (PT_DYNAMIC)`);
    dynamic = parseDynamic(r, rg.offset, rg.size, header.class === 64);
  }
  return { bytes, header, programHeaders, sections, notes, dynamic };
}
