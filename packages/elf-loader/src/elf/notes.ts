import { ByteReader } from "../bytes.js";
import { ElfError } from "../errors.js";
import { Elf64NhdrLayout } from "./structs.js";
import type { ElfNote } from "./types.js";

/**
 * Notes packed in `area`. Each is namesz, descsz, type, then name and desc each padded to
 * `align` (4, or 8 for some GNU notes); everything must lie inside the area.
 */
export function parseNotes(area: Uint8Array, align: number, what: string): ElfNote[] {
  const a = align === 8 ? 8 : 4;
  const pad = (n: number): number => Math.ceil(n / a) * a;
  const r = new ByteReader(area);
  const out: ElfNote[] = [];
  let o = 0;
  // Elf32_Nhdr and Elf64_Nhdr are the same three words.
  while (o + Elf64NhdrLayout.size <= area.length) {
    const { nNamesz: namesz, nDescsz: descsz, nType: type } = r.struct(Elf64NhdrLayout, o, `${what} note header`);
    const nameOff = o + Elf64NhdrLayout.size;
    const descOff = nameOff + pad(namesz);
    const next = descOff + pad(descsz);
    // namesz/descsz are u32, so these sums stay far below 2^53.
    if (descOff + descsz > area.length || nameOff + namesz > area.length) {
      throw new ElfError("ELF_BAD_NOTE", `${what}: note at offset ${o} (namesz ${namesz}, descsz ${descsz}) runs past the end of its ${area.length}-byte area`);
    }
    let nameEnd = nameOff + namesz;
    if (namesz > 0 && area[nameEnd - 1] === 0) nameEnd--;
    const name = Buffer.from(area.buffer, area.byteOffset + nameOff, nameEnd - nameOff).toString("latin1");
    out.push({ name, type, desc: area.subarray(descOff, descOff + descsz) });
    o = next;
  }
  return out;
}
