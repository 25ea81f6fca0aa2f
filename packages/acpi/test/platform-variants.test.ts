import { GuestMemoryMap } from "@tsvmm/abi";
import {
  type AcpiPlatform,
  buildAcpiTables,
  buildFadt,
  buildRsdp,
  buildRsdt,
  buildXsdt,
  DEFAULT_TABLE_IDS,
  intiFlags,
  type OverridePolarity,
  type OverrideTrigger,
  parseFadt,
  parseMadt,
  parseRsdp,
  pmTimerValue,
  RSDP,
  readAcpiTables,
  resolvePlatform,
  SDT_HEADER,
} from "@tsvmm/acpi";
import { describe, expect, it } from "vitest";
import { dslValue, dslValues } from "./helpers/dsl.js";
import { code } from "./helpers/errors.js";
import { complaints, disassemble } from "./helpers/iasl.js";

// The platform options tables.test.ts leaves at their defaults (no reset register, no LAPIC NMI,
// NMI on LINT0, no PC-AT 8259s, every IAPC_BOOT_ARCH bit flipped, a 32-bit PM timer, all nine
// trigger/polarity pairs of an override), decoded by iasl; then the address and id checks.

const TRIGGERS: OverrideTrigger[] = ["conforming", "edge", "level"];
const POLARITIES: OverridePolarity[] = ["conforming", "active-high", "active-low"];
const pairs = TRIGGERS.flatMap((trigger) => POLARITIES.map((polarity) => ({ trigger, polarity })));

const flipped: AcpiPlatform = {
  vcpus: [{ apicId: 0 }, { apicId: 300 }],
  ioapic: { id: 1 },
  reset: false,
  lapicNmi: { lint: 0 },
  pcatCompat: false,
  pm: { pmTimer32Bit: true },
  bootArch: { legacyDevices: true, i8042: true, vgaNotPresent: false, msiNotSupported: true, cmosRtcNotPresent: true },
  overrides: pairs.map((p, i) => ({ source: i, gsi: 16 + i, ...p })),
};
const noNmi: AcpiPlatform = { vcpus: [{ apicId: 0 }, { apicId: 300 }], ioapic: { id: 1 }, lapicNmi: false, reset: { port: 0xcf9, value: 0x06 } };

const tablesOf = (p: AcpiPlatform): Record<string, Buffer> => {
  const t = buildAcpiTables(p, { base: 0xe_0000 });
  const get = (sig: string): Buffer => {
    const x = t.tables.find((y) => y.signature === sig)!;
    return t.bytes.subarray(x.address - t.base, x.address - t.base + x.length);
  };
  return { FACP: get("FACP"), APIC: get("APIC") };
};
const a = tablesOf(flipped);
const b = tablesOf(noNmi);
const { run, dsl } = disassemble({ FACP_A: a.FACP!, APIC_A: a.APIC!, FACP_B: b.FACP!, APIC_B: b.APIC! });

describe("iasl -d of the non-default options", () => {
  it("disassembles without a complaint", () => {
    expect(run.status).toBe(0);
    expect(complaints(run.output)).toEqual([]);
    for (const d of Object.values(dsl)) expect(complaints(d)).toEqual([]);
  });
  it("FADT: every IAPC_BOOT_ARCH bit as given, TMR_VAL_EXT set, no reset register", () => {
    const d = dsl.FACP_A!;
    expect(dslValue(d, "Legacy Devices Supported (V2)")).toBe("1");
    expect(dslValue(d, "8042 Present on ports 60/64 (V2)")).toBe("1");
    expect(dslValue(d, "VGA Not Present (V4)")).toBe("0");
    expect(dslValue(d, "MSI Not Supported (V4)")).toBe("1");
    expect(dslValue(d, "CMOS RTC Not Present (V5)")).toBe("1");
    expect(dslValue(d, "32-bit PM Timer (V1)")).toBe("1");
    expect(dslValue(d, "Reset Register Supported (V2)")).toBe("0");
    const f = parseFadt(a.FACP!);
    expect([f.resetReg.address, f.resetReg.addressSpaceId, f.resetValue]).toEqual([0n, 0, 0]);
  });
  it("FADT: a reset register at the port and value given", () => {
    const d = dsl.FACP_B!;
    expect(dslValue(d, "Reset Register Supported (V2)")).toBe("1");
    expect(dslValue(d, "Value to cause reset")).toBe("06");
    expect(dslValue(d, "32-bit PM Timer (V1)")).toBe("0");
    expect(parseFadt(b.FACP!).resetReg.address).toBe(0xcf9n);
  });
  it("MADT: PC-AT compatibility off, the NMI on LINT0 in both the xAPIC and x2APIC NMI entries", () => {
    const d = dsl.APIC_A!;
    expect(dslValue(d, "PC-AT Compatibility")).toBe("0");
    expect(dslValues(d, "Interrupt Input LINT")).toEqual(["00", "00"]);
    expect(parseMadt(a.APIC!).nmis.map((n) => [n.kind, n.lint])).toEqual([
      ["local-apic", 0],
      ["local-x2apic", 0],
    ]);
  });
  it("MADT: lapicNmi false lists no NMI entry", () => {
    expect(dslValues(dsl.APIC_B!, "Interrupt Input LINT")).toEqual([]);
    expect(parseMadt(b.APIC!).nmis).toEqual([]);
    expect(dslValue(dsl.APIC_B!, "PC-AT Compatibility")).toBe("1");
  });
  it("MADT: each of the nine trigger/polarity pairs is the MPS INTI encoding iasl decodes", () => {
    // ACPI 6.4 table 5.26: polarity 00 conforms / 01 high / 11 low; trigger 00 conforms / 01 edge / 11 level.
    const code2 = { conforming: 0, "active-high": 1, "active-low": 3, edge: 1, level: 3 } as const;
    const pol = dslValues(dsl.APIC_A!, "Polarity");
    const trig = dslValues(dsl.APIC_A!, "Trigger Mode");
    // The last two of each are the NMI entries' (conforming).
    expect(pol.slice(0, 9)).toEqual(pairs.map((p) => String(code2[p.polarity])));
    expect(trig.slice(0, 9)).toEqual(pairs.map((p) => String(code2[p.trigger])));
    expect(pairs.map((p) => intiFlags(p.trigger, p.polarity))).toEqual(pairs.map((p) => code2[p.polarity] | (code2[p.trigger] << 2)));
    expect(parseMadt(a.APIC!).overrides.map((o) => o.flags)).toEqual(pairs.map((p) => intiFlags(p.trigger, p.polarity)));
  });
});

describe("platform checks", () => {
  const base = { vcpus: [{ apicId: 0 }], ioapic: { id: 1 } };
  it("the LAPIC NMI is on LINT0 or LINT1, nothing else", () => {
    for (const lint of [2, -1, 0.5]) expect(code(() => resolvePlatform({ ...base, lapicNmi: { lint: lint as 0 | 1 } }))).toBe("ACPI_INVALID_ARGUMENT");
    expect(resolvePlatform(base).lapicNmi).toEqual({ lint: 1 });
    expect(resolvePlatform({ ...base, lapicNmi: { lint: 0 } }).lapicNmi).toEqual({ lint: 0 });
  });
  it("a device of unknown kind is refused by name", () => {
    const p = { ...base, devices: [{ kind: "pci-host" }] } as unknown as AcpiPlatform;
    expect(() => resolvePlatform(p)).toThrowError(/devices\[0\]: unknown kind pci-host/);
    expect(code(() => resolvePlatform(p))).toBe("ACPI_INVALID_ARGUMENT");
  });
  it("OEM and creator revisions are u32", () => {
    for (const oemRevision of [-1, 2 ** 32, 1.5]) expect(code(() => buildAcpiTables({ ...base, ids: { oemRevision } }, { base: 0 }))).toBe("ACPI_INVALID_ARGUMENT");
    for (const creatorRevision of [-1, 2 ** 32]) expect(code(() => buildAcpiTables({ ...base, ids: { creatorRevision } }, { base: 0 }))).toBe("ACPI_INVALID_ARGUMENT");
    const t = buildAcpiTables({ ...base, ids: { oemRevision: 0xffff_ffff, creatorRevision: 0 } }, { base: 0 });
    const x = t.tables.find((y) => y.signature === "XSDT")!;
    const h = SDT_HEADER.decode(t.bytes, x.address);
    expect([h.oemRevision, h.creatorRevision]).toEqual([0xffff_ffff, 0]);
  });
});

describe("table builders refuse addresses that do not fit their fields", () => {
  const p = resolvePlatform({ vcpus: [{ apicId: 0 }], ioapic: { id: 1 } });
  it("FADT: negative FACS or DSDT addresses", () => {
    expect(code(() => buildFadt(p, { dsdt: -1n, facs: 0x1000n }))).toBe("ACPI_ADDRESS_RANGE");
    expect(code(() => buildFadt(p, { dsdt: 0x1000n, facs: -64n }))).toBe("ACPI_ADDRESS_RANGE");
  });
  it("RSDP: the RSDT address is a u32 and defaults to 0", () => {
    for (const rsdtAddress of [-1, 2 ** 32, 1.5]) expect(code(() => buildRsdp({ xsdtAddress: 0n, rsdtAddress, oemId: "X" }))).toBe("ACPI_ADDRESS_RANGE");
    const mem = GuestMemoryMap.allocate([{ base: 0, size: 0x100 }]);
    mem.write(0, buildRsdp({ xsdtAddress: 0x1234_5678_9an, oemId: "X" }));
    expect(parseRsdp(mem, 0)).toMatchObject({ rsdtAddress: 0, xsdtAddress: 0x1234_5678_9an, oemId: "X     " });
    mem.write(0, buildRsdp({ xsdtAddress: 0n, rsdtAddress: 0xffff_ffff, oemId: "X" }));
    expect(parseRsdp(mem, 0).rsdtAddress).toBe(0xffff_ffff);
    expect(RSDP.size).toBe(36);
  });
  it("XSDT entries are u64, RSDT entries u32", () => {
    for (const e of [-1n, 2n ** 64n]) expect(code(() => buildXsdt([0x1000n, e], DEFAULT_TABLE_IDS))).toBe("ACPI_ADDRESS_RANGE");
    for (const e of [-1n, 2n ** 32n]) expect(code(() => buildRsdt([e], DEFAULT_TABLE_IDS))).toBe("ACPI_ADDRESS_RANGE");
    expect(buildXsdt([2n ** 64n - 1n], DEFAULT_TABLE_IDS).readBigUInt64LE(36)).toBe(2n ** 64n - 1n);
    expect(buildRsdt([0xffff_ffffn], DEFAULT_TABLE_IDS).readUInt32LE(36)).toBe(0xffff_ffff);
  });
});

describe("buildAcpiTables placement checks", () => {
  const two: AcpiPlatform = { vcpus: [{ apicId: 0 }, { apicId: 1 }], ioapic: { id: 2 } };
  it("a base or RSDP address that is not a non-negative safe integer is ACPI_ADDRESS_RANGE", () => {
    for (const bad of [Number.NaN, -16, 16.5, 2 ** 53, Number.POSITIVE_INFINITY]) {
      expect([bad, code(() => buildAcpiTables(two, { base: bad }))]).toEqual([bad, "ACPI_ADDRESS_RANGE"]);
      expect([bad, code(() => buildAcpiTables(two, { base: 0x10_0000, rsdpAddress: bad }))]).toEqual([bad, "ACPI_ADDRESS_RANGE"]);
    }
  });
  it("tables that would end past 2^53 are refused before anything is built", () => {
    const top = Number.MAX_SAFE_INTEGER - 15; // 16-aligned
    expect(top % 16).toBe(0);
    expect(() => buildAcpiTables(two, { base: top, rsdt: false })).toThrowError(/past 2\^53/);
  });
  it("extra tables must be whole tables: at least a header, and as long as the header says", () => {
    expect(code(() => buildAcpiTables(two, { base: 0xe_0000, extraTables: [Buffer.alloc(35)] }))).toBe("ACPI_INVALID_ARGUMENT");
    const t = Buffer.alloc(40);
    t.write("TEST", 0, "latin1");
    t.writeUInt32LE(44, 4);
    expect(code(() => buildAcpiTables(two, { base: 0xe_0000, extraTables: [t] }))).toBe("ACPI_INVALID_ARGUMENT");
    t.writeUInt32LE(40, 4);
    t[9] = 0;
    let sum = 0;
    for (const x of t) sum = (sum + x) & 0xff;
    t[9] = (0x100 - sum) & 0xff;
    const mem = GuestMemoryMap.allocate([{ base: 0, size: 0x10_0000 }]);
    buildAcpiTables(two, { base: 0xe_0000, extraTables: [t, t] }).writeTo(mem);
    expect(readAcpiTables(mem, 0xe_0000).tables.map((x) => x.signature)).toEqual(["FACP", "APIC", "TEST", "TEST", "DSDT"]);
  });
});

describe("PM timer", () => {
  it("reads 0 for a negative elapsed time (a host clock stepped back) rather than a wrapped count", () => {
    expect(pmTimerValue(-1n)).toBe(0);
    expect(pmTimerValue(-(10n ** 15n), 32)).toBe(0);
    expect(pmTimerValue(0n)).toBe(0);
  });
});
