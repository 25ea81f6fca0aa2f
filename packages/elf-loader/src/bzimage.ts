import type { GuestMemory } from "@tsvmm/abi";
import { BOOT_GDT_SIZE, type BootCpuState, longMode64State, writeBootGdt } from "./cpu-state.js";
import { BootError, hex } from "./errors.js";
import { defaultMemoryMap, type MemoryMapEntry } from "./memmap.js";
import { identityMap2M, type PageTableBuilder } from "./page-tables.js";
import { cstring, Placement } from "./placement.js";

export const BOOT_FLAG = 0xaa55;
export const HDRS_MAGIC = 0x53726448; // "HdrS"
export const MIN_PROTOCOL = 0x206;
export const LOADED_HIGH = 0x01;
export const XLF_KERNEL_64 = 0x01;
export const XLF_CAN_BE_LOADED_ABOVE_4G = 0x02;
export const E820_MAX_ZEROPAGE = 128;
export const BOOT_PARAMS_SIZE = 4096;
/** startup_64 lies this far into the protected-mode kernel. */
export const STARTUP_64_OFFSET = 0x200;

/** The fields of the Linux x86 setup header (Documentation/arch/x86/boot.rst); absent fields read as 0. */
export interface SetupHeader {
  readonly setupSects: number;
  readonly syssize: number;
  readonly bootFlag: number;
  readonly version: number;
  readonly typeOfLoader: number;
  readonly loadflags: number;
  readonly code32Start: number;
  readonly initrdAddrMax: number;
  readonly kernelAlignment: number;
  readonly relocatableKernel: number;
  readonly minAlignment: number;
  readonly xloadflags: number;
  readonly cmdlineSize: number;
  readonly payloadOffset: number;
  readonly payloadLength: number;
  readonly prefAddress: bigint;
  readonly initSize: number;
}

export interface BzImage {
  readonly header: SetupHeader;
  /** Bytes 0x1f1 up to the end of the header (0x202 + the jump's displacement), copied into boot_params. */
  readonly headerBytes: Uint8Array;
  /** The protected-mode kernel (everything after the setup sectors), zero-copy. */
  readonly kernel: Uint8Array;
}

const truncated = (what: string) => new BootError("BZIMAGE_TRUNCATED", what);

/** Parse and validate a bzImage's setup header (boot protocol 2.06 or later). */
export function parseBzImage(bytes: Uint8Array): BzImage {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < 0x264) throw truncated(`bzImage: ${b.length} bytes cannot hold a setup header (needs 0x264)`);
  const bootFlag = b.readUInt16LE(0x1fe);
  if (bootFlag !== BOOT_FLAG) throw new BootError("BZIMAGE_BAD_MAGIC", `boot_flag: ${hex(bootFlag)} is not 0xaa55`);
  if (b.readUInt32LE(0x202) !== HDRS_MAGIC) throw new BootError("BZIMAGE_BAD_MAGIC", `header: ${hex(b.readUInt32LE(0x202))} is not "HdrS"`);
  const version = b.readUInt16LE(0x206);
  if (version < MIN_PROTOCOL) throw new BootError("BZIMAGE_OLD_PROTOCOL", `version: boot protocol ${hex(version)} is older than 2.06`);
  const headerEnd = 0x202 + b.readUInt8(0x201);
  const setupSects = b.readUInt8(0x1f1) || 4;
  const setupSize = (setupSects + 1) * 512;
  if (setupSize >= b.length) throw truncated(`setup_sects: ${setupSects} setup sectors leave no protected-mode kernel in a ${b.length}-byte file`);
  if (headerEnd > setupSize) throw new BootError("BZIMAGE_BAD_MAGIC", `jump: setup header end ${hex(headerEnd)} lies beyond the setup sectors`);
  // Fields past the header's declared end belong to a newer protocol and read as zero.
  const f = (o: number, size: 1 | 2 | 4): number => (o + size > headerEnd ? 0 : size === 1 ? b.readUInt8(o) : size === 2 ? b.readUInt16LE(o) : b.readUInt32LE(o));
  const header: SetupHeader = {
    setupSects,
    syssize: f(0x1f4, 4),
    bootFlag,
    version,
    typeOfLoader: f(0x210, 1),
    loadflags: f(0x211, 1),
    code32Start: f(0x214, 4),
    initrdAddrMax: f(0x22c, 4),
    kernelAlignment: f(0x230, 4),
    relocatableKernel: f(0x234, 1),
    minAlignment: f(0x235, 1),
    xloadflags: f(0x236, 2),
    cmdlineSize: version >= 0x206 ? f(0x238, 4) : 255,
    payloadOffset: f(0x248, 4),
    payloadLength: f(0x24c, 4),
    prefAddress: 0x258 + 8 > headerEnd ? 0n : b.readBigUInt64LE(0x258),
    initSize: f(0x260, 4),
  };
  const kernel = bytes.subarray(setupSize);
  if (header.syssize * 16 > kernel.length) throw truncated(`syssize: ${header.syssize} paragraphs exceed the ${kernel.length}-byte protected-mode kernel`);
  if ((header.loadflags & LOADED_HIGH) === 0) throw new BootError("BZIMAGE_OLD_PROTOCOL", "loadflags: LOADED_HIGH is clear (a zImage, not a bzImage)");
  if (version >= 0x20c && (header.xloadflags & XLF_KERNEL_64) === 0) throw new BootError("BZIMAGE_NOT_64BIT", "xloadflags: XLF_KERNEL_64 is clear, the kernel has no 64-bit entry");
  return { header, headerBytes: bytes.subarray(0x1f1, headerEnd), kernel };
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
  /** Default: the built-in 2 MiB-page builder; pass `ept`'s IA-32e builder here. */
  readonly pageTables?: PageTableBuilder;
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
export function bootLinux(memory: GuestMemory, image: Uint8Array | BzImage, options: LinuxBootOptions = {}): LinuxBoot {
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
  const builder = options.pageTables ?? identityMap2M;
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

  const zp = Buffer.alloc(BOOT_PARAMS_SIZE);
  zp.set(bz.headerBytes, 0x1f1);
  zp.writeUInt8(0xff, 0x210); // type_of_loader: undefined boot loader
  zp.writeUInt32LE(load >>> 0, 0x214); // code32_start
  zp.writeUInt32LE(cmd >>> 0, 0x228);
  zp.writeUInt32LE(Math.floor(cmd / 2 ** 32), 0x0c8); // ext_cmd_line_ptr
  if (initrd !== undefined) {
    zp.writeUInt32LE(initrd.address >>> 0, 0x218);
    zp.writeUInt32LE(initrd.size >>> 0, 0x21c);
    zp.writeUInt32LE(Math.floor(initrd.address / 2 ** 32), 0x0c0);
    zp.writeUInt32LE(Math.floor(initrd.size / 2 ** 32), 0x0c4);
  }
  zp.writeUInt8(memmap.length, 0x1e8);
  memmap.forEach((e, i) => {
    const o = 0x2d0 + i * 20;
    zp.writeBigUInt64LE(BigInt.asUintN(64, e.addr), o);
    zp.writeBigUInt64LE(BigInt.asUintN(64, e.size), o + 8);
    zp.writeUInt32LE(e.type >>> 0, o + 16);
  });

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
