import { type CLayoutCheck, cLayoutChecks, type StructLayout } from "@tsvmm/abi";
import * as L from "@tsvmm/elf-loader";
import { describe, expect, it } from "vitest";
import * as ElfConstants from "../src/elf/constants.js";
import { evaluateInC, mismatches } from "./helpers/c-checks.js";

// Every structure the loader reads or writes, and the constants it acts on, against the real C
// headers: <elf.h>, <asm/bootparam.h>, Xen's <xen/arch-x86/hvm/start_info.h> and <xen/elfnote.h>
// (libxen-dev), and the Multiboot specification's <multiboot/multiboot.h> (multiboot). The checks
// are generated from the layouts' own fields, so a field added to a declaration is checked too.

const structs = (list: readonly StructLayout<unknown>[]): CLayoutCheck[] => list.flatMap((s) => cLayoutChecks(s));
const constants = (pairs: Record<string, number | bigint>): CLayoutCheck[] =>
  Object.entries(pairs).map(([c, v]) => ({ key: c, expr: c, value: Number(v) }));

const groups: Array<{ name: string; includes: string[]; checks: CLayoutCheck[]; minFacts: number }> = [
  {
    name: "<elf.h>",
    includes: ["<elf.h>"],
    checks: [
      ...structs(L.ELF_STRUCTS),
      // Every constant of elf/constants.ts has its <elf.h> name.
      ...constants(ElfConstants),
      ...constants({ R_X86_64_NONE: L.R_X86_64_NONE, R_X86_64_RELATIVE: L.R_X86_64_RELATIVE, R_386_NONE: L.R_386_NONE, R_386_RELATIVE: L.R_386_RELATIVE }),
    ],
    minFacts: 150,
  },
  {
    name: "<asm/bootparam.h>",
    includes: ["<asm/bootparam.h>"],
    checks: [
      ...structs(L.BOOT_PARAMS_STRUCTS),
      ...constants({ LOADED_HIGH: L.LOADED_HIGH, XLF_KERNEL_64: L.XLF_KERNEL_64, XLF_CAN_BE_LOADED_ABOVE_4G: L.XLF_CAN_BE_LOADED_ABOVE_4G }),
      { key: "E820_MAX_ENTRIES_ZEROPAGE", expr: "E820_MAX_ENTRIES_ZEROPAGE", value: L.E820_MAX_ZEROPAGE },
    ],
    minFacts: 70,
  },
  {
    name: "<xen/arch-x86/hvm/start_info.h>",
    includes: ["<stdint.h>", "<xen/arch-x86/hvm/start_info.h>", "<xen/elfnote.h>"],
    checks: [
      ...structs(L.HVM_START_INFO_STRUCTS),
      { key: "XEN_HVM_START_MAGIC_VALUE", expr: "XEN_HVM_START_MAGIC_VALUE", value: L.HVM_START_MAGIC },
      { key: "XEN_ELFNOTE_PHYS32_ENTRY", expr: "XEN_ELFNOTE_PHYS32_ENTRY", value: L.XEN_ELFNOTE_PHYS32_ENTRY },
      { key: "XEN_HVM_MEMMAP_TYPE_RAM", expr: "XEN_HVM_MEMMAP_TYPE_RAM", value: L.MEMORY_RAM },
      { key: "XEN_HVM_MEMMAP_TYPE_RESERVED", expr: "XEN_HVM_MEMMAP_TYPE_RESERVED", value: L.MEMORY_RESERVED },
      { key: "XEN_HVM_MEMMAP_TYPE_ACPI", expr: "XEN_HVM_MEMMAP_TYPE_ACPI", value: L.MEMORY_ACPI },
      { key: "XEN_HVM_MEMMAP_TYPE_NVS", expr: "XEN_HVM_MEMMAP_TYPE_NVS", value: L.MEMORY_NVS },
      { key: "XEN_HVM_MEMMAP_TYPE_UNUSABLE", expr: "XEN_HVM_MEMMAP_TYPE_UNUSABLE", value: L.MEMORY_UNUSABLE },
    ],
    minFacts: 20,
  },
  {
    name: "<multiboot/multiboot.h>",
    includes: ["<multiboot/multiboot.h>"],
    checks: [
      ...structs(L.MULTIBOOT_STRUCTS),
      ...constants({ MULTIBOOT_HEADER_MAGIC: L.MULTIBOOT_HEADER_MAGIC, MULTIBOOT_BOOTLOADER_MAGIC: L.MULTIBOOT_BOOTLOADER_MAGIC, MULTIBOOT_SEARCH: L.MULTIBOOT_SEARCH }),
      ...constants({
        MULTIBOOT_PAGE_ALIGN: L.MB_FLAG_PAGE_ALIGN,
        MULTIBOOT_MEMORY_INFO: L.MB_FLAG_MEMORY_INFO,
        MULTIBOOT_VIDEO_MODE: L.MB_FLAG_VIDEO_MODE,
        MULTIBOOT_AOUT_KLUDGE: L.MB_FLAG_AOUT_KLUDGE,
        MULTIBOOT_INFO_MEMORY: L.MB_INFO_MEMORY,
        MULTIBOOT_INFO_CMDLINE: L.MB_INFO_CMDLINE,
        MULTIBOOT_INFO_MODS: L.MB_INFO_MODS,
        MULTIBOOT_INFO_MEM_MAP: L.MB_INFO_MMAP,
        MULTIBOOT_INFO_BOOT_LOADER_NAME: L.MB_INFO_LOADER_NAME,
        MULTIBOOT_MOD_ALIGN: L.MULTIBOOT_MOD_ALIGN,
        MULTIBOOT_MEMORY_AVAILABLE: L.MEMORY_RAM,
        MULTIBOOT_MEMORY_RESERVED: L.MEMORY_RESERVED,
        MULTIBOOT_MEMORY_ACPI_RECLAIMABLE: L.MEMORY_ACPI,
        MULTIBOOT_MEMORY_NVS: L.MEMORY_NVS,
        MULTIBOOT_MEMORY_BADRAM: L.MEMORY_UNUSABLE,
      }),
    ],
    minFacts: 60,
  },
];

let total = 0;
describe("layouts and constants against the C headers", () => {
  for (const g of groups) {
    it(`${g.name}: every struct size, field offset and constant matches the C compiler's (${g.checks.length} facts)`, () => {
      expect(g.checks.length).toBeGreaterThanOrEqual(g.minFacts);
      expect(new Set(g.checks.map((c) => c.key)).size).toBe(g.checks.length);
      const fromC = evaluateInC(g.includes, g.checks);
      expect(fromC.size).toBe(g.checks.length);
      expect(mismatches(g.checks, fromC)).toEqual([]);
      total += g.checks.length;
    });
  }
  it("checks every declared struct (no layout left out of the lists above)", () => {
    const declared = Object.entries(L).filter(([k]) => k.endsWith("Layout")).map(([, v]) => (v as StructLayout<unknown>).cType);
    const listed = new Set([...L.ELF_STRUCTS, ...L.BOOT_PARAMS_STRUCTS, ...L.HVM_START_INFO_STRUCTS, ...L.MULTIBOOT_STRUCTS].map((s) => s.cType));
    expect(declared.filter((c) => !listed.has(c))).toEqual([]);
    expect(listed.size).toBe(26);
    console.log(`C header checks: ${total} facts`);
  });
});
