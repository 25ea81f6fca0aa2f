import { array, arrayOf, bytes, defineStruct, nested, pad, type StructLayout, u8, u16, u32, u64 } from "@tsvmm/abi";

// The Linux x86 boot protocol's structures (<asm/bootparam.h>, Documentation/arch/x86/boot.rst),
// declared once. test/headers.test.ts compiles every size and offset against this machine's
// <asm/bootparam.h>. The vmm reads bzImage headers through these too.

/** struct setup_header: what a bzImage carries at file offset 0x1f1 and boot_params holds at `hdr`. */
export interface SetupHeader {
  setupSects: number;
  rootFlags: number;
  syssize: number;
  ramSize: number;
  vidMode: number;
  rootDev: number;
  bootFlag: number;
  /** The short jump over the header: low byte 0xeb, high byte the displacement from the `header` field. */
  jump: number;
  /** "HdrS". */
  header: number;
  version: number;
  realmodeSwtch: number;
  startSysSeg: number;
  kernelVersion: number;
  typeOfLoader: number;
  loadflags: number;
  setupMoveSize: number;
  code32Start: number;
  ramdiskImage: number;
  ramdiskSize: number;
  bootsectKludge: number;
  heapEndPtr: number;
  extLoaderVer: number;
  extLoaderType: number;
  cmdLinePtr: number;
  initrdAddrMax: number;
  kernelAlignment: number;
  relocatableKernel: number;
  minAlignment: number;
  xloadflags: number;
  cmdlineSize: number;
  hardwareSubarch: number;
  hardwareSubarchData: bigint;
  payloadOffset: number;
  payloadLength: number;
  setupData: bigint;
  prefAddress: bigint;
  initSize: number;
  handoverOffset: number;
  kernelInfoOffset: number;
}

export const SetupHeaderLayout: StructLayout<SetupHeader> = defineStruct("struct setup_header", [
  u8("setupSects"),
  u16("rootFlags"),
  u32("syssize"),
  u16("ramSize"),
  u16("vidMode"),
  u16("rootDev"),
  u16("bootFlag"),
  u16("jump"),
  u32("header"),
  u16("version"),
  u32("realmodeSwtch"),
  u16("startSysSeg"),
  u16("kernelVersion"),
  u8("typeOfLoader"),
  u8("loadflags"),
  u16("setupMoveSize"),
  u32("code32Start"),
  u32("ramdiskImage"),
  u32("ramdiskSize"),
  u32("bootsectKludge"),
  u16("heapEndPtr"),
  u8("extLoaderVer"),
  u8("extLoaderType"),
  u32("cmdLinePtr"),
  u32("initrdAddrMax"),
  u32("kernelAlignment"),
  u8("relocatableKernel"),
  u8("minAlignment"),
  u16("xloadflags"),
  u32("cmdlineSize"),
  u32("hardwareSubarch"),
  u64("hardwareSubarchData"),
  u32("payloadOffset"),
  u32("payloadLength"),
  u64("setupData"),
  u64("prefAddress"),
  u32("initSize"),
  u32("handoverOffset"),
  u32("kernelInfoOffset"),
]);

/** struct boot_e820_entry: one memory-map entry of the zero page. */
export interface BootE820Entry {
  addr: bigint;
  size: bigint;
  type: number;
}
export const BootE820EntryLayout: StructLayout<BootE820Entry> = defineStruct("struct boot_e820_entry", [u64("addr"), u64("size"), u32("type")]);

/** E820_MAX_ENTRIES_ZEROPAGE. */
export const E820_MAX_ZEROPAGE = 128;
/** EDD_MBR_SIG_MAX and EDDMAXNR (<linux/edd.h>), sizes of two zero-page arrays. */
const EDD_MBR_SIG_MAX = 16;
const EDDMAXNR = 6;
/** sizeof(struct edd_info); this loader never fills EDD data, so the table is kept as bytes. */
const EDD_INFO_SIZE = 82;

/**
 * struct boot_params, "the zero page". Sub-structures this loader never fills (screen_info, EDID,
 * EFI, EDD, ...) are opaque bytes of their C size; the test checks each one's offset and the total.
 */
export interface BootParams {
  screenInfo: Buffer;
  apmBiosInfo: Buffer;
  tbootAddr: bigint;
  istInfo: Buffer;
  acpiRsdpAddr: bigint;
  hd0Info: Buffer;
  hd1Info: Buffer;
  sysDescTable: Buffer;
  olpcOfwHeader: Buffer;
  extRamdiskImage: number;
  extRamdiskSize: number;
  extCmdLinePtr: number;
  ccBlobAddress: number;
  edidInfo: Buffer;
  efiInfo: Buffer;
  altMemK: number;
  scratch: number;
  e820Entries: number;
  eddbufEntries: number;
  eddMbrSigBufEntries: number;
  kbdStatus: number;
  secureBoot: number;
  sentinel: number;
  hdr: SetupHeader;
  eddMbrSigBuffer: number[];
  e820Table: BootE820Entry[];
  eddbuf: Buffer;
}

export const BootParamsLayout: StructLayout<BootParams> = defineStruct(
  "struct boot_params",
  [
    bytes(0x40, "screenInfo"),
    bytes(0x14, "apmBiosInfo"),
    pad(4),
    u64("tbootAddr"),
    bytes(0x10, "istInfo"),
    u64("acpiRsdpAddr"),
    pad(8),
    bytes(16, "hd0Info"),
    bytes(16, "hd1Info"),
    bytes(0x10, "sysDescTable"),
    bytes(0x10, "olpcOfwHeader"),
    u32("extRamdiskImage"),
    u32("extRamdiskSize"),
    u32("extCmdLinePtr"),
    pad(112),
    u32("ccBlobAddress"),
    bytes(0x80, "edidInfo"),
    bytes(0x20, "efiInfo"),
    u32("altMemK"),
    u32("scratch"),
    u8("e820Entries"),
    u8("eddbufEntries"),
    u8("eddMbrSigBufEntries"),
    u8("kbdStatus"),
    u8("secureBoot"),
    pad(2),
    u8("sentinel"),
    pad(1),
    nested(SetupHeaderLayout, "hdr"),
    pad(0x290 - 0x1f1 - SetupHeaderLayout.size),
    array(u32(""), EDD_MBR_SIG_MAX, "eddMbrSigBuffer"),
    arrayOf(BootE820EntryLayout, E820_MAX_ZEROPAGE, "e820Table"),
    pad(48),
    bytes(EDDMAXNR * EDD_INFO_SIZE, "eddbuf"),
    pad(276),
  ],
);

/** Where the setup header sits, in boot_params and in a bzImage file alike. */
export const SETUP_HEADER_OFFSET = BootParamsLayout.offsetOf("hdr");

// loadflags and xloadflags bits used here (the test checks them against <asm/bootparam.h>).
export const LOADED_HIGH = 1 << 0;
export const XLF_KERNEL_64 = 1 << 0;
export const XLF_CAN_BE_LOADED_ABOVE_4G = 1 << 1;

export const BOOT_PARAMS_STRUCTS: readonly StructLayout<unknown>[] = [SetupHeaderLayout, BootE820EntryLayout, BootParamsLayout] as StructLayout<unknown>[];
