import { GuestMemoryMap } from "@tsvmm/abi";
import { type AcpiPlatform, buildAcpiTables, byteSum, parseRsdp, RSDP, RSDP_V1_LENGTH } from "@tsvmm/acpi";
import { describe, expect, it } from "vitest";
import { aslBlock, dslValue, dslValues, squash } from "./helpers/dsl.js";
import { acpiexec, compile, complaints, disassemble } from "./helpers/iasl.js";

// One machine, built once, disassembled with one iasl run: 4 vCPUs (one disabled, ids not
// contiguous), an IOAPIC with id 4, COM1 and two virtio-mmio devices (one edge-triggered).
const platform: AcpiPlatform = {
  vcpus: [{ apicId: 0 }, { apicId: 1 }, { apicId: 2 }, { apicId: 6, enabled: false }],
  ioapic: { id: 4 },
  devices: [
    { kind: "com" },
    { kind: "virtio-mmio", address: 0xd000_0000, gsi: 5 },
    { kind: "virtio-mmio", address: 0xd000_1000, size: 0x1000, gsi: 16, trigger: "edge" },
  ],
};
const built = buildAcpiTables(platform, { base: 0xe_0000 });
const bytesOf = (sig: string): Buffer => {
  const t = built.tables.find((x) => x.signature === sig);
  if (t === undefined) throw new Error(`${sig} not built`);
  return built.bytes.subarray(t.address - built.base, t.address - built.base + t.length);
};
const addressOf = (sig: string): number => built.tables.find((x) => x.signature === sig)!.address;
const SDTS = ["XSDT", "RSDT", "FACP", "FACS", "DSDT", "APIC"] as const;
const { run, dsl } = disassemble(Object.fromEntries(SDTS.map((s) => [s, bytesOf(s)])));
const hex = (n: number, width: number): string => n.toString(16).toUpperCase().padStart(width, "0");

describe("checksums", () => {
  it("every table with a header sums to 0 over its length", () => {
    for (const s of SDTS.filter((x) => x !== "FACS")) expect([s, byteSum(bytesOf(s))]).toEqual([s, 0]);
  });
  it("the RSDP's 20-byte and 36-byte checksums both sum to 0", () => {
    const r = bytesOf("RSD PTR ");
    expect(r.length).toBe(RSDP.size);
    expect(byteSum(r, 0, RSDP_V1_LENGTH)).toBe(0);
    expect(byteSum(r)).toBe(0);
  });
});

describe("iasl -d", () => {
  it("disassembles every table without a complaint", () => {
    expect(run.status).toBe(0);
    expect(complaints(run.output)).toEqual([]);
    for (const s of SDTS) {
      expect([s, dsl[s] !== undefined]).toEqual([s, true]);
      expect([s, complaints(dsl[s]!)]).toEqual([s, []]);
    }
    expect(run.output).toMatch(/Acpi Data Table \[APIC\] decoded/);
    expect(run.output).toMatch(/Parsing completed/);
  });

  it("MADT: one Processor Local APIC per vCPU with its APIC id, the IOAPIC, the overrides, the NMI", () => {
    const d = dsl.APIC!;
    expect(dslValue(d, "Local Apic Address")).toBe("FEE00000");
    expect(dslValues(d, "Subtable Type").filter((v) => v.includes("[Processor Local APIC]"))).toHaveLength(platform.vcpus.length);
    expect(dslValues(d, "Local Apic ID")).toEqual(platform.vcpus.map((v) => hex(v.apicId, 2)));
    expect(dslValues(d, "Processor ID")).toEqual(["00", "01", "02", "03", "FF"]); // the last is the NMI entry's "all"
    expect(dslValues(d, "Processor Enabled")).toEqual(["1", "1", "1", "0"]);
    expect(dslValue(d, "I/O Apic ID")).toBe("04");
    expect(dslValue(d, "Address")).toBe("FEC00000");
    expect(dslValues(d, "Source")).toEqual(["00", "09"]);
    expect(dslValues(d, "Interrupt")).toEqual(["00000000", "00000002", "00000009"]); // IOAPIC GSI base, then the overrides
    expect(dslValues(d, "Polarity")).toEqual(["0", "1", "0"]);
    expect(dslValues(d, "Trigger Mode")).toEqual(["0", "3", "0"]);
    expect(dslValue(d, "Interrupt Input LINT")).toBe("01");
  });

  it("FADT: the PM blocks at the exported ports, SCI 9, not hardware-reduced, pointers to FACS and DSDT", () => {
    const d = dsl.FACP!;
    expect(dslValue(d, "PM1A Event Block Address")).toBe("00000600");
    expect(dslValue(d, "PM1A Control Block Address")).toBe("00000604");
    expect(dslValue(d, "PM Timer Block Address")).toBe("00000608");
    expect(dslValue(d, "PM1 Event Block Length")).toBe("04");
    expect(dslValue(d, "PM1 Control Block Length")).toBe("02");
    expect(dslValue(d, "PM Timer Block Length")).toBe("04");
    expect(dslValue(d, "SCI Interrupt")).toBe("0009");
    expect(dslValue(d, "SMI Command Port")).toBe("00000000");
    expect(dslValue(d, "Hardware Reduced (V5)")).toBe("0");
    expect(dslValue(d, "Reset Register Supported (V2)")).toBe("1");
    expect(dslValue(d, "Value to cause reset")).toBe("FE");
    expect(dslValues(d, "FACS Address")).toEqual([hex(addressOf("FACS"), 8), hex(0, 16)]);
    expect(dslValues(d, "DSDT Address")).toEqual([hex(addressOf("DSDT"), 8), hex(addressOf("DSDT"), 16)]);
    // X_ blocks: SystemIO at the same ports; then the reset register at 0x64.
    const addrs = dslValues(d, "Address");
    expect(addrs).toContain(hex(0x600, 16));
    expect(addrs).toContain(hex(0x604, 16));
    expect(addrs).toContain(hex(0x608, 16));
    expect(addrs[0]).toBe(hex(0x64, 16));
  });

  it("XSDT and RSDT list the FADT and the MADT where they were placed", () => {
    expect(dslValues(dsl.XSDT!, "ACPI Table Address   0")).toEqual([hex(addressOf("FACP"), 16)]);
    expect(dslValues(dsl.XSDT!, "ACPI Table Address   1")).toEqual([hex(addressOf("APIC"), 16)]);
    expect(dslValues(dsl.RSDT!, "ACPI Table Address   0")).toEqual([hex(addressOf("FACP"), 8)]);
    expect(dslValues(dsl.RSDT!, "ACPI Table Address   1")).toEqual([hex(addressOf("APIC"), 8)]);
  });

  it("DSDT: _S5, COM1 and each virtio-mmio device with its _HID and resources", () => {
    const d = dsl.DSDT!;
    expect(squash(aslBlock(d, "Name (_S5"))).toBe("Name (_S5, Package (0x04) { 0x05, 0x05, Zero, Zero }");
    expect(squash(aslBlock(d, "Device (COM1)"))).toBe(
      squash(`Device (COM1) { Name (_HID, EisaId ("PNP0501")) Name (_UID, One)
        Name (_CRS, ResourceTemplate () { IO (Decode16, 0x03F8, 0x03F8, 0x00, 0x08, ) IRQNoFlags () {4} }) }`),
    );
    expect(squash(aslBlock(d, "Device (VR00)"))).toBe(
      squash(`Device (VR00) { Name (_HID, "LNRO0005") Name (_UID, Zero)
        Name (_CRS, ResourceTemplate () { Memory32Fixed (ReadWrite, 0xD0000000, 0x00000200, )
        Interrupt (ResourceConsumer, Level, ActiveHigh, Exclusive, ,, ) { 0x00000005, } }) }`),
    );
    expect(squash(aslBlock(d, "Device (VR01)"))).toBe(
      squash(`Device (VR01) { Name (_HID, "LNRO0005") Name (_UID, One)
        Name (_CRS, ResourceTemplate () { Memory32Fixed (ReadWrite, 0xD0001000, 0x00001000, )
        Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, ) { 0x00000010, } }) }`),
    );
    expect(aslBlock(d, "Scope (\\_SB)")).toContain("Device (VR01)");
  });
});

describe("iasl round trip", () => {
  // Compiling the disassembly back must give our bytes: iasl re-derives every field from the
  // text it printed, so a field we encoded at the wrong place or width would come back different.
  // iasl puts its own creator id/revision in the header, and so a different checksum.
  const HEADER_IASL_OWNS = new Set([9, 28, 29, 30, 31, 32, 33, 34, 35]);
  const same = (ours: Buffer, theirs: Buffer | undefined): boolean =>
    theirs !== undefined && theirs.length === ours.length && ours.every((b, i) => HEADER_IASL_OWNS.has(i) || theirs[i] === b);

  it("every data table compiles back to the same bytes", () => {
    const tables = ["XSDT", "RSDT", "FACP", "FACS", "APIC"];
    const { run: r, aml } = compile(Object.fromEntries(tables.map((s) => [`${s}.dsl`, dsl[s]!])));
    expect(complaints(r.output)).toEqual([]);
    for (const s of tables) expect([s, same(bytesOf(s), aml[`${s}.dsl`])]).toEqual([s, true]);
    expect(aml["FACS.dsl"]).toEqual(bytesOf("FACS")); // no header: every byte
  });

  it("the DSDT compiles back to the same AML (iasl -oa: no optimisation of our name paths)", () => {
    const { run: r, aml } = compile({ "DSDT.dsl": dsl.DSDT! }, ["-oa"]);
    expect(complaints(r.output)).toEqual([]);
    expect(same(bytesOf("DSDT"), aml["DSDT.dsl"])).toBe(true);
  });

  it("the RSDP equals what iasl's data-table compiler makes of the same fields (iasl -d cannot read an RSDP file)", () => {
    const mem = GuestMemoryMap.allocate([{ base: 0, size: 0x10_0000 }]);
    built.writeTo(mem);
    const r = parseRsdp(mem, built.rsdpAddress);
    const src = [
      `Signature : "RSD PTR "`,
      `Checksum : 00`,
      `Oem ID : "${r.oemId}"`,
      `Revision : ${hex(r.revision, 2)}`,
      `RSDT Address : ${hex(r.rsdtAddress, 8)}`,
      `Length : 00000024`,
      `XSDT Address : ${r.xsdtAddress.toString(16).padStart(16, "0")}`,
      `Extended Checksum : 00`,
      `Reserved : 000000`,
      "",
    ].join("\n");
    const { run: c, aml } = compile({ "rsdp.dsl": src });
    expect(complaints(c.output)).toEqual([]);
    expect(aml["rsdp.dsl"]).toEqual(bytesOf("RSD PTR "));
    expect(r.rsdtAddress).toBe(addressOf("RSDT"));
    expect(r.xsdtAddress).toBe(BigInt(addressOf("XSDT")));
  });
});

describe("iasl -d of a MADT with x2APIC ids", () => {
  it("APIC ids of 255 and above get Processor Local x2APIC entries and the x2APIC NMI", () => {
    const t = buildAcpiTables({ vcpus: [{ apicId: 0 }, { apicId: 254 }, { apicId: 255 }, { apicId: 0x1_0000 }], ioapic: { id: 9, address: 0xfec0_1000, gsiBase: 24 } }, { base: 0 });
    const m = t.tables.find((x) => x.signature === "APIC")!;
    const { run: r, dsl: d } = disassemble({ APIC: t.bytes.subarray(m.address, m.address + m.length) });
    expect(r.status).toBe(0);
    expect(complaints(r.output + d.APIC!)).toEqual([]);
    expect(dslValues(d.APIC!, "Local Apic ID")).toEqual(["00", "FE"]);
    expect(dslValues(d.APIC!, "Processor x2Apic ID")).toEqual(["000000FF", "00010000"]);
    expect(dslValues(d.APIC!, "Processor UID")).toEqual(["00000002", "00000003", "FFFFFFFF"]);
    expect(dslValue(d.APIC!, "Address")).toBe("FEC01000");
    expect(dslValues(d.APIC!, "Interrupt")).toEqual(["00000018", "0000001A", "00000021"]);
  });
});

describe("acpiexec (ACPICA's AML interpreter)", () => {
  it("loads FADT, FACS, DSDT and MADT, and evaluates _S5 and every device's _HID and _CRS", () => {
    const r = acpiexec(
      { FACP: bytesOf("FACP"), FACS: bytesOf("FACS"), DSDT: bytesOf("DSDT"), APIC: bytesOf("APIC") },
      ["evaluate \\_S5", "evaluate \\_SB.COM1._HID", "evaluate \\_SB.COM1._CRS", "evaluate \\_SB.VR00._HID", "evaluate \\_SB.VR01._CRS"],
    );
    expect(r.status).toBe(0);
    expect(r.output).toMatch(/Table \[DSDT: TSVMM {3}\] \(id \w+\) - +\d+ Objects with +3 Devices/);
    expect(r.output).not.toMatch(/ACPI Error|ACPI Exception|AE_AML/);
    const after = (what: string): string => r.output.slice(r.output.indexOf(`Evaluating ${what}`));
    expect(after("\\_S5")).toMatch(/\[Package\] Contains 4 Elements:\s+\[Integer\] = 0+5\s+\[Integer\] = 0+5\s+\[Integer\] = 0+\s+\[Integer\] = 0+\s/);
    expect(after("\\_SB.COM1._HID")).toMatch(/^Evaluating \\_SB.COM1._HID\n.*\n\s+\[Integer\] = 0+105D041\n/);
    expect(after("\\_SB.COM1._CRS")).toMatch(/\[Buffer\] Length 0D =\s+0000: 47 01 F8 03 F8 03 00 08 22 10 00 79 00/);
    expect(after("\\_SB.VR00._HID")).toMatch(/^Evaluating \\_SB.VR00._HID\n.*\n\s+\[String\] Length 08 = "LNRO0005"/);
    // Memory32Fixed(RW, 0xD0001000, 0x1000), Interrupt(Consumer, Edge, ActiveHigh, Exclusive) {16}
    expect(after("\\_SB.VR01._CRS")).toMatch(/\[Buffer\] Length 17 =\s+0000: 86 09 00 01 00 10 00 D0 00 10 00 00 89 06 00 03\s.*\s+0010: 01 10 00 00 00 79 00/);
  });
});
