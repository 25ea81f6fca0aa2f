import type { StructLayout } from "@tsvmm/abi";
import {
  EXTENDED_INTERRUPT_HEADER,
  FACS,
  FADT,
  GAS,
  IO_DESCRIPTOR,
  IRQ_NO_FLAGS_DESCRIPTOR,
  MADT_FIXED,
  MADT_INTERRUPT_SOURCE_OVERRIDE,
  MADT_IO_APIC,
  MADT_LOCAL_APIC,
  MADT_LOCAL_APIC_NMI,
  MADT_LOCAL_X2APIC,
  MADT_LOCAL_X2APIC_NMI,
  MEMORY32_FIXED_DESCRIPTOR,
  RSDP,
  SDT_HEADER,
} from "@tsvmm/acpi";
import { describe, expect, it } from "vitest";

// Offsets and lengths as the ACPI 6.4 specification's tables give them (section in each title),
// written out here by hand from the spec: no ACPI C header exists on this machine to compile.
// Each row: [our field path, byte offset, byte length]. Reserved fields have no path.
type Row = readonly [string, number, number];

const SPEC: ReadonlyArray<readonly [string, StructLayout<unknown>, number, readonly Row[]]> = [
  [
    "5.2.5.3 RSDP (table 5.3)",
    RSDP as StructLayout<unknown>,
    36,
    [
      ["signature", 0, 8],
      ["checksum", 8, 1],
      ["oemId", 9, 6],
      ["revision", 15, 1],
      ["rsdtAddress", 16, 4],
      ["length", 20, 4],
      ["xsdtAddress", 24, 8],
      ["extendedChecksum", 32, 1],
    ],
  ],
  [
    "5.2.6 DESCRIPTION_HEADER (table 5.4)",
    SDT_HEADER as StructLayout<unknown>,
    36,
    [
      ["signature", 0, 4],
      ["length", 4, 4],
      ["revision", 8, 1],
      ["checksum", 9, 1],
      ["oemId", 10, 6],
      ["oemTableId", 16, 8],
      ["oemRevision", 24, 4],
      ["creatorId", 28, 4],
      ["creatorRevision", 32, 4],
    ],
  ],
  [
    "5.2.3.2 Generic Address Structure (table 5.1)",
    GAS as StructLayout<unknown>,
    12,
    [
      ["addressSpaceId", 0, 1],
      ["registerBitWidth", 1, 1],
      ["registerBitOffset", 2, 1],
      ["accessSize", 3, 1],
      ["address", 4, 8],
    ],
  ],
  [
    "5.2.9 FADT (table 5.9)",
    FADT as StructLayout<unknown>,
    276,
    [
      ["header", 0, 36],
      ["firmwareCtrl", 36, 4],
      ["dsdt", 40, 4],
      ["preferredPmProfile", 45, 1],
      ["sciInt", 46, 2],
      ["smiCmd", 48, 4],
      ["acpiEnable", 52, 1],
      ["acpiDisable", 53, 1],
      ["s4biosReq", 54, 1],
      ["pstateCnt", 55, 1],
      ["pm1aEvtBlk", 56, 4],
      ["pm1bEvtBlk", 60, 4],
      ["pm1aCntBlk", 64, 4],
      ["pm1bCntBlk", 68, 4],
      ["pm2CntBlk", 72, 4],
      ["pmTmrBlk", 76, 4],
      ["gpe0Blk", 80, 4],
      ["gpe1Blk", 84, 4],
      ["pm1EvtLen", 88, 1],
      ["pm1CntLen", 89, 1],
      ["pm2CntLen", 90, 1],
      ["pmTmrLen", 91, 1],
      ["gpe0BlkLen", 92, 1],
      ["gpe1BlkLen", 93, 1],
      ["gpe1Base", 94, 1],
      ["cstCnt", 95, 1],
      ["pLvl2Lat", 96, 2],
      ["pLvl3Lat", 98, 2],
      ["flushSize", 100, 2],
      ["flushStride", 102, 2],
      ["dutyOffset", 104, 1],
      ["dutyWidth", 105, 1],
      ["dayAlrm", 106, 1],
      ["monAlrm", 107, 1],
      ["century", 108, 1],
      ["iapcBootArch", 109, 2],
      ["flags", 112, 4],
      ["resetReg", 116, 12],
      ["resetValue", 128, 1],
      ["armBootArch", 129, 2],
      ["fadtMinorVersion", 131, 1],
      ["xFirmwareCtrl", 132, 8],
      ["xDsdt", 140, 8],
      ["xPm1aEvtBlk", 148, 12],
      ["xPm1bEvtBlk", 160, 12],
      ["xPm1aCntBlk", 172, 12],
      ["xPm1bCntBlk", 184, 12],
      ["xPm2CntBlk", 196, 12],
      ["xPmTmrBlk", 208, 12],
      ["xGpe0Blk", 220, 12],
      ["xGpe1Blk", 232, 12],
      ["sleepControlReg", 244, 12],
      ["sleepStatusReg", 256, 12],
      ["hypervisorVendorIdentity", 268, 8],
    ],
  ],
  [
    "5.2.10 FACS (table 5.14)",
    FACS as StructLayout<unknown>,
    64,
    [
      ["signature", 0, 4],
      ["length", 4, 4],
      ["hardwareSignature", 8, 4],
      ["firmwareWakingVector", 12, 4],
      ["globalLock", 16, 4],
      ["flags", 20, 4],
      ["xFirmwareWakingVector", 24, 8],
      ["version", 32, 1],
      ["ospmFlags", 36, 4],
    ],
  ],
  // MADT (table 5.19): Local Interrupt Controller Address at 36, Flags at 40, entries from 44.
  ["5.2.12 MADT fixed fields after the header", MADT_FIXED as StructLayout<unknown>, 8, [
    ["localApicAddress", 0, 4],
    ["flags", 4, 4],
  ]],
  ["5.2.12.2 Processor Local APIC (table 5.22)", MADT_LOCAL_APIC as StructLayout<unknown>, 8, [
    ["type", 0, 1],
    ["length", 1, 1],
    ["processorUid", 2, 1],
    ["apicId", 3, 1],
    ["flags", 4, 4],
  ]],
  ["5.2.12.3 I/O APIC (table 5.24)", MADT_IO_APIC as StructLayout<unknown>, 12, [
    ["type", 0, 1],
    ["length", 1, 1],
    ["ioApicId", 2, 1],
    ["ioApicAddress", 4, 4],
    ["gsiBase", 8, 4],
  ]],
  ["5.2.12.5 Interrupt Source Override (table 5.25)", MADT_INTERRUPT_SOURCE_OVERRIDE as StructLayout<unknown>, 10, [
    ["type", 0, 1],
    ["length", 1, 1],
    ["bus", 2, 1],
    ["source", 3, 1],
    ["gsi", 4, 4],
    ["flags", 8, 2],
  ]],
  ["5.2.12.7 Local APIC NMI (table 5.29)", MADT_LOCAL_APIC_NMI as StructLayout<unknown>, 6, [
    ["type", 0, 1],
    ["length", 1, 1],
    ["processorUid", 2, 1],
    ["flags", 3, 2],
    ["lint", 5, 1],
  ]],
  ["5.2.12.12 Processor Local x2APIC (table 5.37)", MADT_LOCAL_X2APIC as StructLayout<unknown>, 16, [
    ["type", 0, 1],
    ["length", 1, 1],
    ["x2apicId", 4, 4],
    ["flags", 8, 4],
    ["processorUid", 12, 4],
  ]],
  ["5.2.12.13 Local x2APIC NMI (table 5.38)", MADT_LOCAL_X2APIC_NMI as StructLayout<unknown>, 12, [
    ["type", 0, 1],
    ["length", 1, 1],
    ["flags", 2, 2],
    ["processorUid", 4, 4],
    ["lint", 8, 1],
  ]],
  // Resource descriptors (section 6.4): offsets count from the tag byte.
  ["6.4.2.6 I/O Port Descriptor (table 6.252)", IO_DESCRIPTOR as StructLayout<unknown>, 8, [
    ["tag", 0, 1],
    ["information", 1, 1],
    ["rangeMin", 2, 2],
    ["rangeMax", 4, 2],
    ["alignment", 6, 1],
    ["rangeLength", 7, 1],
  ]],
  ["6.4.2.1 IRQ Descriptor, length 2 (table 6.245)", IRQ_NO_FLAGS_DESCRIPTOR as StructLayout<unknown>, 3, [
    ["tag", 0, 1],
    ["mask", 1, 2],
  ]],
  ["6.4.3.4 32-Bit Fixed Memory Range Descriptor (table 6.264)", MEMORY32_FIXED_DESCRIPTOR as StructLayout<unknown>, 12, [
    ["tag", 0, 1],
    ["length", 1, 2],
    ["information", 3, 1],
    ["base", 4, 4],
    ["rangeLength", 8, 4],
  ]],
  ["6.4.3.6 Extended Interrupt Descriptor, before the table (table 6.267)", EXTENDED_INTERRUPT_HEADER as StructLayout<unknown>, 5, [
    ["tag", 0, 1],
    ["length", 1, 2],
    ["flags", 3, 1],
    ["tableLength", 4, 1],
  ]],
];

interface LayoutNode {
  readonly span: number;
  readonly property?: string;
  readonly fields?: readonly LayoutNode[];
}

/** Byte width of every named field (nested structs and their leaves), from the layout itself. */
function fieldWidths(layout: StructLayout<unknown>): Map<string, number> {
  const out = new Map<string, number>();
  const walk = (node: LayoutNode, prefix: string): void => {
    for (const f of node.fields ?? []) {
      if (f.property === undefined) continue;
      const p = prefix + f.property;
      out.set(p, f.span);
      if (f.fields !== undefined) walk(f, `${p}.`);
    }
  };
  walk(layout.layout as unknown as LayoutNode, "");
  return out;
}

describe("layouts match the ACPI specification's tables", () => {
  for (const [title, layout, size, rows] of SPEC) {
    it(title, () => {
      expect(layout.size).toBe(size);
      for (const [path, offset] of rows) expect([path, layout.offsetOf(path)]).toEqual([path, offset]);
      const widths = fieldWidths(layout);
      for (const [path, , length] of rows) expect([path, widths.get(path)]).toEqual([path, length]);
    });
  }

  it("every named field of every layout is listed in the spec rows (no field left unchecked)", () => {
    for (const [title, layout, , rows] of SPEC) {
      // A nested struct (FADT header, GAS fields) is listed whole; its own layout is checked above.
      const listed = new Set(rows.map((r) => r[0]));
      for (const f of layout.fields()) {
        const ok = listed.has(f.path) || listed.has(f.path.split(".")[0]!);
        expect([title, f.path, ok]).toEqual([title, f.path, true]);
      }
    }
  });
});
