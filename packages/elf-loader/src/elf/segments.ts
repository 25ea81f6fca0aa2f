import { type ByteReader, fileRange, U64_LIMIT } from "../bytes.js";
import { ElfError, hex } from "../errors.js";
import { PT_LOAD } from "./constants.js";
import { classLayouts } from "./header.js";
import type { ElfHeader, ProgramHeader } from "./types.js";

export function parseProgramHeaders(r: ByteReader, h: ElfHeader): ProgramHeader[] {
  const is64 = h.class === 64;
  const out: ProgramHeader[] = [];
  const base = Number(h.phoff);
  const layout = classLayouts(h.class).phdr;
  for (let i = 0; i < h.phnum; i++) {
    const o = base + i * h.phentsize;
    const what = `program header ${i}`;
    const p = r.struct(layout, o, what);
    const ph: ProgramHeader = {
      index: i,
      type: p.pType,
      flags: p.pFlags,
      offset: BigInt(p.pOffset),
      vaddr: BigInt(p.pVaddr),
      paddr: BigInt(p.pPaddr),
      filesz: BigInt(p.pFilesz),
      memsz: BigInt(p.pMemsz),
      align: BigInt(p.pAlign),
    };
    if (ph.filesz > 0n) fileRange(ph.offset, ph.filesz, r.length, `${what} p_offset/p_filesz`);
    if (ph.type === PT_LOAD) checkLoadSegment(ph, is64 ? U64_LIMIT : 1n << 32n);
    out.push(ph);
  }
  return out;
}

function checkLoadSegment(ph: ProgramHeader, limit: bigint): void {
  const what = `program header ${ph.index} (PT_LOAD)`;
  if (ph.filesz > ph.memsz) throw new ElfError("ELF_BAD_SEGMENT", `${what}: p_filesz ${hex(ph.filesz)} exceeds p_memsz ${hex(ph.memsz)}`);
  if (ph.vaddr + ph.memsz > limit) throw new ElfError("ELF_OVERFLOW", `${what}: p_vaddr ${hex(ph.vaddr)} + p_memsz ${hex(ph.memsz)} wraps the address space`);
  if (ph.paddr + ph.memsz > limit) throw new ElfError("ELF_OVERFLOW", `${what}: p_paddr ${hex(ph.paddr)} + p_memsz ${hex(ph.memsz)} wraps the address space`);
  if (ph.align > 1n && (ph.align & (ph.align - 1n)) !== 0n) throw new ElfError("ELF_BAD_SEGMENT", `${what}: p_align ${hex(ph.align)} is not a power of two`);
}
