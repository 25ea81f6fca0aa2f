import { GuestMemoryMap } from "@tsvmm/abi";
import {
  type AcpiPlatform,
  buildAcpiTables,
  buildRsdp,
  buildSdt,
  buildXsdt,
  byteSum,
  DEFAULT_TABLE_IDS,
  FADT,
  findRsdp,
  MADT_FIXED,
  MADT_INTERRUPT_SOURCE_OVERRIDE,
  MADT_IO_APIC,
  MADT_LOCAL_APIC,
  MADT_LOCAL_APIC_NMI,
  MADT_LOCAL_X2APIC,
  MADT_LOCAL_X2APIC_NMI,
  MAX_TABLE_LENGTH,
  parseMadt,
  parseRsdp,
  RSDP,
  readAcpiTables,
  readSdt,
  SDT_HEADER,
  sealSdt,
} from "@tsvmm/acpi";
import { describe, expect, it } from "vitest";
import { code } from "./helpers/errors.js";

// The reader walks untrusted guest memory: every refusal below is a table an OS could be handed
// (by a buggy or hostile loader), each reported with its code, and the odd but valid shapes
// (ACPI 1.0 FADT, no FADT at all) are read rather than refused.

const twoCpus: AcpiPlatform = { vcpus: [{ apicId: 0 }, { apicId: 1 }], ioapic: { id: 2 } };
const BASE = 0xe_0000;
function machine(): { mem: GuestMemoryMap; at: (sig: string) => { address: number; length: number } } {
  const mem = GuestMemoryMap.allocate([{ base: 0, size: 0x10_0000 }]);
  const t = buildAcpiTables(twoCpus, { base: BASE });
  t.writeTo(mem);
  return { mem, at: (sig) => t.tables.find((x) => x.signature === sig)! };
}
/** Rewrite a byte range of the RSDP and fix both of its checksums, so only the edit is wrong. */
function editRsdp(mem: GuestMemoryMap, at: number, edit: (b: Buffer) => void): void {
  const b = mem.slice(at, RSDP.size);
  edit(b);
  b[RSDP.offsetOf("checksum")] = 0;
  b[RSDP.offsetOf("checksum")] = (0x100 - byteSum(b, 0, 20)) & 0xff;
  b[RSDP.offsetOf("extendedChecksum")] = 0;
  b[RSDP.offsetOf("extendedChecksum")] = (0x100 - byteSum(b)) & 0xff;
}
const ids = DEFAULT_TABLE_IDS;

describe("parseRsdp", () => {
  it("a wrong 20-byte checksum, a length outside 36..4096, a wrong extended checksum: each with its code", () => {
    const { mem } = machine();
    expect(parseRsdp(mem, BASE).revision).toBe(2);
    mem.writeU8(BASE + 9, mem.readU8(BASE + 9) ^ 0x20); // an oemId byte, inside the 20-byte checksum
    expect(code(() => parseRsdp(mem, BASE))).toBe("ACPI_BAD_CHECKSUM");
    for (const length of [0, 20, 35, 4097, 0xffff_ffff]) {
      const m = machine().mem;
      editRsdp(m, BASE, (b) => b.writeUInt32LE(length, RSDP.offsetOf("length")));
      expect([length, code(() => parseRsdp(m, BASE))]).toEqual([length, "ACPI_MALFORMED"]);
    }
    const m = machine().mem;
    m.writeU8(BASE + RSDP.offsetOf("xsdtAddress"), m.readU8(BASE + RSDP.offsetOf("xsdtAddress")) + 1); // outside the 20 bytes
    expect(code(() => parseRsdp(m, BASE))).toBe("ACPI_BAD_CHECKSUM");
  });
  it("a longer RSDP is read when its extended checksum covers the whole length", () => {
    const { mem } = machine();
    const b = mem.slice(BASE, 40);
    b.writeUInt32LE(40, RSDP.offsetOf("length"));
    b[RSDP.offsetOf("checksum")] = 0;
    b[RSDP.offsetOf("checksum")] = (0x100 - byteSum(b, 0, 20)) & 0xff;
    b[RSDP.offsetOf("extendedChecksum")] = 0;
    b[RSDP.offsetOf("extendedChecksum")] = (0x100 - byteSum(b)) & 0xff;
    expect(parseRsdp(mem, BASE).xsdtAddress).toBe(BigInt(machine().at("XSDT").address));
    expect(parseRsdp(mem, BigInt(BASE)).address).toBe(BASE);
  });
});

describe("findRsdp", () => {
  it("skips a candidate cut off by the end of guest memory and finds the real RSDP after it", () => {
    // RAM ends 16 bytes into the BIOS area; "RSD PTR " sits in those 16 bytes, the tables are above.
    const mem = GuestMemoryMap.allocate([
      { base: 0, size: 0xe_0010 },
      { base: 0xf_0000, size: 0x1_0000 },
    ]);
    mem.write(0xe_0000, Buffer.from("RSD PTR ", "latin1"));
    buildAcpiTables(twoCpus, { base: 0xf_0000 }).writeTo(mem);
    expect(findRsdp(mem)).toBe(0xf_0000);
  });
  it("skips a revision-2 candidate whose 36 bytes run past memory", () => {
    const mem = GuestMemoryMap.allocate([
      { base: 0xe_0000, size: 0x20 },
      { base: 0xf_0000, size: 0x1_0000 },
    ]);
    const r = buildRsdp({ xsdtAddress: 0x1000n, oemId: "X" });
    mem.write(0xe_0000, r.subarray(0, 0x20)); // the 20-byte checksum holds, revision 2, cut at 32
    buildAcpiTables(twoCpus, { base: 0xf_0000 }).writeTo(mem);
    expect(code(() => parseRsdp(mem, 0xe_0000))).toBe("GUEST_MEMORY_OUT_OF_RANGE");
    expect(findRsdp(mem)).toBe(0xf_0000);
  });
  it("returns undefined when the area holds no RSDP, and scans from a 16-byte boundary", () => {
    const mem = GuestMemoryMap.allocate([{ base: 0, size: 0x10_0000 }]);
    expect(findRsdp(mem)).toBeUndefined();
    buildAcpiTables(twoCpus, { base: 0xe_0100 }).writeTo(mem);
    expect(findRsdp(mem, 0xe_00f1)).toBe(0xe_0100);
    expect(findRsdp(mem, 0xe_0101)).toBeUndefined();
    expect(findRsdp(mem, 0xe_0000, 0xe_0113)).toBeUndefined();
    expect(findRsdp(mem, 0xe_0000, 0xe_0114)).toBe(0xe_0100);
  });
});

describe("readSdt", () => {
  it("a header length below 36 or above MAX_TABLE_LENGTH is ACPI_MALFORMED; exactly 36 (no body) is a table", () => {
    const mem = GuestMemoryMap.allocate([{ base: 0, size: 0x1000 }]);
    for (const length of [0, 35, MAX_TABLE_LENGTH + 1]) {
      const h = buildSdt("OEM1", 1, Buffer.alloc(0), ids);
      h.writeUInt32LE(length, 4);
      mem.write(0x100, sealSdt(h));
      expect([length, code(() => readSdt(mem, 0x100))]).toEqual([length, "ACPI_MALFORMED"]);
    }
    mem.write(0x100, buildSdt("OEM1", 1, Buffer.alloc(0), ids));
    const t = readSdt(mem, 0x100n);
    expect([t.signature, t.address, t.bytes.length]).toEqual(["OEM1", 0x100, 36]);
  });
  it("a table whose length runs past guest memory is a GuestMemoryError, read nowhere else", () => {
    const mem = GuestMemoryMap.allocate([{ base: 0, size: 0x1000 }]);
    mem.write(0xf00, buildSdt("OEM1", 1, Buffer.alloc(0x200), ids).subarray(0, 0x100));
    expect(code(() => readSdt(mem, 0xf00))).toBe("GUEST_MEMORY_OUT_OF_RANGE");
  });
});

describe("readAcpiTables: the root and the FADT's DSDT", () => {
  /** Memory holding an RSDP at 0 pointing at an XSDT at 0x100 that lists `tables` (placed from 0x400). */
  function world(tables: Buffer[], xsdtOverride?: (xsdt: Buffer) => Buffer): GuestMemoryMap {
    const mem = GuestMemoryMap.allocate([{ base: 0, size: 0x4000 }]);
    let at = 0x400;
    const addrs: bigint[] = [];
    for (const t of tables) {
      mem.write(at, t);
      addrs.push(BigInt(at));
      at += Math.ceil(t.length / 16) * 16;
    }
    const xsdt = buildXsdt(addrs, ids);
    mem.write(0x100, xsdtOverride ? xsdtOverride(xsdt) : xsdt);
    mem.write(0, buildRsdp({ xsdtAddress: 0x100n, oemId: "TSVMM" }));
    return mem;
  }
  const fadtWith = (dsdt: number, xDsdt: bigint, length = FADT.size): Buffer => {
    const { mem, at } = machine();
    const f = at("FACP");
    const v = FADT.decode(mem.read(f.address, f.length));
    const b = FADT.encode({ ...v, dsdt, xDsdt, header: { ...v.header, length, checksum: 0 } }).subarray(0, length);
    return sealSdt(Buffer.from(b));
  };
  const dsdt = buildSdt("DSDT", 2, Buffer.from([0x10, 0x05, 0x5c, 0x5f, 0x53, 0x42, 0x5f]), ids);

  it("an XSDT listing no FADT gives its tables and no DSDT", () => {
    const oem = buildSdt("OEM1", 1, Buffer.alloc(4), ids);
    const set = readAcpiTables(world([oem]), 0);
    expect(set.tables.map((t) => t.signature)).toEqual(["OEM1"]);
    expect(set.find("DSDT")).toBeUndefined();
  });
  it("a FADT with neither DSDT pointer set adds no DSDT", () => {
    const set = readAcpiTables(world([fadtWith(0, 0n)]), 0);
    expect(set.tables.map((t) => t.signature)).toEqual(["FACP"]);
  });
  it("an ACPI 1.0 FADT (116 bytes, no X_DSDT) leads to the DSDT through its 32-bit pointer", () => {
    const mem = world([fadtWith(0x3000, 0n, 116)]);
    mem.write(0x3000, dsdt);
    const set = readAcpiTables(mem, 0);
    expect(set.tables.map((t) => [t.signature, t.address])).toEqual([
      ["FACP", 0x400],
      ["DSDT", 0x3000],
    ]);
    expect(set.find("FACP")!.bytes.length).toBe(116);
  });
  it("X_DSDT wins over a different 32-bit DSDT", () => {
    const mem = world([fadtWith(0x2000, 0x3000n)]);
    mem.write(0x3000, dsdt);
    expect(readAcpiTables(mem, 0).find("DSDT")!.address).toBe(0x3000);
  });
  it("a root pointer that leads to another table, or an XSDT body that is not whole 8-byte entries, is ACPI_MALFORMED", () => {
    const oem = buildSdt("OEM1", 1, Buffer.alloc(4), ids);
    const notX = world([oem], () => buildSdt("FACP", 1, Buffer.alloc(8), ids));
    expect(code(() => readAcpiTables(notX, 0))).toBe("ACPI_MALFORMED");
    const ragged = world([oem], (x) => buildSdt("XSDT", 1, Buffer.concat([x.subarray(36), Buffer.alloc(4)]), ids));
    expect(code(() => readAcpiTables(ragged, 0))).toBe("ACPI_MALFORMED");
    // The same through the RSDT of a revision-0 RSDP: 4-byte entries, signature "RSDT".
    const { mem, at } = machine();
    editRsdp(mem, BASE, (b) => {
      b[RSDP.offsetOf("revision")] = 0;
      b.writeUInt32LE(at("APIC").address, RSDP.offsetOf("rsdtAddress"));
    });
    expect(code(() => readAcpiTables(mem, BASE))).toBe("ACPI_MALFORMED");
  });
  it("an XSDT entry pointing outside guest memory is a GuestMemoryError", () => {
    const mem = world([], () => buildXsdt([0x1_0000_0000n], ids));
    expect(code(() => readAcpiTables(mem, 0))).toBe("GUEST_MEMORY_OUT_OF_RANGE");
  });
});

describe("parseMadt: entries that do not fit", () => {
  const madt = (entries: Buffer[]): Buffer => buildSdt("APIC", 5, Buffer.concat([MADT_FIXED.encode({ localApicAddress: 0xfee0_0000, flags: 1 }), ...entries]), ids);
  it("one byte left after the last entry is not an entry header", () => {
    expect(code(() => parseMadt(madt([Buffer.from([0])])))).toBe("ACPI_MALFORMED");
    expect(parseMadt(madt([])).localApics).toEqual([]);
  });
  it("each known type shorter than its structure is refused; one byte more is read", () => {
    for (const [type, layout] of [
      [0, MADT_LOCAL_APIC],
      [1, MADT_IO_APIC],
      [2, MADT_INTERRUPT_SOURCE_OVERRIDE],
      [4, MADT_LOCAL_APIC_NMI],
      [9, MADT_LOCAL_X2APIC],
      [0xa, MADT_LOCAL_X2APIC_NMI],
    ] as const) {
      const short = Buffer.alloc(layout.size - 1);
      short[0] = type;
      short[1] = short.length;
      expect([type, code(() => parseMadt(madt([short])))]).toEqual([type, "ACPI_MALFORMED"]);
      // A longer entry (a later spec revision may append fields) is read, and the next entry found.
      const long = Buffer.alloc(layout.size + 1);
      long[0] = type;
      long[1] = long.length;
      const next = Buffer.from([0x7f, 3, 0xaa]);
      const p = parseMadt(madt([long, next]));
      expect([type, p.localApics.length + p.ioApics.length + p.overrides.length + p.nmis.length, p.other]).toEqual([type, 1, [{ type: 0x7f, length: 3 }]]);
    }
  });
  it("the MADT's own length must cover its fixed part and not exceed the bytes given", () => {
    const t = madt([]);
    const shortLen = Buffer.from(t);
    shortLen.writeUInt32LE(SDT_HEADER.size + MADT_FIXED.size - 1, 4);
    expect(code(() => parseMadt(shortLen))).toBe("ACPI_MALFORMED");
    expect(code(() => parseMadt(t.subarray(0, t.length - 1)))).toBe("ACPI_MALFORMED");
    const notApic = Buffer.from(t);
    notApic.write("APIX", 0, "latin1");
    expect(code(() => parseMadt(notApic))).toBe("ACPI_MALFORMED");
  });
});
