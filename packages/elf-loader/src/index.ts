export * from "./elf/constants.js";
export { parseElf } from "./elf/parse.js";
export { elfSymbols } from "./elf/symbols.js";
export type { DynamicEntry, ElfFile, ElfHeader, ElfNote, ElfSymbol, ProgramHeader, SectionHeader } from "./elf/types.js";
export { BootError, type BootErrorCode, ElfError, type ElfErrorCode, LoadError, type LoadErrorCode, RelocationError, type RelocationErrorCode } from "./errors.js";
export { applyElfLoad, type ElfLoadPlan, type LoadedSegment, type LoadOptions, type LoadResult, loadElf, planElfLoad } from "./load.js";
export { planRelocations, R_386_NONE, R_386_RELATIVE, R_X86_64_NONE, R_X86_64_RELATIVE, type RelocationWrite } from "./pie.js";
