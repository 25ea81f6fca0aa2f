import type { GuestMemory } from "@tsvmm/abi";
import { ElfError, type ElfFile, EM_386, EM_X86_64, findPvhEntry, LoadError, loadElf, PT_LOAD, parseElf } from "@tsvmm/elf-loader";
import { HarnessError } from "./errors.js";

// Test guests are loaded by @tsvmm/elf-loader, the loader users get; this file adds only the
// harness's boot contract (the `tsvmm` boot-mode note) on top.

/** The `tsvmm` note (type 1): how the VMM must start the guest. */
export const BootMode = { real16: 0, prot32: 1, long64: 2 } as const;
export type BootMode = (typeof BootMode)[keyof typeof BootMode];

export const TSVMM_NOTE_NAME = "tsvmm";
export const TSVMM_NOTE_BOOT_MODE = 1;

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
  /** The parsed file, as elf-loader gives it. */
  readonly elf: ElfFile;
}

function bad(msg: string, cause?: unknown): never {
  throw new HarnessError("HARNESS_BAD_ELF", msg, cause === undefined ? undefined : { cause });
}

function safe(v: bigint, what: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) bad(`${what} 0x${v.toString(16)} is out of range`);
  return Number(v);
}

/**
 * Parses a test guest with @tsvmm/elf-loader (every offset and size checked there) and reads its
 * boot contract: the `tsvmm` boot-mode note and an optional Xen PVH entry.
 * Throws HarnessError(HARNESS_BAD_ELF), with the loader's typed error as `cause`.
 */
export function parseGuestElf(file: Buffer): GuestImage {
  let elf: ElfFile;
  try {
    elf = parseElf(file);
  } catch (e) {
    if (e instanceof ElfError) bad(`${e.code}: ${e.message}`, e);
    throw e;
  }
  const is64 = elf.header.class === 64;
  if (elf.header.machine !== (is64 ? EM_X86_64 : EM_386)) bad(`machine ${elf.header.machine} is not x86`);
  const note = elf.notes.find((n) => n.name === TSVMM_NOTE_NAME && n.type === TSVMM_NOTE_BOOT_MODE && n.desc.length >= 4);
  if (note === undefined) bad('no "tsvmm" boot-mode note');
  const m = Buffer.from(note.desc).readUInt32LE(0);
  if (m !== 0 && m !== 1 && m !== 2) bad(`unknown boot mode ${m}`);
  const mode: BootMode = m;
  const segments: LoadSegment[] = elf.programHeaders
    .filter((ph) => ph.type === PT_LOAD && ph.memsz > 0n)
    .map((ph) => {
      const offset = safe(ph.offset, "p_offset");
      return { paddr: safe(ph.paddr, "p_paddr"), memsz: safe(ph.memsz, "p_memsz"), data: file.subarray(offset, offset + safe(ph.filesz, "p_filesz")) };
    });
  if (segments.length === 0) bad("no PT_LOAD segment");
  const entry = safe(elf.header.entry, "entry");
  if (mode === BootMode.real16 && entry >= 0x10000) bad(`real16 entry 0x${entry.toString(16)} is not below 64 KiB`);
  return { elfClass: is64 ? 64 : 32, entry, mode, pvhEntry: findPvhEntry(elf), segments, elf };
}

/** Loads the image with @tsvmm/elf-loader: file bytes copied, bss zeroed, nothing written on error. */
export function loadGuestImage(image: GuestImage, memory: GuestMemory): void {
  try {
    loadElf(memory, image.elf);
  } catch (e) {
    if (e instanceof LoadError) bad(`${e.code}: ${e.message}`, e);
    throw e;
  }
}
