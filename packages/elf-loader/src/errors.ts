import { TsvmmError } from "@tsvmm/abi";

/** Why an ELF file was refused while parsing. */
export type ElfErrorCode =
  | "ELF_TRUNCATED"
  | "ELF_BAD_MAGIC"
  | "ELF_BAD_CLASS"
  | "ELF_BAD_ENDIANNESS"
  | "ELF_BAD_VERSION"
  | "ELF_BAD_MACHINE"
  | "ELF_BAD_TYPE"
  | "ELF_BAD_HEADER_SIZE"
  | "ELF_OUT_OF_FILE"
  | "ELF_OVERFLOW"
  | "ELF_BAD_SEGMENT"
  | "ELF_BAD_SECTION"
  | "ELF_BAD_STRING"
  | "ELF_BAD_NOTE"
  | "ELF_BAD_DYNAMIC"
  | "ELF_BAD_SYMBOL";

/** The file is not a well-formed little-endian x86 ELF32/ELF64 image. The message names the field. */
export class ElfError extends TsvmmError<ElfErrorCode> {}

/** Why PT_LOAD segments could not be placed in guest memory. Nothing has been written when thrown. */
export type LoadErrorCode =
  | "LOAD_NO_SEGMENTS"
  | "LOAD_BAD_OPTION"
  | "LOAD_ADDRESS_OVERFLOW"
  | "LOAD_OUTSIDE_MEMORY"
  | "LOAD_SEGMENTS_OVERLAP"
  /** A segment overlaps a range the caller reserved (the boot contract's GDT, page tables, boot info). */
  | "LOAD_OVERLAPS_RESERVED"
  /** The entry point lies in no loaded executable (PF_X) segment. */
  | "LOAD_ENTRY_OUTSIDE_SEGMENTS";

export class LoadError extends TsvmmError<LoadErrorCode> {}

/** Why a position-independent image could not be relocated. Nothing has been written when thrown. */
export type RelocationErrorCode =
  | "RELOC_BAD_TABLE"
  | "RELOC_UNSUPPORTED_TYPE"
  | "RELOC_UNSUPPORTED_TABLE"
  | "RELOC_OUT_OF_IMAGE";

export class RelocationError extends TsvmmError<RelocationErrorCode> {}

/** Why a PVH, Multiboot or Linux (bzImage) boot could not be set up. Nothing has been written when thrown. */
export type BootErrorCode =
  | "PVH_NO_ENTRY_NOTE"
  | "PVH_BAD_ENTRY_NOTE"
  | "MULTIBOOT_NO_HEADER"
  | "MULTIBOOT_BAD_CHECKSUM"
  | "MULTIBOOT_UNSUPPORTED_FLAGS"
  | "MULTIBOOT_BAD_ADDRESS"
  | "MULTIBOOT_ENTRY_ABOVE_4G"
  | "BZIMAGE_TRUNCATED"
  | "BZIMAGE_BAD_MAGIC"
  | "BZIMAGE_OLD_PROTOCOL"
  | "BZIMAGE_NOT_64BIT"
  | "BZIMAGE_NOT_RELOCATABLE"
  | "BZIMAGE_BAD_ALIGNMENT"
  | "BZIMAGE_CMDLINE_TOO_LONG"
  | "BZIMAGE_TOO_MANY_E820"
  | "BOOT_OUTSIDE_MEMORY"
  | "BOOT_OVERLAP"
  | "BOOT_ADDRESS_ABOVE_4G"
  | "BOOT_BAD_OPTION";

export class BootError extends TsvmmError<BootErrorCode> {}

/** Every error class this package throws; anything else escaping is a bug. */
export const ERROR_CLASSES = [ElfError, LoadError, RelocationError, BootError] as const;

export function hex(n: number | bigint): string {
  return `0x${n.toString(16)}`;
}
