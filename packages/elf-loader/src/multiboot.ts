import type { GuestMemory } from "@tsvmm/abi";
import { decodeZeroExtended } from "./bytes.js";
import { BOOT_GDT_SIZE, type BootCpuState, protectedMode32State, writeBootGdt } from "./cpu-state.js";
import { parseElf } from "./elf/parse.js";
import { BootError, hex } from "./errors.js";
import { applyElfLoad, type LoadResult, planElfLoad } from "./load.js";
import { defaultMemoryMap, MEMORY_RAM, type MemoryMapEntry } from "./memmap.js";
import { MultibootHeaderLayout, MultibootInfoLayout, MultibootMmapEntryLayout, MultibootModListLayout } from "./multiboot-info.js";
import { cstring, Placement } from "./placement.js";
import type { BootModule } from "./pvh.js";

export const MULTIBOOT_HEADER_MAGIC = 0x1badb002;
export const MULTIBOOT_BOOTLOADER_MAGIC = 0x2badb002;
/** The header must lie 4-byte aligned within this many bytes from the start of the file. */
export const MULTIBOOT_SEARCH = 8192;
/** Modules are placed on this alignment (what flag 0 asks for). */
export const MULTIBOOT_MOD_ALIGN = 4096;
/** `size` of a multiboot_mmap_entry counts the bytes after the field itself. */
const MMAP_ENTRY_SIZE_FIELD = MultibootMmapEntryLayout.size - MultibootMmapEntryLayout.offsetOf("addr");
const MAGIC_BYTES = Buffer.alloc(4);
MAGIC_BYTES.writeUInt32LE(MULTIBOOT_HEADER_MAGIC);
/** The header without the address fields: magic, flags, checksum. */
const HEADER_MIN = MultibootHeaderLayout.offsetOf("headerAddr");
/** The header through entry_addr, needed when flag 16 is set. */
const HEADER_AOUT = MultibootHeaderLayout.offsetOf("modeType");

export const MB_FLAG_PAGE_ALIGN = 1 << 0;
export const MB_FLAG_MEMORY_INFO = 1 << 1;
export const MB_FLAG_VIDEO_MODE = 1 << 2;
export const MB_FLAG_AOUT_KLUDGE = 1 << 16;

export const MB_INFO_MEMORY = 1 << 0;
export const MB_INFO_CMDLINE = 1 << 2;
export const MB_INFO_MODS = 1 << 3;
export const MB_INFO_MMAP = 1 << 6;
export const MB_INFO_LOADER_NAME = 1 << 9;

const align8 = (n: number) => Math.ceil(n / 8) * 8;

export interface MultibootHeader {
  /** File offset of the header. */
  readonly offset: number;
  readonly flags: number;
  /** The address fields, present when flag 16 (a.out kludge) is set. */
  readonly addresses?: {
    readonly headerAddr: number;
    readonly loadAddr: number;
    readonly loadEndAddr: number;
    readonly bssEndAddr: number;
    readonly entryAddr: number;
  };
}

/**
 * The first Multiboot v1 header (magic, flags, checksum summing to 0 mod 2^32) 4-byte aligned in
 * the first 8 KiB, or undefined if there is no magic at all. A magic with a bad checksum and no
 * good header after it is MULTIBOOT_BAD_CHECKSUM.
 */
export function findMultibootHeader(bytes: Uint8Array): MultibootHeader | undefined {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const limit = Math.min(b.length, MULTIBOOT_SEARCH);
  const window = b.subarray(0, limit);
  let badAt = -1;
  // Find each occurrence of the magic's bytes (indexOf is far faster than a u32 per offset),
  // keep the 4-byte aligned ones, and decode the declared struct there.
  for (let o = window.indexOf(MAGIC_BYTES); o >= 0 && o + HEADER_MIN <= limit; o = window.indexOf(MAGIC_BYTES, o + 1)) {
    if (o % 4 !== 0) continue;
    const h = decodeZeroExtended(MultibootHeaderLayout, b, o, b.length - o);
    if (((MULTIBOOT_HEADER_MAGIC + h.flags + h.checksum) & 0xffffffff) >>> 0 !== 0) {
      if (badAt < 0) badAt = o;
      continue;
    }
    const flags = h.flags;
    if ((flags & MB_FLAG_AOUT_KLUDGE) === 0) return { offset: o, flags };
    if (o + HEADER_AOUT > b.length) throw new BootError("MULTIBOOT_BAD_ADDRESS", `multiboot header at ${o}: flag 16 set but the address fields run past the end of the file`);
    return {
      offset: o,
      flags,
      addresses: { headerAddr: h.headerAddr, loadAddr: h.loadAddr, loadEndAddr: h.loadEndAddr, bssEndAddr: h.bssEndAddr, entryAddr: h.entryAddr },
    };
  }
  if (badAt >= 0) throw new BootError("MULTIBOOT_BAD_CHECKSUM", `multiboot header at ${badAt}: magic + flags + checksum is not 0 mod 2^32`);
  return undefined;
}

export interface MultibootOptions {
  readonly cmdline?: string;
  readonly modules?: readonly BootModule[];
  readonly memoryMap?: readonly MemoryMapEntry[];
  /** Where the information structure and the tables and strings after it go. Default 0x6000. */
  readonly infoAddress?: number;
  readonly gdtAddress?: number;
  readonly bootLoaderName?: string;
}

export interface MultibootBoot {
  readonly header: MultibootHeader;
  /** Present for ELF images loaded through their program headers. */
  readonly load?: LoadResult;
  readonly entry: number;
  readonly infoAddress: number;
  readonly modules: readonly { address: number; size: number }[];
  readonly cpu: BootCpuState;
}

/** KiB of RAM from 0 (at most 640) and contiguous from 1 MiB, from the map's RAM entries. */
export function multibootMemorySizes(map: readonly MemoryMapEntry[]): { lower: number; upper: number } {
  const ram = map.filter((e) => e.type === MEMORY_RAM).sort((a, b) => (a.addr < b.addr ? -1 : 1));
  const contiguousFrom = (start: bigint): bigint => {
    let end = start;
    for (const e of ram) if (e.addr <= end && e.addr + e.size > end) end = e.addr + e.size;
    return end - start;
  };
  const lower = contiguousFrom(0n);
  const upper = contiguousFrom(0x100000n);
  return { lower: Number((lower > 0xa0000n ? 0xa0000n : lower) / 1024n), upper: Number((upper / 1024n) & 0xffffffffn) };
}

/**
 * Load a Multiboot v1 kernel (ELF32/ELF64 by program headers, or by the header's a.out kludge
 * addresses when flag 16 is set), write the Multiboot information structure, and return the entry
 * state: EAX = 0x2BADB002, EBX = info, 32-bit flat protected mode, paging off. Flag 2 (video mode)
 * is accepted without providing video information, as QEMU does. Checked before anything is written.
 */
export function bootMultiboot(memory: GuestMemory, image: Uint8Array, options: MultibootOptions = {}): MultibootBoot {
  const header = findMultibootHeader(image);
  if (header === undefined) throw new BootError("MULTIBOOT_NO_HEADER", `no multiboot header (magic ${hex(MULTIBOOT_HEADER_MAGIC)}) in the first ${MULTIBOOT_SEARCH} bytes`);
  const unknown = header.flags & 0xfff8;
  if (unknown !== 0) throw new BootError("MULTIBOOT_UNSUPPORTED_FLAGS", `multiboot flags ${hex(header.flags)}: required bits ${hex(unknown)} are not understood`);
  const place = new Placement(memory);
  let entry: number;
  let load: LoadResult | undefined;
  let commitKernel: () => void;
  const a = header.addresses;
  if (a !== undefined) {
    const what = "multiboot a.out kludge";
    if (a.loadAddr > a.headerAddr) throw new BootError("MULTIBOOT_BAD_ADDRESS", `${what}: load_addr ${hex(a.loadAddr)} is above header_addr ${hex(a.headerAddr)}`);
    const start = header.offset - (a.headerAddr - a.loadAddr);
    if (start < 0) throw new BootError("MULTIBOOT_BAD_ADDRESS", `${what}: header_addr - load_addr ${hex(a.headerAddr - a.loadAddr)} reaches before the start of the file`);
    if (a.loadEndAddr !== 0 && a.loadEndAddr < a.loadAddr) throw new BootError("MULTIBOOT_BAD_ADDRESS", `${what}: load_end_addr ${hex(a.loadEndAddr)} is below load_addr`);
    const size = a.loadEndAddr === 0 ? image.length - start : a.loadEndAddr - a.loadAddr;
    if (start + size > image.length) throw new BootError("MULTIBOOT_BAD_ADDRESS", `${what}: load_end_addr ${hex(a.loadEndAddr)} reaches past the end of the file`);
    if (a.bssEndAddr !== 0 && a.bssEndAddr < a.loadAddr + size) throw new BootError("MULTIBOOT_BAD_ADDRESS", `${what}: bss_end_addr ${hex(a.bssEndAddr)} is below the end of the loaded image`);
    const total = a.bssEndAddr === 0 ? size : a.bssEndAddr - a.loadAddr;
    if (a.entryAddr < a.loadAddr || a.entryAddr >= a.loadAddr + size) {
      throw new BootError("MULTIBOOT_BAD_ADDRESS", `${what}: entry_addr ${hex(a.entryAddr)} lies outside the loaded image ${hex(a.loadAddr)}..${hex(a.loadAddr + size)}`);
    }
    place.add(a.loadAddr, total, "multiboot kernel image", true);
    entry = a.entryAddr;
    commitKernel = () => {
      memory.write(a.loadAddr, image.subarray(start, start + size));
      if (total > size) memory.fill(a.loadAddr + size, total - size, 0);
    };
  } else {
    const plan = planElfLoad(memory, parseElf(image), { addressing: "physical" });
    if (plan.entry > 0xffffffffn) throw new BootError("MULTIBOOT_ENTRY_ABOVE_4G", `e_entry ${hex(plan.entry)} is not a 32-bit address`);
    for (const s of plan.segments) place.add(s.guestAddress, s.memorySize, `program header ${s.index}`, true);
    entry = Number(plan.entry);
    commitKernel = () => {
      load = applyElfLoad(memory, plan);
    };
  }
  const kernelEnd = Math.max(...place.items.map((p) => p.address + p.size));

  const mods = options.modules ?? [];
  const memmap = options.memoryMap ?? defaultMemoryMap(memory);
  const sizes = multibootMemorySizes(memmap);
  const cmdline = options.cmdline === undefined ? undefined : cstring(options.cmdline, "cmdline");
  const name = cstring(options.bootLoaderName ?? "tsvmm", "bootLoaderName");
  const modCmd = mods.map((m, i) => cstring(m.cmdline ?? "", `module ${i} cmdline`));
  const mmapOff = align8(MultibootInfoLayout.size);
  const modsOff = mmapOff + memmap.length * MultibootMmapEntryLayout.size;
  let strOff = modsOff + mods.length * MultibootModListLayout.size;
  const cmdOff = strOff;
  strOff += cmdline?.length ?? 0;
  const nameOff = strOff;
  strOff += name.length;
  const modStrOffs = modCmd.map((c) => {
    const o = strOff;
    strOff += c.length;
    return o;
  });

  const gdt = place.add(options.gdtAddress ?? 0x500, BOOT_GDT_SIZE, "boot GDT", true);
  const info = place.add(options.infoAddress ?? 0x6000, strOff, "multiboot information block", true);
  // Modules always on page boundaries, which satisfies flag 0 whether or not it is set.
  const modAddrs = mods.map((m, i) =>
    m.address !== undefined ? place.add(m.address, m.data.length, `module ${i}`, true) : place.fitLow(m.data.length, MULTIBOOT_MOD_ALIGN, kernelEnd, `module ${i}`, true),
  );

  const b = Buffer.alloc(strOff);
  const flags = MB_INFO_MEMORY | MB_INFO_MODS | MB_INFO_MMAP | MB_INFO_LOADER_NAME | (cmdline !== undefined ? MB_INFO_CMDLINE : 0);
  const infoFields = MultibootInfoLayout.decode(b);
  MultibootInfoLayout.encode(
    {
      ...infoFields,
      flags,
      memLower: sizes.lower,
      memUpper: sizes.upper,
      bootDevice: 0xffffffff, // none (not set in flags)
      cmdline: cmdline !== undefined ? info + cmdOff : 0,
      modsCount: mods.length,
      modsAddr: info + modsOff,
      mmapLength: memmap.length * MultibootMmapEntryLayout.size,
      mmapAddr: info + mmapOff,
      bootLoaderName: info + nameOff,
    },
    b,
  );
  memmap.forEach((e, i) => {
    const entry = { size: MMAP_ENTRY_SIZE_FIELD, addr: BigInt.asUintN(64, e.addr), len: BigInt.asUintN(64, e.size), type: e.type >>> 0 };
    MultibootMmapEntryLayout.encode(entry, b, mmapOff + i * MultibootMmapEntryLayout.size);
  });
  mods.forEach((m, i) => {
    const mod = { modStart: modAddrs[i]!, modEnd: modAddrs[i]! + m.data.length, cmdline: info + modStrOffs[i]!, pad: 0 };
    MultibootModListLayout.encode(mod, b, modsOff + i * MultibootModListLayout.size);
  });
  if (cmdline !== undefined) b.set(cmdline, cmdOff);
  b.set(name, nameOff);
  modCmd.forEach((c, i) => {
    b.set(c, modStrOffs[i]!);
  });

  commitKernel();
  writeBootGdt(memory, gdt, false);
  memory.write(info, b);
  mods.forEach((m, i) => {
    memory.write(modAddrs[i]!, m.data);
  });
  return {
    header,
    ...(load !== undefined ? { load } : {}),
    entry,
    infoAddress: info,
    modules: mods.map((m, i) => ({ address: modAddrs[i]!, size: m.data.length })),
    cpu: protectedMode32State(entry, gdt, { rax: BigInt(MULTIBOOT_BOOTLOADER_MAGIC), rbx: BigInt(info) }),
  };
}
