import type { GuestMemory } from "@tsvmm/abi";
import {
  applyElfLoad, BOOT_GDT_ADDR, BOOT_GDT_SIZE, BOOT_PAGE_TABLES_ADDR, type BootCpuState, BootParamsLayout, bootGdt, bootLinux, bootMultiboot, bootPvh,type ElfFile, 
  findMultibootHeader, findPvhEntry, loadElf, longMode64State, looksLikeBzImage, type PageTableBuilder, parseBzImage, parseElf, planElfLoad, protectedMode32State, realModeState,
} from "@tsvmm/elf-loader";
import { buildIdentityMap, identityMapFootprint, identityPageTables } from "@tsvmm/ept";
import { VmmError } from "./errors.js";
import { unpackPayload } from "./linux-payload.js";

export type KernelFormat = "tsvmm" | "elf" | "pvh" | "multiboot" | "bzimage" | "flat";

/** The tsvmm boot note of the test kernels: name "tsvmm", type 1, a u32 boot mode. */
export const TSVMM_NOTE = { name: "tsvmm", type: 1 } as const;
export const TsvmmBootMode = { real16: 0, prot32: 1, long64: 2 } as const;

const GDT = BOOT_GDT_ADDR;
const PAGE_TABLES = BOOT_PAGE_TABLES_ADDR;
/** Where a flat binary goes: the boot sector's address. */
const FLAT_LOAD = 0x7c00;
const GIB = 1n << 30n;

/** What the VMM does to start a kernel: the boot CPU state, plus how secondary vCPUs start. */
export interface BootPlan {
  /** The kernel's format, or "state" when the caller gave the CPU state and wrote memory itself. */
  readonly format: KernelFormat | "state";
  readonly cpu: BootCpuState;
  /** Secondaries run from the same state (tsvmm guests) or wait for INIT/SIPI (everything else). */
  readonly secondaries: "same-state" | "wait-for-sipi";
  readonly description: string;
}

export interface BootOptions {
  cmdline?: string;
  initrd?: Uint8Array;
  /**
   * bzImage only. "host" (the default): the VMM unpacks the payload (gzip, lz4) and enters the
   * vmlinux's own 64-bit startup_64 with boot_params in RSI, as the decompressor would; payloads
   * it cannot unpack fall back to "guest". "guest": enter the bzImage's startup_64 and let its
   * decompressor run in the guest (minutes where KVM emulates CPL0 code).
   */
  decompress?: "host" | "guest";
  /**
   * Where the ACPI RSDP is: PVH gets it in hvm_start_info.rsdp_paddr, bzImage in
   * boot_params.acpi_rsdp_addr (read by kernels of boot protocol 2.14 and later). Multiboot, flat and
   * tsvmm guests find it by scanning 0xE0000-0xFFFFF, so the tables must lie there for them.
   */
  rsdpAddress?: number;
}

/** Recognize a kernel image by its bytes. */
export function detectFormat(bytes: Uint8Array): KernelFormat {
  return detect(bytes).format;
}

/** The format, and the ELF parsed on the way when it is one (a build parses the image once). */
function detect(bytes: Uint8Array): { format: KernelFormat; elf?: ElfFile } {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  if (looksLikeBzImage(b)) return { format: "bzimage" };
  if (b.length >= 4 && b.readUInt32BE(0) === 0x7f454c46) {
    const elf = parseElf(bytes);
    if (tsvmmMode(elf) !== undefined) return { format: "tsvmm", elf };
    if (findPvhEntry(elf) !== undefined) return { format: "pvh", elf };
    if (findMultibootHeader(bytes) !== undefined) return { format: "multiboot", elf };
    return { format: "elf", elf };
  }
  if (findMultibootHeader(bytes) !== undefined) return { format: "multiboot" };
  return { format: "flat" };
}

/**
 * `auto` falls back to a flat binary for anything without a known header; text is never code,
 * and a JSON file given as the kernel is almost always a config given in the wrong place.
 */
function refuseText(bytes: Uint8Array): void {
  for (const b of bytes) if (!(b === 0x09 || b === 0x0a || b === 0x0d || (b >= 0x20 && b < 0x7f))) return;
  let json = false;
  try {
    JSON.parse(Buffer.from(bytes).toString("utf8"));
    json = true;
  } catch {
    // Not JSON: plain text.
  }
  throw new VmmError("VMM_KERNEL_FORMAT", `the kernel image is ${json ? "JSON" : "text"}, not code${json ? ": did you mean --config?" : " (give --format flat to boot it anyway)"}`);
}

function tsvmmMode(elf: ElfFile): number | undefined {
  const n = elf.notes.find((x) => x.name === TSVMM_NOTE.name && x.type === TSVMM_NOTE.type && x.desc.length >= 4);
  return n === undefined ? undefined : Buffer.from(n.desc).readUInt32LE(0);
}

/** `ept`'s IA-32e builder behind elf-loader's injection point, with user-accessible 2 MiB pages. */
export const eptPageTables: PageTableBuilder = identityPageTables({ user: true });

function identitySize(memory: GuestMemory): bigint {
  const size = BigInt(Math.max(memory.end, 1 << 30));
  return size < GIB ? GIB : size;
}

function identity(memory: GuestMemory): bigint {
  return buildIdentityMap(memory, PAGE_TABLES, { size: identitySize(memory), user: true });
}

/** What the boot contract keeps for the VMM below an ELF image: the GDT, and the page tables for long mode at their real size. */
function bootReserved(memory: GuestMemory, long: boolean): { address: number; size: number; what: string }[] {
  const r = [{ address: GDT, size: BOOT_GDT_SIZE, what: "the boot GDT" }];
  if (long) r.push({ address: PAGE_TABLES, size: identityMapFootprint({ size: identitySize(memory) }), what: "the boot page tables" });
  return r;
}

/**
 * Load `bytes` into guest memory as `format` (or what it looks like) and return how to start it.
 * Nothing is written unless the image is valid for that format; errors are typed.
 */
export function bootKernel(memory: GuestMemory, bytes: Uint8Array, format: KernelFormat | "auto", options: BootOptions = {}): BootPlan {
  return loadKernel(memory, bytes, format, options).plan;
}

/**
 * bootKernel, also handing back the ELF it parsed (undefined when it parsed none), for a caller
 * that needs it again (writeFirmware's overlap check): the image is parsed once per build.
 */
export function loadKernel(memory: GuestMemory, bytes: Uint8Array, format: KernelFormat | "auto", options: BootOptions = {}): { plan: BootPlan; elf: ElfFile | undefined } {
  // Loader errors (ElfError, LoadError, BootError) pass through: their codes already say what is wrong.
  if (bytes.length === 0) throw new VmmError("VMM_KERNEL_FORMAT", "the kernel image is empty");
  let fmt: KernelFormat;
  let elf: ElfFile | undefined;
  if (format === "auto") {
    ({ format: fmt, elf } = detect(bytes));
    if (fmt === "flat") refuseText(bytes);
  } else {
    fmt = format;
  }
  const plan = boot(memory, bytes, fmt, options, () => {
    elf ??= parseElf(bytes);
    return elf;
  });
  return { plan, elf };
}

function boot(memory: GuestMemory, bytes: Uint8Array, fmt: KernelFormat, options: BootOptions, parsed: () => ElfFile): BootPlan {
  switch (fmt) {
    case "bzimage":
      return bootBzImage(memory, bytes, options);
    case "pvh": {
      const b = bootPvh(memory, bytes, { cmdline: options.cmdline, initrd: options.initrd, rsdpAddress: options.rsdpAddress === undefined ? undefined : BigInt(options.rsdpAddress) });
      return { format: fmt, cpu: b.cpu, secondaries: "wait-for-sipi", description: `PVH entry 0x${b.entry.toString(16)}` };
    }
    case "multiboot": {
      const b = bootMultiboot(memory, bytes, {
        cmdline: options.cmdline,
        modules: options.initrd === undefined ? [] : [{ data: options.initrd }],
        bootLoaderName: "tsvmm",
      });
      return { format: fmt, cpu: b.cpu, secondaries: "wait-for-sipi", description: `Multiboot entry 0x${b.entry.toString(16)}` };
    }
    case "tsvmm": {
      const elf = parsed();
      const mode = tsvmmMode(elf);
      const load = loadElf(memory, elf, { reserved: mode === TsvmmBootMode.real16 ? [] : bootReserved(memory, mode === TsvmmBootMode.long64) });
      if (mode === TsvmmBootMode.real16) {
        if (load.entry > 0xffffn) throw new VmmError("VMM_KERNEL_FORMAT", `real-mode entry 0x${load.entry.toString(16)} is above 64 KiB`);
        return { format: fmt, cpu: realModeState(Number(load.entry)), secondaries: "same-state", description: "tsvmm real16" };
      }
      if (mode === TsvmmBootMode.prot32) {
        memory.write(GDT, bootGdt(false));
        return { format: fmt, cpu: protectedMode32State(Number(load.entry), GDT), secondaries: "same-state", description: "tsvmm prot32" };
      }
      if (mode === TsvmmBootMode.long64) {
        memory.write(GDT, bootGdt(true));
        return { format: fmt, cpu: longMode64State(load.entry, GDT, identity(memory)), secondaries: "same-state", description: "tsvmm long64" };
      }
      throw new VmmError("VMM_KERNEL_FORMAT", `tsvmm note: unknown boot mode ${String(mode)}`);
    }
    case "elf": {
      const elf = parsed();
      const load = loadElf(memory, elf, { reserved: bootReserved(memory, elf.header.class === 64) });
      if (elf.header.class === 64) {
        memory.write(GDT, bootGdt(true));
        return { format: fmt, cpu: longMode64State(load.entry, GDT, identity(memory)), secondaries: "wait-for-sipi", description: `ELF64 entry 0x${load.entry.toString(16)} (long mode)` };
      }
      memory.write(GDT, bootGdt(false));
      return { format: fmt, cpu: protectedMode32State(Number(load.entry), GDT), secondaries: "wait-for-sipi", description: `ELF32 entry 0x${load.entry.toString(16)} (protected mode)` };
    }
    case "flat": {
      if (bytes.length === 0 || FLAT_LOAD + bytes.length > 0xa0000) {
        throw new VmmError("VMM_KERNEL_FORMAT", `flat binary of ${bytes.length} bytes does not fit between 0x7c00 and 0xa0000`);
      }
      memory.write(FLAT_LOAD, bytes);
      return { format: fmt, cpu: realModeState(FLAT_LOAD), secondaries: "wait-for-sipi", description: "flat binary at 0x7c00 (real mode)" };
    }
  }
}

/** boot_params.acpi_rsdp_addr, set through the zero page's layout after bootLinux wrote it. */
function setAcpiRsdp(memory: GuestMemory, bootParamsAddress: number, rsdp: number | undefined): void {
  if (rsdp === undefined) return;
  const zp = BootParamsLayout.decode(memory.read(bootParamsAddress, BootParamsLayout.size));
  zp.acpiRsdpAddr = BigInt(rsdp);
  memory.write(bootParamsAddress, BootParamsLayout.encode(zp));
}

function bootBzImage(memory: GuestMemory, bytes: Uint8Array, options: BootOptions): BootPlan {
  const bz = parseBzImage(bytes);
  const h = bz.header;
  const protocol = `boot protocol ${h.version >> 8}.${String(h.version & 0xff).padStart(2, "0")}`;
  const linux = { cmdline: options.cmdline, initrd: options.initrd, pageTables: eptPageTables };
  const unpacked = options.decompress === "guest" || h.payloadLength === 0 ? undefined : unpackPayload(bz.kernel.subarray(h.payloadOffset, h.payloadOffset + h.payloadLength));
  if (unpacked === undefined) {
    const b = bootLinux(memory, bz, linux);
    setAcpiRsdp(memory, b.bootParamsAddress, options.rsdpAddress);
    return { format: "bzimage", cpu: b.cpu, secondaries: "wait-for-sipi", description: `bzImage (${protocol}) at 0x${b.loadAddress.toString(16)}, decompressed by the guest` };
  }
  // The decompressor's hand-over: vmlinux segments at their physical addresses (no KASLR, so no
  // relocations), then a jump to its startup_64 with the same boot_params and identity map.
  // Everything is checked before bootLinux writes; loader errors about the ELF pass through.
  const elf = parseElf(unpacked.vmlinux);
  const plan = planElfLoad(memory, elf);
  const load = h.version >= 0x20a && h.prefAddress > 0n && h.prefAddress <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(h.prefAddress) : 0x100000;
  // bootLinux keeps [load, load + init_size) free of boot data and initrd; the vmlinux must fit there.
  const footprint = Math.max(bz.kernel.length, h.initSize);
  if (plan.lowestAddress < load || plan.end > load + footprint) {
    throw new VmmError("VMM_KERNEL_FORMAT", `bzImage payload: vmlinux spans 0x${plan.lowestAddress.toString(16)}..0x${plan.end.toString(16)}, outside the kernel's 0x${load.toString(16)} + init_size`);
  }
  if (!plan.segments.some((s) => plan.entry >= BigInt(s.guestAddress) && plan.entry < BigInt(s.guestAddress + s.fileSize))) {
    throw new VmmError("VMM_KERNEL_FORMAT", `bzImage payload: vmlinux entry 0x${plan.entry.toString(16)} is in no loaded segment`);
  }
  const b = bootLinux(memory, bz, linux);
  setAcpiRsdp(memory, b.bootParamsAddress, options.rsdpAddress);
  applyElfLoad(memory, plan);
  return {
    format: "bzimage",
    cpu: { regs: { ...b.cpu.regs, rip: plan.entry }, sregs: b.cpu.sregs },
    secondaries: "wait-for-sipi",
    description: `bzImage (${protocol}), ${unpacked.compression} payload unpacked by the VMM, vmlinux startup_64 at 0x${plan.entry.toString(16)}`,
  };
}
