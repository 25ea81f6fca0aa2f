import type { GuestMemory } from "@tsvmm/abi";
import { HarnessError } from "./errors.js";

// A deliberately small ELF reader for test guests: PT_LOAD segments and the boot-mode note.
// It is meant to be replaced by @tsvmm/elf-loader; keep it to what the harness needs.

/** The `tsvmm` note (type 1): how the VMM must start the guest. */
export const BootMode = { real16: 0, prot32: 1, long64: 2 } as const;
export type BootMode = (typeof BootMode)[keyof typeof BootMode];

export const TSVMM_NOTE_NAME = "tsvmm";
export const TSVMM_NOTE_BOOT_MODE = 1;
export const XEN_NOTE_NAME = "Xen";
export const XEN_ELFNOTE_PHYS32_ENTRY = 18;

export interface LoadSegment {
  readonly paddr: number;
  readonly memsz: number;
  /** The file bytes (filesz of them); the rest up to memsz is zero. */
  readonly data: Buffer;
}

export interface GuestImage {
  readonly elfClass: 32 | 64;
  readonly entry: number;
  readonly mode: BootMode;
  /** Xen PVH 32-bit entry, when the guest carries one. */
  readonly pvhEntry: number | undefined;
  readonly segments: readonly LoadSegment[];
}

const PT_LOAD = 1;
const PT_NOTE = 4;
const EM_386 = 3;
const EM_X86_64 = 62;

function bad(msg: string): never {
  throw new HarnessError("HARNESS_BAD_ELF", msg);
}

function safe(v: bigint, what: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) bad(`${what} 0x${v.toString(16)} is out of range`);
  return Number(v);
}

/** Parses an ELF32/ELF64 x86 executable and its notes. Throws HarnessError(HARNESS_BAD_ELF). */
export function parseGuestElf(file: Buffer): GuestImage {
  if (file.length < 52 || file.readUInt32BE(0) !== 0x7f454c46) bad("not an ELF file");
  const cls = file[4];
  if (cls !== 1 && cls !== 2) bad(`unknown ELF class ${cls}`);
  if (file[5] !== 1) bad("not little-endian");
  const is64 = cls === 2;
  if (is64 && file.length < 64) bad("truncated ELF64 header");
  const machine = file.readUInt16LE(18);
  if (machine !== (is64 ? EM_X86_64 : EM_386)) bad(`machine ${machine} is not x86`);
  const entry = is64 ? safe(file.readBigUInt64LE(24), "entry") : file.readUInt32LE(24);
  const phoff = is64 ? safe(file.readBigUInt64LE(32), "phoff") : file.readUInt32LE(28);
  const phentsize = file.readUInt16LE(is64 ? 54 : 42);
  const phnum = file.readUInt16LE(is64 ? 56 : 44);
  if (phentsize < (is64 ? 56 : 32) || phoff + phnum * phentsize > file.length) bad("program headers out of the file");

  const segments: LoadSegment[] = [];
  let mode: BootMode | undefined;
  let pvhEntry: number | undefined;
  for (let i = 0; i < phnum; i++) {
    const h = phoff + i * phentsize;
    const type = file.readUInt32LE(h);
    const offset = is64 ? safe(file.readBigUInt64LE(h + 8), "p_offset") : file.readUInt32LE(h + 4);
    const paddr = is64 ? safe(file.readBigUInt64LE(h + 24), "p_paddr") : file.readUInt32LE(h + 12);
    const filesz = is64 ? safe(file.readBigUInt64LE(h + 32), "p_filesz") : file.readUInt32LE(h + 16);
    const memsz = is64 ? safe(file.readBigUInt64LE(h + 40), "p_memsz") : file.readUInt32LE(h + 20);
    if (type !== PT_LOAD && type !== PT_NOTE) continue;
    if (offset + filesz > file.length) bad(`segment ${i} runs past the end of the file`);
    if (type === PT_LOAD) {
      if (memsz < filesz) bad(`segment ${i}: memsz < filesz`);
      segments.push({ paddr, memsz, data: file.subarray(offset, offset + filesz) });
      continue;
    }
    let p = offset;
    const end = offset + filesz;
    while (p + 12 <= end) {
      const namesz = file.readUInt32LE(p);
      const descsz = file.readUInt32LE(p + 4);
      const ntype = file.readUInt32LE(p + 8);
      const nameAt = p + 12;
      const descAt = nameAt + ((namesz + 3) & ~3);
      const next = descAt + ((descsz + 3) & ~3);
      if (next > end) bad("truncated note");
      const name = file.toString("latin1", nameAt, nameAt + Math.max(0, namesz - 1));
      if (name === TSVMM_NOTE_NAME && ntype === TSVMM_NOTE_BOOT_MODE && descsz >= 4) {
        const m = file.readUInt32LE(descAt);
        if (m !== 0 && m !== 1 && m !== 2) bad(`unknown boot mode ${m}`);
        mode = m;
      } else if (name === XEN_NOTE_NAME && ntype === XEN_ELFNOTE_PHYS32_ENTRY && descsz >= 4) {
        pvhEntry = file.readUInt32LE(descAt);
      }
      p = next;
    }
  }
  if (mode === undefined) bad('no "tsvmm" boot-mode note');
  if (segments.length === 0) bad("no PT_LOAD segment");
  if (mode === BootMode.real16 && entry >= 0x10000) bad(`real16 entry 0x${entry.toString(16)} is not below 64 KiB`);
  return { elfClass: is64 ? 64 : 32, entry, mode, pvhEntry, segments };
}

/** Copies the segments into guest memory and zero-fills their bss. */
export function loadGuestImage(image: GuestImage, memory: GuestMemory): void {
  for (const s of image.segments) {
    if (!memory.contains(s.paddr, s.memsz)) {
      bad(`segment [0x${s.paddr.toString(16)}, +0x${s.memsz.toString(16)}) is not inside guest RAM`);
    }
    memory.write(s.paddr, s.data);
    if (s.memsz > s.data.length) memory.fill(s.paddr + s.data.length, s.memsz - s.data.length, 0);
  }
}
