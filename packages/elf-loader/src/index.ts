export { type BzImage, bootLinux, type LinuxBoot, type LinuxBootOptions, parseBzImage, type SetupHeader, STARTUP_64_OFFSET } from "./bzimage.js";
export {
  APIC_BASE_BSP,
  BOOT_CS,
  BOOT_GDT_ADDR,
  BOOT_IMAGE_MIN,
  BOOT_PAGE_TABLES_ADDR,
  BOOT_REAL_MODE_SP,
  BOOT_DS,
  BOOT_GDT_SIZE,
  BOOT_TSS,
  type BootCpuState,
  bootGdt,
  CR0_ET,
  CR0_PE,
  CR0_PG,
  CR4_PAE,
  EFER_LMA,
  EFER_LME,
  longMode64State,
  protectedMode32State,
  RFLAGS_BOOT,
  realModeState,
} from "./cpu-state.js";
export * from "./elf/constants.js";
export { parseElf } from "./elf/parse.js";
export { elfSymbols } from "./elf/symbols.js";
export type { DynamicEntry, ElfFile, ElfHeader, ElfNote, ElfSymbol, ProgramHeader, SectionHeader } from "./elf/types.js";
export { BootError, type BootErrorCode, ElfError, type ElfErrorCode, LoadError, type LoadErrorCode, RelocationError, type RelocationErrorCode } from "./errors.js";
export { applyElfLoad, type ElfLoadPlan, type LoadedSegment, type LoadOptions, type LoadResult, loadElf, planElfLoad } from "./load.js";
export { defaultMemoryMap, MEMORY_ACPI, MEMORY_NVS, MEMORY_RAM, MEMORY_RESERVED, MEMORY_UNUSABLE, type MemoryMapEntry } from "./memmap.js";
export {
  bootMultiboot,
  findMultibootHeader,
  MULTIBOOT_BOOTLOADER_MAGIC,
  MULTIBOOT_HEADER_MAGIC,
  type MultibootBoot,
  type MultibootHeader,
  type MultibootOptions,
  multibootMemorySizes,
} from "./multiboot.js";
export { identityMap2M, type PageTableBuilder } from "./page-tables.js";
export { type PlacedSegment, planRelocations, R_386_NONE, R_386_RELATIVE, R_X86_64_NONE, R_X86_64_RELATIVE, type RelocationWrite } from "./pie.js";
export { type BootModule, bootPvh, findPvhEntry, HVM_START_MAGIC, type PvhBoot, type PvhBootOptions, XEN_ELFNOTE_PHYS32_ENTRY } from "./pvh.js";
