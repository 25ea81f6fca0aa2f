/** The ELF file header, widened to bigint where the ELF64 field is 64 bits. */
export interface ElfHeader {
  readonly class: 32 | 64;
  readonly osabi: number;
  readonly type: number;
  readonly machine: number;
  readonly version: number;
  readonly entry: bigint;
  readonly phoff: bigint;
  readonly shoff: bigint;
  readonly flags: number;
  readonly ehsize: number;
  readonly phentsize: number;
  /** Real program-header count (PN_XNUM resolved through section 0). */
  readonly phnum: number;
  readonly shentsize: number;
  /** Real section count (0 with a section table resolved through section 0). */
  readonly shnum: number;
  /** Real section-name string table index (SHN_XINDEX resolved). */
  readonly shstrndx: number;
}

export interface ProgramHeader {
  readonly index: number;
  readonly type: number;
  readonly flags: number;
  readonly offset: bigint;
  readonly vaddr: bigint;
  readonly paddr: bigint;
  readonly filesz: bigint;
  readonly memsz: bigint;
  readonly align: bigint;
}

export interface SectionHeader {
  readonly index: number;
  readonly name: string;
  readonly nameIndex: number;
  readonly type: number;
  readonly flags: bigint;
  readonly addr: bigint;
  readonly offset: bigint;
  readonly size: bigint;
  readonly link: number;
  readonly info: number;
  readonly addralign: bigint;
  readonly entsize: bigint;
}

export interface ElfNote {
  readonly name: string;
  readonly type: number;
  /** Zero-copy view into the file. */
  readonly desc: Uint8Array;
}

export interface DynamicEntry {
  readonly tag: bigint;
  readonly value: bigint;
}

export interface ElfSymbol {
  readonly name: string;
  readonly value: bigint;
  readonly size: bigint;
  readonly info: number;
  readonly other: number;
  readonly shndx: number;
}

/** A parsed ELF file. Every table in it has been range-checked against `bytes`. */
export interface ElfFile {
  readonly bytes: Uint8Array;
  readonly header: ElfHeader;
  readonly programHeaders: readonly ProgramHeader[];
  readonly sections: readonly SectionHeader[];
  /** Notes from PT_NOTE segments, or from SHT_NOTE sections when there is no PT_NOTE. */
  readonly notes: readonly ElfNote[];
  /** Entries of PT_DYNAMIC up to DT_NULL; empty when there is none. */
  readonly dynamic: readonly DynamicEntry[];
}
