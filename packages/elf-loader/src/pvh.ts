import type { GuestMemory } from "@tsvmm/abi";
import { BOOT_GDT_SIZE, type BootCpuState, protectedMode32State, writeBootGdt } from "./cpu-state.js";
import { parseElf } from "./elf/parse.js";
import type { ElfFile } from "./elf/types.js";
import { BootError, hex } from "./errors.js";
import { HVM_START_MAGIC, HvmMemmapTableEntryLayout, HvmModlistEntryLayout, HvmStartInfoLayout } from "./hvm-start-info.js";
import { applyElfLoad, checkEntryInSegments, type LoadResult, planElfLoad } from "./load.js";
import { defaultMemoryMap, type MemoryMapEntry } from "./memmap.js";
import { cstring, Placement } from "./placement.js";

export const XEN_ELFNOTE_PHYS32_ENTRY = 18;
/** The hvm_start_info version written: 1, the first with the memory map. */
const HVM_START_INFO_VERSION = 1;

/** The 32-bit physical entry point from the Xen PVH note, or undefined when the image has none. */
export function findPvhEntry(elf: ElfFile): number | undefined {
  const n = elf.notes.find((x) => x.name === "Xen" && x.type === XEN_ELFNOTE_PHYS32_ENTRY);
  if (n === undefined) return undefined;
  // The ABI defines a 32-bit value; Linux emits it in a pointer-sized slot, so 8 bytes with a zero top half is accepted.
  let v: bigint;
  // The descriptor is one scalar, not a struct.
  const desc = Buffer.from(n.desc.buffer, n.desc.byteOffset, n.desc.byteLength);
  if (desc.length === 4) v = BigInt(desc.readUInt32LE());
  else if (desc.length === 8) v = desc.readBigUInt64LE();
  else throw new BootError("PVH_BAD_ENTRY_NOTE", `XEN_ELFNOTE_PHYS32_ENTRY: descriptor is ${n.desc.length} bytes, not 4 or 8`);
  if (v > 0xffffffffn) throw new BootError("PVH_BAD_ENTRY_NOTE", `XEN_ELFNOTE_PHYS32_ENTRY: ${hex(v)} is not a 32-bit address`);
  return Number(v);
}

export interface BootModule {
  readonly data: Uint8Array;
  readonly cmdline?: string;
  /** Guest address; default: page-aligned after the kernel. */
  readonly address?: number;
}

export interface PvhBootOptions {
  readonly cmdline?: string;
  /** Shorthand for a first module with no command line (Linux takes module 0 as its initrd). */
  readonly initrd?: Uint8Array;
  readonly modules?: readonly BootModule[];
  /** Default: {@link defaultMemoryMap}. */
  readonly memoryMap?: readonly MemoryMapEntry[];
  readonly rsdpAddress?: bigint;
  /** Where hvm_start_info and the tables and strings after it go. Default 0x6000. */
  readonly startInfoAddress?: number;
  /** Where the boot GDT goes. Default 0x500. */
  readonly gdtAddress?: number;
  /** Added to the segment addresses and the PVH entry (physical addressing). Default 0. */
  readonly offset?: number;
}

export interface PvhBoot {
  readonly load: LoadResult;
  readonly entry: number;
  readonly startInfoAddress: number;
  readonly modules: readonly { address: number; size: number }[];
  readonly cpu: BootCpuState;
}

const align8 = (n: number) => Math.ceil(n / 8) * 8;

/**
 * Load a PVH-capable ELF kernel (physical addressing), write hvm_start_info (version 1) with
 * command line, memory map and modules, and return the 32-bit entry state the PVH ABI requires:
 * flat protected mode, paging off, EBX = start_info. Everything is checked before anything is written.
 */
export function bootPvh(memory: GuestMemory, image: Uint8Array | ElfFile, options: PvhBootOptions = {}): PvhBoot {
  const elf = image instanceof Uint8Array ? parseElf(image) : image;
  const raw = findPvhEntry(elf);
  if (raw === undefined) throw new BootError("PVH_NO_ENTRY_NOTE", 'notes: no XEN_ELFNOTE_PHYS32_ENTRY (type 18, name "Xen")');
  const offset = options.offset ?? 0;
  if (!Number.isSafeInteger(offset)) throw new BootError("BOOT_BAD_OPTION", `offset: ${offset} is not a safe integer`);
  const entry = raw + offset;
  if (entry < 0 || entry > 0xffffffff) throw new BootError("BOOT_ADDRESS_ABOVE_4G", `PVH entry ${hex(raw)} + offset ${offset} is not a 32-bit address`);
  // e_entry means nothing to PVH; its own entry must lie in the kernel's code instead.
  const plan = planElfLoad(memory, elf, { addressing: "physical", offset, checkEntry: false });
  checkEntryInSegments(plan.segments, entry, "PVH entry (XEN_ELFNOTE_PHYS32_ENTRY + offset)");
  const place = new Placement(memory);
  for (const s of plan.segments) place.add(s.guestAddress, s.memorySize, `program header ${s.index}`);

  const rsdp = options.rsdpAddress ?? 0n;
  if (typeof rsdp !== "bigint" || rsdp < 0n || rsdp >= 1n << 64n) throw new BootError("BOOT_BAD_OPTION", `rsdpAddress: ${String(rsdp)} is not a u64 bigint`);
  const mods: BootModule[] = [...(options.initrd !== undefined ? [{ data: options.initrd }] : []), ...(options.modules ?? [])];
  const memmap = options.memoryMap ?? defaultMemoryMap(memory);
  const cmdline = options.cmdline === undefined ? undefined : cstring(options.cmdline, "cmdline");
  const modCmdlines = mods.map((m, i) => (m.cmdline === undefined ? undefined : cstring(m.cmdline, `module ${i} cmdline`)));

  const gdt = place.add(options.gdtAddress ?? 0x500, BOOT_GDT_SIZE, "boot GDT", true);
  // One block: start_info, modlist, memmap, then strings; 8-byte aligned pieces.
  const modlistOff = align8(HvmStartInfoLayout.size);
  const memmapOff = modlistOff + mods.length * HvmModlistEntryLayout.size;
  let strOff = memmapOff + memmap.length * HvmMemmapTableEntryLayout.size;
  const cmdlineOff = strOff;
  strOff += cmdline?.length ?? 0;
  const modStrOffs = modCmdlines.map((c) => {
    const o = strOff;
    strOff += c?.length ?? 0;
    return o;
  });
  const info = place.add(options.startInfoAddress ?? 0x6000, strOff, "hvm_start_info block", true);
  const modAddrs = mods.map((m, i) =>
    m.address !== undefined ? place.add(m.address, m.data.length, `module ${i}`) : place.fitLow(m.data.length, 4096, plan.end, `module ${i}`),
  );

  const block = Buffer.alloc(strOff);
  HvmStartInfoLayout.encode(
    {
      magic: HVM_START_MAGIC,
      version: HVM_START_INFO_VERSION,
      flags: 0,
      nrModules: mods.length,
      modlistPaddr: mods.length > 0 ? BigInt(info + modlistOff) : 0n,
      cmdlinePaddr: cmdline !== undefined ? BigInt(info + cmdlineOff) : 0n,
      rsdpPaddr: rsdp,
      memmapPaddr: BigInt(info + memmapOff),
      memmapEntries: memmap.length,
      reserved: 0,
    },
    block,
  );
  mods.forEach((m, i) => {
    const cmd = modCmdlines[i] !== undefined ? BigInt(info + modStrOffs[i]!) : 0n;
    HvmModlistEntryLayout.encode({ paddr: BigInt(modAddrs[i]!), size: BigInt(m.data.length), cmdlinePaddr: cmd, reserved: 0n }, block, modlistOff + i * HvmModlistEntryLayout.size);
  });
  memmap.forEach((e, i) => {
    const entry = { addr: BigInt.asUintN(64, e.addr), size: BigInt.asUintN(64, e.size), type: e.type >>> 0, reserved: 0 };
    HvmMemmapTableEntryLayout.encode(entry, block, memmapOff + i * HvmMemmapTableEntryLayout.size);
  });
  if (cmdline !== undefined) block.set(cmdline, cmdlineOff);
  modCmdlines.forEach((c, i) => {
    if (c !== undefined) block.set(c, modStrOffs[i]!);
  });

  const load = applyElfLoad(memory, plan);
  writeBootGdt(memory, gdt, false);
  memory.write(info, block);
  mods.forEach((m, i) => {
    memory.write(modAddrs[i]!, m.data);
  });
  return {
    load,
    entry,
    startInfoAddress: info,
    modules: mods.map((m, i) => ({ address: modAddrs[i]!, size: m.data.length })),
    cpu: protectedMode32State(entry, gdt, { rbx: BigInt(info) }),
  };
}
