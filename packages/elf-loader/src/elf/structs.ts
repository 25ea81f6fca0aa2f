import { bytes, defineStruct, type StructLayout, s32, s64, u8, u16, u32, u64 } from "@tsvmm/abi";
import { EI_NIDENT } from "./constants.js";

// The ELF structures this loader reads, declared once. Field names are the <elf.h> member names in
// camelCase; test/headers.test.ts compiles every size and offset against this machine's <elf.h>.
// Addresses, offsets and sizes are bigint in ELF64 and number in ELF32, as the layouts decode them.

export interface Elf64Ehdr {
  eIdent: Buffer;
  eType: number;
  eMachine: number;
  eVersion: number;
  eEntry: bigint;
  ePhoff: bigint;
  eShoff: bigint;
  eFlags: number;
  eEhsize: number;
  ePhentsize: number;
  ePhnum: number;
  eShentsize: number;
  eShnum: number;
  eShstrndx: number;
}
export interface Elf32Ehdr extends Omit<Elf64Ehdr, "eEntry" | "ePhoff" | "eShoff"> {
  eEntry: number;
  ePhoff: number;
  eShoff: number;
}


const ehdr = (word: (p: string) => ReturnType<typeof u32>) => [
  bytes(EI_NIDENT, "eIdent"),
  u16("eType"),
  u16("eMachine"),
  u32("eVersion"),
  word("eEntry"),
  word("ePhoff"),
  word("eShoff"),
  u32("eFlags"),
  u16("eEhsize"),
  u16("ePhentsize"),
  u16("ePhnum"),
  u16("eShentsize"),
  u16("eShnum"),
  u16("eShstrndx"),
];
export const Elf64EhdrLayout: StructLayout<Elf64Ehdr> = defineStruct("Elf64_Ehdr", ehdr(u64));
export const Elf32EhdrLayout: StructLayout<Elf32Ehdr> = defineStruct("Elf32_Ehdr", ehdr(u32));

export interface Elf64Phdr {
  pType: number;
  pFlags: number;
  pOffset: bigint;
  pVaddr: bigint;
  pPaddr: bigint;
  pFilesz: bigint;
  pMemsz: bigint;
  pAlign: bigint;
}
export interface Elf32Phdr {
  pType: number;
  pOffset: number;
  pVaddr: number;
  pPaddr: number;
  pFilesz: number;
  pMemsz: number;
  pFlags: number;
  pAlign: number;
}
// p_flags moves: right after p_type in ELF64 (for alignment), after p_memsz in ELF32.
export const Elf64PhdrLayout: StructLayout<Elf64Phdr> = defineStruct("Elf64_Phdr", [
  u32("pType"),
  u32("pFlags"),
  u64("pOffset"),
  u64("pVaddr"),
  u64("pPaddr"),
  u64("pFilesz"),
  u64("pMemsz"),
  u64("pAlign"),
]);
export const Elf32PhdrLayout: StructLayout<Elf32Phdr> = defineStruct("Elf32_Phdr", [
  u32("pType"),
  u32("pOffset"),
  u32("pVaddr"),
  u32("pPaddr"),
  u32("pFilesz"),
  u32("pMemsz"),
  u32("pFlags"),
  u32("pAlign"),
]);

export interface Elf64Shdr {
  shName: number;
  shType: number;
  shFlags: bigint;
  shAddr: bigint;
  shOffset: bigint;
  shSize: bigint;
  shLink: number;
  shInfo: number;
  shAddralign: bigint;
  shEntsize: bigint;
}
export interface Elf32Shdr {
  shName: number;
  shType: number;
  shFlags: number;
  shAddr: number;
  shOffset: number;
  shSize: number;
  shLink: number;
  shInfo: number;
  shAddralign: number;
  shEntsize: number;
}
const shdr = (word: (p: string) => ReturnType<typeof u32>) => [
  u32("shName"),
  u32("shType"),
  word("shFlags"),
  word("shAddr"),
  word("shOffset"),
  word("shSize"),
  u32("shLink"),
  u32("shInfo"),
  word("shAddralign"),
  word("shEntsize"),
];
export const Elf64ShdrLayout: StructLayout<Elf64Shdr> = defineStruct("Elf64_Shdr", shdr(u64));
export const Elf32ShdrLayout: StructLayout<Elf32Shdr> = defineStruct("Elf32_Shdr", shdr(u32));

export interface Elf64Sym {
  stName: number;
  stInfo: number;
  stOther: number;
  stShndx: number;
  stValue: bigint;
  stSize: bigint;
}
export interface Elf32Sym {
  stName: number;
  stValue: number;
  stSize: number;
  stInfo: number;
  stOther: number;
  stShndx: number;
}
export const Elf64SymLayout: StructLayout<Elf64Sym> = defineStruct("Elf64_Sym", [u32("stName"), u8("stInfo"), u8("stOther"), u16("stShndx"), u64("stValue"), u64("stSize")]);
export const Elf32SymLayout: StructLayout<Elf32Sym> = defineStruct("Elf32_Sym", [u32("stName"), u32("stValue"), u32("stSize"), u8("stInfo"), u8("stOther"), u16("stShndx")]);

/** d_tag is signed (Elf64_Sxword / Elf32_Sword); d_un is the d_val/d_ptr union. */
export interface Elf64Dyn {
  dTag: bigint;
  dUn: bigint;
}
export interface Elf32Dyn {
  dTag: number;
  dUn: number;
}
export const Elf64DynLayout: StructLayout<Elf64Dyn> = defineStruct("Elf64_Dyn", [s64("dTag"), u64("dUn")]);
export const Elf32DynLayout: StructLayout<Elf32Dyn> = defineStruct("Elf32_Dyn", [s32("dTag"), u32("dUn")]);

export interface Elf64Rela {
  rOffset: bigint;
  rInfo: bigint;
  rAddend: bigint;
}
export type Elf64Rel = Omit<Elf64Rela, "rAddend">;
export interface Elf32Rela {
  rOffset: number;
  rInfo: number;
  rAddend: number;
}
export type Elf32Rel = Omit<Elf32Rela, "rAddend">;
export const Elf64RelLayout: StructLayout<Elf64Rel> = defineStruct("Elf64_Rel", [u64("rOffset"), u64("rInfo")]);
export const Elf64RelaLayout: StructLayout<Elf64Rela> = defineStruct("Elf64_Rela", [u64("rOffset"), u64("rInfo"), s64("rAddend")]);
export const Elf32RelLayout: StructLayout<Elf32Rel> = defineStruct("Elf32_Rel", [u32("rOffset"), u32("rInfo")]);
export const Elf32RelaLayout: StructLayout<Elf32Rela> = defineStruct("Elf32_Rela", [u32("rOffset"), u32("rInfo"), s32("rAddend")]);

/** Note headers are the same three words in both classes. */
export interface ElfNhdr {
  nNamesz: number;
  nDescsz: number;
  nType: number;
}
export const Elf64NhdrLayout: StructLayout<ElfNhdr> = defineStruct("Elf64_Nhdr", [u32("nNamesz"), u32("nDescsz"), u32("nType")]);
export const Elf32NhdrLayout: StructLayout<ElfNhdr> = defineStruct("Elf32_Nhdr", [u32("nNamesz"), u32("nDescsz"), u32("nType")]);

/** Every ELF layout, for the header test. */
export const ELF_STRUCTS: readonly StructLayout<unknown>[] = [
  Elf64EhdrLayout,
  Elf32EhdrLayout,
  Elf64PhdrLayout,
  Elf32PhdrLayout,
  Elf64ShdrLayout,
  Elf32ShdrLayout,
  Elf64SymLayout,
  Elf32SymLayout,
  Elf64DynLayout,
  Elf32DynLayout,
  Elf64RelLayout,
  Elf64RelaLayout,
  Elf32RelLayout,
  Elf32RelaLayout,
  Elf64NhdrLayout,
  Elf32NhdrLayout,
] as StructLayout<unknown>[];
