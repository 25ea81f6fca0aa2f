import type { GuestMemory } from "@tsvmm/abi";
import { BootParamsLayout, E820_MAX_ZEROPAGE, LOADED_HIGH, SETUP_HEADER_OFFSET, type SetupHeader, SetupHeaderLayout, XLF_CAN_BE_LOADED_ABOVE_4G, XLF_KERNEL_64 } from "./boot-params.js";
import { decodeZeroExtended } from "./bytes.js";
import { BOOT_GDT_SIZE, type BootCpuState, longMode64State, writeBootGdt } from "./cpu-state.js";
import { BootError, hex } from "./errors.js";
import { defaultMemoryMap, type MemoryMapEntry } from "./memmap.js";
import type { PageTableBuilder } from "./page-tables.js";
import { cstring, Placement } from "./placement.js";

export const BOOT_FLAG = 0xaa55;
export const HDRS_MAGIC = 0x53726448; // "HdrS"
export const MIN_PROTOCOL = 0x206;
export const BOOT_PARAMS_SIZE = BootParamsLayout.size;
/** startup_64 lies this far into the protected-mode kernel. */
export const STARTUP_64_OFFSET = 0x200;
/** A setup_sects of 0 means 4 (boot.rst). */
const DEFAULT_SETUP_SECTS = 4;
const SECTOR = 512;

/** The `header` field ends where the jump's displacement counts from. */
const JUMP_BASE = SETUP_HEADER_OFFSET + SetupHeaderLayout.offsetOf("header");

/** True when `bytes` starts like a bzImage: boot_flag 0xAA55 and "HdrS" where the setup header puts them. */
export function looksLikeBzImage(bytes: Uint8Array): boolean {
  if (bytes.length < SETUP_HEADER_OFFSET + SetupHeaderLayout.offsetOf("version")) return false;
  const h = decodeZeroExtended(SetupHeaderLayout, bytes, SETUP_HEADER_OFFSET, bytes.length - SETUP_HEADER_OFFSET);
  return h.bootFlag === BOOT_FLAG && h.header === HDRS_MAGIC;
}

export interface BzImage {
  /** The setup header, fields past its declared end read as 0, setup_sects 0 read as 4. */
  readonly header: Readonly<SetupHeader>;
  /** Bytes 0x1f1 up to the end of the header (0x202 + the jump's displacement), copied into boot_params. */
  readonly headerBytes: Uint8Array;
  /** The protected-mode kernel (everything after the setup sectors), zero-copy. */
  readonly kernel: Uint8Array;
}

const truncated = (what: string) => new BootError("BZIMAGE_TRUNCATED", what);

/** Parse and validate a bzImage's setup header (boot protocol 2.06 or later). */
export function parseBzImage(bytes: Uint8Array): BzImage {
  const need = SETUP_HEADER_OFFSET + SetupHeaderLayout.size;
  if (bytes.length < need) throw truncated(`bzImage: ${bytes.length} bytes cannot hold a setup header (needs ${hex(need)})`);
  const raw = SetupHeaderLayout.decode(bytes, SETUP_HEADER_OFFSET);
  if (raw.bootFlag !== BOOT_FLAG) throw new BootError("BZIMAGE_BAD_MAGIC", `boot_flag: ${hex(raw.bootFlag)} is not 0xaa55`);
  if (raw.header !== HDRS_MAGIC) throw new BootError("BZIMAGE_BAD_MAGIC", `header: ${hex(raw.header)} is not "HdrS"`);
  const version = raw.version;
  if (version < MIN_PROTOCOL) throw new BootError("BZIMAGE_OLD_PROTOCOL", `version: boot protocol ${hex(version)} is older than 2.06`);
  const headerEnd = JUMP_BASE + (raw.jump >> 8);
  const setupSects = raw.setupSects || DEFAULT_SETUP_SECTS;
  const setupSize = (setupSects + 1) * SECTOR;
  if (setupSize >= bytes.length) throw truncated(`setup_sects: ${setupSects} setup sectors leave no protected-mode kernel in a ${bytes.length}-byte file`);
  // headerEnd is at most 0x202 + 0xff (a one-byte displacement), always inside the two sectors a setup has at least.
  // Fields past the header's declared end belong to a newer protocol and read as zero; the
  // identification fields just checked are kept as read.
  const header: SetupHeader = {
    ...decodeZeroExtended(SetupHeaderLayout, bytes, SETUP_HEADER_OFFSET, headerEnd - SETUP_HEADER_OFFSET),
    setupSects,
    bootFlag: raw.bootFlag,
    jump: raw.jump,
    header: raw.header,
    version,
  };
  const kernel = bytes.subarray(setupSize);
  if (kernel.length <= STARTUP_64_OFFSET) throw truncated(`protected-mode kernel: ${kernel.length} bytes do not reach startup_64 at ${hex(STARTUP_64_OFFSET)}`);
  if (header.syssize * 16 > kernel.length) throw truncated(`syssize: ${header.syssize} paragraphs exceed the ${kernel.length}-byte protected-mode kernel`);
  if ((header.loadflags & LOADED_HIGH) === 0) throw new BootError("BZIMAGE_OLD_PROTOCOL", "loadflags: LOADED_HIGH is clear (a zImage, not a bzImage)");
  if (version >= 0x20c && (header.xloadflags & XLF_KERNEL_64) === 0) throw new BootError("BZIMAGE_NOT_64BIT", "xloadflags: XLF_KERNEL_64 is clear, the kernel has no 64-bit entry");
  return { header, headerBytes: bytes.subarray(SETUP_HEADER_OFFSET, headerEnd), kernel };
}

export interface LinuxBootOptions {
  readonly cmdline?: string;
  readonly initrd?: Uint8Array;
  /** Default: highest page-aligned room at or below initrd_addr_max. */
  readonly initrdAddress?: number;
  /** Default: pref_address (2.10+) or 0x100000. Anything else needs a relocatable kernel. */
  readonly loadAddress?: number;
  readonly bootParamsAddress?: number;
  readonly cmdlineAddress?: number;
  readonly gdtAddress?: number;
  readonly pageTablesAddress?: number;
  /** Bytes identity-mapped from 0. Default: 4 GiB, or all of guest memory if more. */
  readonly identityMapSize?: bigint;
  /** Who writes the identity map the 64-bit entry runs on: `ept`'s `identityPageTables()`. */
  readonly pageTables: PageTableBuilder;
  readonly memoryMap?: readonly MemoryMapEntry[];
}

export interface LinuxBoot {
  readonly header: SetupHeader;
  readonly loadAddress: number;
  /** Load address + 0x200 (startup_64). */
  readonly entry: bigint;
  readonly bootParamsAddress: number;
  readonly cmdlineAddress: number;
  readonly initrd?: { readonly address: number; readonly size: number };
  readonly cr3: bigint;
  readonly cpu: BootCpuState;
}

const GIB = 1n << 30n;

/**
 * Place a bzImage's protected-mode kernel, build boot_params (the zero page) with e820 map,
 * command line and initrd, identity page tables and a boot GDT, and return the 64-bit entry state
 * (RIP = startup_64, RSI = boot_params). Everything is checked before anything is written.
 */
export function bootLinux(memory: GuestMemory, image: Uint8Array | BzImage, options: LinuxBootOptions): LinuxBoot {
  const bz = image instanceof Uint8Array ? parseBzImage(image) : image;
  const h = bz.header;
  const defaultLoad = h.version >= 0x20a && h.prefAddress > 0n && h.prefAddress <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(h.prefAddress) : 0x100000;
  const load = options.loadAddress ?? defaultLoad;
  if (!Number.isSafeInteger(load) || load < 0) throw new BootError("BOOT_BAD_OPTION", `loadAddress: ${load} is not a non-negative safe integer`);
  if (load !== defaultLoad) {
    if (h.relocatableKernel === 0) throw new BootError("BZIMAGE_NOT_RELOCATABLE", `relocatable_kernel: 0, so the kernel must load at ${hex(defaultLoad)}, not ${hex(load)}`);
    const align = h.version >= 0x20a && h.minAlignment > 0 && h.minAlignment < 32 ? 2 ** h.minAlignment : h.kernelAlignment;
    if (align > 1 && load % align !== 0) throw new BootError("BZIMAGE_BAD_ALIGNMENT", `loadAddress ${hex(load)} is not aligned to ${hex(align)} (kernel_alignment/min_alignment)`);
  }
  const cmdline = options.cmdline ?? "";
  const cmdBytes = cstring(cmdline, "cmdline");
  if (cmdBytes.length - 1 > h.cmdlineSize) throw new BootError("BZIMAGE_CMDLINE_TOO_LONG", `cmdline: ${cmdBytes.length - 1} bytes exceed cmdline_size ${h.cmdlineSize}`);
  const memmap = options.memoryMap ?? defaultMemoryMap(memory);
  if (memmap.length > E820_MAX_ZEROPAGE) throw new BootError("BZIMAGE_TOO_MANY_E820", `memory map: ${memmap.length} entries exceed the zero page's ${E820_MAX_ZEROPAGE}`);

  const place = new Placement(memory);
  // The decompressor works in place up to init_size from the load address.
  const footprint = Math.max(bz.kernel.length, h.initSize);
  place.add(load, footprint, "kernel (protected-mode image up to init_size)");
  const bp = place.add(options.bootParamsAddress ?? 0x7000, BOOT_PARAMS_SIZE, "boot_params");
  const cmd = place.add(options.cmdlineAddress ?? 0x20000, cmdBytes.length, "command line");
  const gdt = place.add(options.gdtAddress ?? 0x500, BOOT_GDT_SIZE, "boot GDT", true);
  const builder = options.pageTables;
  const round = (n: bigint) => ((n + GIB - 1n) / GIB) * GIB;
  const mapSize = options.identityMapSize ?? (BigInt(memory.end) > 4n * GIB ? round(BigInt(memory.end)) : 4n * GIB);
  const ptBase = options.pageTablesAddress ?? 0x9000;
  place.add(ptBase, builder.footprint?.(mapSize) ?? 4096, "page tables", true);
  for (const p of place.items) {
    if (BigInt(p.address + p.size) > mapSize) throw new BootError("BOOT_BAD_OPTION", `${p.what} ends at ${hex(p.address + p.size)}, beyond the ${hex(mapSize)}-byte identity map`);
  }
  const above4G = (h.xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G) !== 0;
  let initrd: { address: number; size: number } | undefined;
  if (options.initrd !== undefined && options.initrd.length > 0) {
    const size = options.initrd.length;
    const max = h.initrdAddrMax === 0 ? 0x37ffffff : h.initrdAddrMax;
    const addr =
      options.initrdAddress !== undefined ? place.add(options.initrdAddress, size, "initrd", !above4G) : place.fitHigh(size, 4096, Math.min(max + 1, Number(mapSize)), "initrd", true);
    if (!above4G && addr + size - 1 > max) throw new BootError("BOOT_ADDRESS_ABOVE_4G", `initrd: ${hex(addr)}..${hex(addr + size)} ends above initrd_addr_max ${hex(max)}`);
    initrd = { address: addr, size };
  }

  // The zero page starts as the image's own header bytes (including any fields newer than this
  // loader), then the loader's fields are set through the layout.
  const zp = Buffer.alloc(BOOT_PARAMS_SIZE);
  zp.set(bz.headerBytes, SETUP_HEADER_OFFSET);
  const params = BootParamsLayout.decode(zp);
  const hi = (n: number) => Math.floor(n / 2 ** 32);
  params.hdr = {
    ...params.hdr,
    typeOfLoader: 0xff, // undefined boot loader
    code32Start: load >>> 0,
    cmdLinePtr: cmd >>> 0,
    ramdiskImage: initrd === undefined ? 0 : initrd.address >>> 0,
    ramdiskSize: initrd === undefined ? 0 : initrd.size >>> 0,
  };
  params.extCmdLinePtr = hi(cmd);
  params.extRamdiskImage = initrd === undefined ? 0 : hi(initrd.address);
  params.extRamdiskSize = initrd === undefined ? 0 : hi(initrd.size);
  params.e820Entries = memmap.length;
  memmap.forEach((e, i) => {
    params.e820Table[i] = { addr: BigInt.asUintN(64, e.addr), size: BigInt.asUintN(64, e.size), type: e.type >>> 0 };
  });
  BootParamsLayout.encode(params, zp);

  // The injected builder runs first: if it refuses, nothing of ours is written either.
  const cr3 = builder.buildIdentityMap(memory, ptBase, mapSize);
  memory.write(load, bz.kernel);
  writeBootGdt(memory, gdt, true);
  memory.write(bp, zp);
  memory.write(cmd, cmdBytes);
  if (initrd !== undefined && options.initrd !== undefined) memory.write(initrd.address, options.initrd);
  const entry = BigInt(load + STARTUP_64_OFFSET);
  return {
    header: h,
    loadAddress: load,
    entry,
    bootParamsAddress: bp,
    cmdlineAddress: cmd,
    ...(initrd !== undefined ? { initrd } : {}),
    cr3,
    cpu: longMode64State(entry, gdt, cr3, { rsi: BigInt(bp) }),
  };
}
