import { GuestMemoryMap, type StructLayout } from "@tsvmm/abi";
import {
  AcpiError,
  buildMpTable,
  byteSum,
  findMpFloatingPointer,
  MP_BIOS_AREA_END,
  MP_BIOS_AREA_START,
  MP_BUS_ENTRY,
  MP_CONFIG_HEADER,
  MP_FLOATING_POINTER,
  MP_IO_INTERRUPT_ENTRY,
  MP_IOAPIC_ENTRY,
  MP_LOCAL_INTERRUPT_ENTRY,
  MP_PROCESSOR_ENTRY,
  parseMpTable,
} from "@tsvmm/acpi";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

const RUNS = 300 * Number(process.env.TSVMM_FUZZ_SCALE ?? "1");

// Offsets and sizes from the MP spec 1.4 tables 4-1, 4-2, 4-4, 4-7, 4-9, 4-10 and 4-12, written
// out here by hand.
const SPEC: ReadonlyArray<readonly [string, StructLayout<unknown>, number, ReadonlyArray<readonly [string, number]>]> = [
  ["floating pointer (table 4-1)", MP_FLOATING_POINTER as StructLayout<unknown>, 16, [
    ["signature", 0], ["physicalAddressPointer", 4], ["length", 8], ["specRev", 9], ["checksum", 10], ["featureByte1", 11], ["featureByte2", 12],
  ]],
  ["configuration table header (table 4-2)", MP_CONFIG_HEADER as StructLayout<unknown>, 44, [
    ["signature", 0], ["baseTableLength", 4], ["specRev", 6], ["checksum", 7], ["oemId", 8], ["productId", 16], ["oemTablePointer", 28],
    ["oemTableSize", 32], ["entryCount", 34], ["localApicAddress", 36], ["extendedTableLength", 40], ["extendedTableChecksum", 42],
  ]],
  ["processor entry (table 4-4)", MP_PROCESSOR_ENTRY as StructLayout<unknown>, 20, [
    ["entryType", 0], ["localApicId", 1], ["localApicVersion", 2], ["cpuFlags", 3], ["cpuSignature", 4], ["featureFlags", 8],
  ]],
  ["bus entry (table 4-7)", MP_BUS_ENTRY as StructLayout<unknown>, 8, [["entryType", 0], ["busId", 1], ["busTypeString", 2]]],
  ["I/O APIC entry (table 4-9)", MP_IOAPIC_ENTRY as StructLayout<unknown>, 8, [
    ["entryType", 0], ["ioApicId", 1], ["ioApicVersion", 2], ["ioApicFlags", 3], ["ioApicAddress", 4],
  ]],
  ["I/O interrupt entry (table 4-10)", MP_IO_INTERRUPT_ENTRY as StructLayout<unknown>, 8, [
    ["entryType", 0], ["interruptType", 1], ["flags", 2], ["sourceBusId", 4], ["sourceBusIrq", 5], ["destIoApicId", 6], ["destIoApicIntin", 7],
  ]],
  ["local interrupt entry (table 4-12)", MP_LOCAL_INTERRUPT_ENTRY as StructLayout<unknown>, 8, [
    ["entryType", 0], ["interruptType", 1], ["flags", 2], ["sourceBusId", 4], ["sourceBusIrq", 5], ["destLocalApicId", 6], ["destLocalApicLintin", 7],
  ]],
];

describe("MP table layouts match the MP spec 1.4", () => {
  for (const [title, layout, size, rows] of SPEC) {
    it(title, () => {
      expect(layout.size).toBe(size);
      expect(layout.fields().map((f) => [f.path, f.offset])).toEqual(rows.map(([p, o]) => [p, o]));
    });
  }
});

const mem = (): GuestMemoryMap => GuestMemoryMap.allocate([{ base: 0, size: 0x10_0000 }]);

describe("buildMpTable", () => {
  const platform = { vcpus: [{ apicId: 0 }, { apicId: 1 }, { apicId: 4, enabled: false }], ioapic: { id: 5 } };

  it("checksums of the floating pointer and of the configuration table are 0; sizes add up", () => {
    const t = buildMpTable(platform, { address: 0xf_0000 });
    expect(byteSum(t.bytes.subarray(0, 16))).toBe(0);
    expect(byteSum(t.bytes.subarray(16))).toBe(0);
    // 3 processors, 1 bus, 1 IOAPIC, 15 I/O interrupts, 2 local interrupts.
    expect(t.bytes.length).toBe(16 + 44 + 3 * 20 + (1 + 1 + 15 + 2) * 8);
    expect(t.configAddress).toBe(0xf_0010);
  });

  it("round trip: a scan of 0xF0000-0xFFFFF finds it and the parser reads back every entry", () => {
    const m = mem();
    buildMpTable(platform, { address: 0xf_0000 }).writeTo(m);
    const at = findMpFloatingPointer(m, MP_BIOS_AREA_START, MP_BIOS_AREA_END);
    expect(at).toBe(0xf_0000);
    const p = parseMpTable(m, at!);
    expect(p.specRev).toBe(4);
    expect(p.localApicAddress).toBe(0xfee0_0000);
    expect(p.processors.map((x) => [x.apicId, x.enabled, x.bsp, x.version])).toEqual([
      [0, true, true, 0x14],
      [1, true, false, 0x14],
      [4, false, false, 0x14],
    ]);
    expect(p.buses).toEqual([{ id: 0, type: "ISA" }]);
    expect(p.ioApics).toEqual([{ id: 5, version: 0x11, enabled: true, address: 0xfec0_0000 }]);
    const isa = [0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
    expect(p.ioInterrupts).toEqual(isa.map((irq) => ({ type: 0, flags: 0, bus: 0, irq, ioApicId: 5, pin: irq === 0 ? 2 : irq })));
    expect(p.localInterrupts).toEqual([
      { type: 3, flags: 0, bus: 0, irq: 0, localApicId: 0, lint: 0 },
      { type: 1, flags: 0, bus: 0, irq: 0, localApicId: 0xff, lint: 1 },
    ]);
  });

  it("fits in the last KiB of 640 KiB base memory", () => {
    const m = mem();
    const t = buildMpTable({ vcpus: Array.from({ length: 16 }, (_, i) => ({ apicId: i })), ioapic: { id: 16 } }, { address: 0x9_fc00 });
    expect(t.bytes.length).toBeLessThanOrEqual(1024);
    t.writeTo(m);
    expect(findMpFloatingPointer(m, 0x9_fc00, 0xa_0000)).toBe(0x9_fc00);
    expect(parseMpTable(m, 0x9_fc00).processors).toHaveLength(16);
  });

  it("refuses what an MP table cannot hold", () => {
    const code = (f: () => unknown): string | undefined => {
      try {
        f();
      } catch (e) {
        if (e instanceof AcpiError) return e.code;
        throw e;
      }
      return undefined;
    };
    expect(code(() => buildMpTable({ vcpus: [{ apicId: 255 }], ioapic: { id: 1 } }, { address: 0xf_0000 }))).toBe("ACPI_INVALID_ARGUMENT");
    expect(code(() => buildMpTable({ vcpus: [{ apicId: 0 }], ioapic: { id: 1 } }, { address: 0xf_0008 }))).toBe("ACPI_ADDRESS_RANGE");
    expect(code(() => buildMpTable({ vcpus: [{ apicId: 0 }, { apicId: 0 }], ioapic: { id: 1 } }, { address: 0xf_0000 }))).toBe("ACPI_INVALID_ARGUMENT");
    expect(code(() => buildMpTable({ vcpus: [{ apicId: 0 }], ioapic: { id: 1, gsiBase: 24 } }, { address: 0xf_0000 }))).toBe("ACPI_INVALID_ARGUMENT");
  });

  it("property: random CPU sets round trip, checksums hold, and a flipped byte is caught", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 0, max: 254 }), { minLength: 1, maxLength: 64 }),
        fc.integer({ min: 0, max: 254 }),
        fc.nat(),
        (ids, ioapicId, flip) => {
          const m = mem();
          const t = buildMpTable({ vcpus: ids.map((apicId) => ({ apicId })), ioapic: { id: ioapicId } }, { address: 0xf_1230 });
          t.writeTo(m);
          const p = parseMpTable(m, 0xf_1230);
          expect(p.processors.map((x) => x.apicId)).toEqual(ids);
          expect(p.processors.filter((x) => x.bsp).map((x) => x.apicId)).toEqual([ids[0]]);
          const at = 0xf_1230 + (flip % t.bytes.length);
          m.writeU8(at, m.readU8(at) ^ 0x40);
          expect(() => parseMpTable(m, 0xf_1230)).toThrow(AcpiError);
        },
      ),
      { numRuns: RUNS },
    );
  });
});
