import { bytes, defineStruct, pad, type StructLayout, u8, u16, u32, u64 } from "@tsvmm/abi";

// Multiboot v1 structures as the specification's own C header declares them (multiboot.h, shipped
// by Debian's `multiboot` package as <multiboot/multiboot.h>), declared once and checked against
// that header by test/headers.test.ts.

/** struct multiboot_header: found 4-byte aligned in the first 8 KiB of the image. */
export interface MultibootHeaderFields {
  magic: number;
  flags: number;
  checksum: number;
  /** The address fields, meaningful when flag 16 (a.out kludge) is set. */
  headerAddr: number;
  loadAddr: number;
  loadEndAddr: number;
  bssEndAddr: number;
  entryAddr: number;
  /** The graphics fields, meaningful when flag 2 (video mode) is set. */
  modeType: number;
  width: number;
  height: number;
  depth: number;
}
export const MultibootHeaderLayout: StructLayout<MultibootHeaderFields> = defineStruct("struct multiboot_header", [
  u32("magic"),
  u32("flags"),
  u32("checksum"),
  u32("headerAddr"),
  u32("loadAddr"),
  u32("loadEndAddr"),
  u32("bssEndAddr"),
  u32("entryAddr"),
  u32("modeType"),
  u32("width"),
  u32("height"),
  u32("depth"),
]);

/** struct multiboot_info: what EBX points at on entry. */
export interface MultibootInfo {
  flags: number;
  memLower: number;
  memUpper: number;
  bootDevice: number;
  cmdline: number;
  modsCount: number;
  modsAddr: number;
  /** The a.out symbol table / ELF section header table union (flags 4 and 5); not provided. */
  u: Buffer;
  mmapLength: number;
  mmapAddr: number;
  drivesLength: number;
  drivesAddr: number;
  configTable: number;
  bootLoaderName: number;
  apmTable: number;
  vbeControlInfo: number;
  vbeModeInfo: number;
  vbeMode: number;
  vbeInterfaceSeg: number;
  vbeInterfaceOff: number;
  vbeInterfaceLen: number;
  framebufferAddr: bigint;
  framebufferPitch: number;
  framebufferWidth: number;
  framebufferHeight: number;
  framebufferBpp: number;
  framebufferType: number;
  /** The palette / RGB field union (flag 12); not provided. */
  framebufferColorInfo: Buffer;
}
// The specification's table puts color_info at 110, right after framebuffer_type; its header (and
// GRUB, which uses it) aligns the union's u32 to 112, making the struct 120 bytes. This loader
// follows the header; it never sets flag 12, so no guest reads those bytes either way.
export const MultibootInfoLayout: StructLayout<MultibootInfo> = defineStruct(
  "struct multiboot_info",
  [
    u32("flags"),
    u32("memLower"),
    u32("memUpper"),
    u32("bootDevice"),
    u32("cmdline"),
    u32("modsCount"),
    u32("modsAddr"),
    bytes(16, "u"),
    u32("mmapLength"),
    u32("mmapAddr"),
    u32("drivesLength"),
    u32("drivesAddr"),
    u32("configTable"),
    u32("bootLoaderName"),
    u32("apmTable"),
    u32("vbeControlInfo"),
    u32("vbeModeInfo"),
    u16("vbeMode"),
    u16("vbeInterfaceSeg"),
    u16("vbeInterfaceOff"),
    u16("vbeInterfaceLen"),
    u64("framebufferAddr"),
    u32("framebufferPitch"),
    u32("framebufferWidth"),
    u32("framebufferHeight"),
    u8("framebufferBpp"),
    u8("framebufferType"),
    pad(2),
    bytes(6, "framebufferColorInfo"),
    pad(2),
  ],
  // The color union is anonymous in C; its first member names its offset.
  { framebufferColorInfo: "framebuffer_palette_addr" },
);

/** struct multiboot_mmap_entry (packed). `size` counts the bytes after itself: 20. */
export interface MultibootMmapEntry {
  size: number;
  addr: bigint;
  len: bigint;
  type: number;
}
export const MultibootMmapEntryLayout: StructLayout<MultibootMmapEntry> = defineStruct("struct multiboot_mmap_entry", [
  u32("size"),
  u64("addr"),
  u64("len"),
  u32("type"),
]);

/** struct multiboot_mod_list: one boot module, [modStart, modEnd). */
export interface MultibootModList {
  modStart: number;
  modEnd: number;
  cmdline: number;
  pad: number;
}
export const MultibootModListLayout: StructLayout<MultibootModList> = defineStruct("struct multiboot_mod_list", [
  u32("modStart"),
  u32("modEnd"),
  u32("cmdline"),
  u32("pad"),
]);

export const MULTIBOOT_STRUCTS: readonly StructLayout<unknown>[] = [
  MultibootHeaderLayout,
  MultibootInfoLayout,
  MultibootMmapEntryLayout,
  MultibootModListLayout,
] as StructLayout<unknown>[];
