export {
  BOOT_PARAMS_STRUCTS,
  type BootE820Entry,
  BootE820EntryLayout,
  type BootParams,
  BootParamsLayout,
  E820_MAX_ZEROPAGE,
  LOADED_HIGH,
  SETUP_HEADER_OFFSET,
  type SetupHeader,
  SetupHeaderLayout,
  XLF_CAN_BE_LOADED_ABOVE_4G,
  XLF_KERNEL_64,
} from "./boot-params.js";
export {
  BOOT_FLAG,
  BOOT_PARAMS_SIZE,
  type BzImage,
  bootLinux,
  HDRS_MAGIC,
  type LinuxBoot,
  type LinuxBootOptions,
  looksLikeBzImage,
  MIN_PROTOCOL,
  parseBzImage,
  STARTUP_64_OFFSET,
} from "./bzimage.js";
export {
  APIC_BASE_BSP,
  BOOT_CS,
  BOOT_DS,
  BOOT_GDT_ADDR,
  BOOT_GDT_SIZE,
  BOOT_IMAGE_MIN,
  BOOT_PAGE_TABLES_ADDR,
  BOOT_REAL_MODE_SP,
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
export * from "./elf/structs.js";
export { elfSymbols } from "./elf/symbols.js";
export type { DynamicEntry, ElfFile, ElfHeader, ElfNote, ElfSymbol, ProgramHeader, SectionHeader } from "./elf/types.js";
export { BootError, type BootErrorCode, ElfError, type ElfErrorCode, LoadError, type LoadErrorCode, RelocationError, type RelocationErrorCode } from "./errors.js";
export * from "./hvm-start-info.js";
export { applyElfLoad, checkEntryInSegments, type ElfLoadPlan, type LoadedSegment, type LoadOptions, type LoadResult, loadElf, planElfLoad, type ReservedRange } from "./load.js";
export { defaultMemoryMap, MEMORY_ACPI, MEMORY_NVS, MEMORY_RAM, MEMORY_RESERVED, MEMORY_UNUSABLE, type MemoryMapEntry } from "./memmap.js";
export {
  bootMultiboot,
  findMultibootHeader,
  MB_FLAG_AOUT_KLUDGE,
  MB_FLAG_MEMORY_INFO,
  MB_FLAG_PAGE_ALIGN,
  MB_FLAG_VIDEO_MODE,
  MB_INFO_CMDLINE,
  MB_INFO_LOADER_NAME,
  MB_INFO_MEMORY,
  MB_INFO_MMAP,
  MB_INFO_MODS,
  MULTIBOOT_BOOTLOADER_MAGIC,
  MULTIBOOT_HEADER_MAGIC,
  MULTIBOOT_MOD_ALIGN,
  MULTIBOOT_SEARCH,
  type MultibootBoot,
  type MultibootHeader,
  type MultibootOptions,
  multibootMemorySizes,
} from "./multiboot.js";
export * from "./multiboot-info.js";
export type { PageTableBuilder } from "./page-tables.js";
export { type PlacedSegment, planRelocations, R_386_NONE, R_386_RELATIVE, R_X86_64_NONE, R_X86_64_RELATIVE, type RelocationWrite } from "./pie.js";
export { type BootModule, bootPvh, findPvhEntry, type PvhBoot, type PvhBootOptions, XEN_ELFNOTE_PHYS32_ENTRY } from "./pvh.js";
