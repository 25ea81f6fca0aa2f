import { defineStruct, type StructLayout, u32, u64 } from "@tsvmm/abi";

// The PVH boot ABI's structures (Xen public header arch-x86/hvm/start_info.h), declared once.
// test/headers.test.ts compiles every size and offset against <xen/arch-x86/hvm/start_info.h>
// (Debian package libxen-dev).

export const HVM_START_MAGIC = 0x336ec578;

/** struct hvm_start_info, version 1 (with the memory map). */
export interface HvmStartInfo {
  magic: number;
  version: number;
  flags: number;
  nrModules: number;
  modlistPaddr: bigint;
  cmdlinePaddr: bigint;
  rsdpPaddr: bigint;
  memmapPaddr: bigint;
  memmapEntries: number;
  reserved: number;
}
export const HvmStartInfoLayout: StructLayout<HvmStartInfo> = defineStruct("struct hvm_start_info", [
  u32("magic"),
  u32("version"),
  u32("flags"),
  u32("nrModules"),
  u64("modlistPaddr"),
  u64("cmdlinePaddr"),
  u64("rsdpPaddr"),
  u64("memmapPaddr"),
  u32("memmapEntries"),
  u32("reserved"),
]);

export interface HvmModlistEntry {
  paddr: bigint;
  size: bigint;
  cmdlinePaddr: bigint;
  reserved: bigint;
}
export const HvmModlistEntryLayout: StructLayout<HvmModlistEntry> = defineStruct("struct hvm_modlist_entry", [
  u64("paddr"),
  u64("size"),
  u64("cmdlinePaddr"),
  u64("reserved"),
]);

export interface HvmMemmapTableEntry {
  addr: bigint;
  size: bigint;
  type: number;
  reserved: number;
}
export const HvmMemmapTableEntryLayout: StructLayout<HvmMemmapTableEntry> = defineStruct("struct hvm_memmap_table_entry", [
  u64("addr"),
  u64("size"),
  u32("type"),
  u32("reserved"),
]);

export const HVM_START_INFO_STRUCTS: readonly StructLayout<unknown>[] = [HvmStartInfoLayout, HvmModlistEntryLayout, HvmMemmapTableEntryLayout] as StructLayout<unknown>[];
