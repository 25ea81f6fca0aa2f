import { GuestMemoryMap } from "@tsvmm/abi";
import { buildMpTable, byteSum, findMpFloatingPointer, MP_CONFIG_HEADER, MP_FLOATING_POINTER, MP_PROCESSOR_ENTRY, parseMpTable } from "@tsvmm/acpi";
import { describe, expect, it } from "vitest";
import { code } from "./helpers/errors.js";

// The MP table reader on tables whose checksums are right but whose content is not (a loader
// bug, a hostile guest), the scan over holes and decoys, and the builder's vCPU checks.

const FP = 0xf_0000;
const CFG = FP + MP_FLOATING_POINTER.size;
const platform = { vcpus: [{ apicId: 0 }, { apicId: 1 }], ioapic: { id: 2 } };

function machine(): { mem: GuestMemoryMap; length: number } {
  const mem = GuestMemoryMap.allocate([{ base: 0, size: 0x10_0000 }]);
  const t = buildMpTable(platform, { address: FP });
  t.writeTo(mem);
  return { mem, length: t.bytes.length - MP_FLOATING_POINTER.size };
}
/** Edit the configuration table (`length` bytes from CFG after the edit) and fix its checksum. */
function editConfig(mem: GuestMemoryMap, edit: (b: Buffer) => void): void {
  const len0 = mem.readU16(CFG + MP_CONFIG_HEADER.offsetOf("baseTableLength"));
  const b = mem.slice(CFG, Math.max(len0, 0x100));
  edit(b);
  const len = b.readUInt16LE(MP_CONFIG_HEADER.offsetOf("baseTableLength"));
  const ck = MP_CONFIG_HEADER.offsetOf("checksum");
  b[ck] = 0;
  b[ck] = (0x100 - byteSum(b.subarray(0, len))) & 0xff;
}
function editPointer(mem: GuestMemoryMap, edit: (b: Buffer) => void): void {
  const b = mem.slice(FP, 16);
  edit(b);
  const ck = MP_FLOATING_POINTER.offsetOf("checksum");
  b[ck] = 0;
  b[ck] = (0x100 - byteSum(b)) & 0xff;
}

describe("parseMpTable refuses well-checksummed nonsense", () => {
  it("the untouched table parses (the baseline every case below departs from)", () => {
    expect(parseMpTable(machine().mem, FP).processors).toHaveLength(2);
  });
  it("a default configuration (feature byte 1 set, or no table pointer) is not parsed", () => {
    const a = machine().mem;
    editPointer(a, (b) => {
      b[MP_FLOATING_POINTER.offsetOf("featureByte1")] = 6;
    });
    expect(code(() => parseMpTable(a, FP))).toBe("ACPI_MALFORMED");
    const z = machine().mem;
    editPointer(z, (b) => b.writeUInt32LE(0, MP_FLOATING_POINTER.offsetOf("physicalAddressPointer")));
    expect(code(() => parseMpTable(z, FP))).toBe("ACPI_MALFORMED");
  });
  it("a base table length shorter than the header is ACPI_MALFORMED", () => {
    for (const len of [0, 43]) {
      const { mem } = machine();
      editConfig(mem, (b) => b.writeUInt16LE(len, MP_CONFIG_HEADER.offsetOf("baseTableLength")));
      expect([len, code(() => parseMpTable(mem, FP))]).toEqual([len, "ACPI_MALFORMED"]);
    }
  });
  it("an entry count larger than the entries the length holds runs past the table", () => {
    const { mem } = machine();
    editConfig(mem, (b) => b.writeUInt16LE(b.readUInt16LE(MP_CONFIG_HEADER.offsetOf("entryCount")) + 1, MP_CONFIG_HEADER.offsetOf("entryCount")));
    expect(() => parseMpTable(mem, FP)).toThrowError(/runs past the table/);
  });
  it("a processor entry cut by the table's end runs past it", () => {
    const { mem } = machine();
    // Keep only the header and 10 bytes of the first (20-byte) processor entry.
    editConfig(mem, (b) => {
      b.writeUInt16LE(MP_CONFIG_HEADER.size + 10, MP_CONFIG_HEADER.offsetOf("baseTableLength"));
      b.writeUInt16LE(1, MP_CONFIG_HEADER.offsetOf("entryCount"));
    });
    expect(() => parseMpTable(mem, FP)).toThrowError(/MP entry 0 at 44 runs past the table/);
  });
  it("an entry count smaller than the entries the length holds leaves bytes over", () => {
    const { mem } = machine();
    editConfig(mem, (b) => b.writeUInt16LE(b.readUInt16LE(MP_CONFIG_HEADER.offsetOf("entryCount")) - 1, MP_CONFIG_HEADER.offsetOf("entryCount")));
    expect(() => parseMpTable(mem, FP)).toThrowError(/MP entries end at \d+, base table length is \d+/);
  });
  it("an entry type the MP spec does not define (5 and up) is refused", () => {
    for (const type of [5, 128, 255]) {
      const { mem } = machine();
      editConfig(mem, (b) => {
        b[MP_CONFIG_HEADER.size + 2 * MP_PROCESSOR_ENTRY.size] = type; // the bus entry after the two processors
      });
      expect([type, code(() => parseMpTable(mem, FP))]).toEqual([type, "ACPI_MALFORMED"]);
    }
  });
  it("a configuration table without PCMP, or with a bad checksum, is refused", () => {
    const { mem } = machine();
    editConfig(mem, (b) => b.write("PCMQ", 0, "latin1"));
    expect(code(() => parseMpTable(mem, FP))).toBe("ACPI_MALFORMED");
    const m2 = machine().mem;
    m2.writeU8(CFG + 50, m2.readU8(CFG + 50) ^ 1);
    expect(code(() => parseMpTable(m2, FP))).toBe("ACPI_BAD_CHECKSUM");
  });
});

describe("findMpFloatingPointer", () => {
  it("steps over holes, a decoy signature with a bad checksum, and a good checksum without the signature", () => {
    const mem = GuestMemoryMap.allocate([
      { base: 0xe_0000, size: 0x100 },
      { base: 0xf_0000, size: 0x1_0000 },
    ]);
    mem.write(0xe_0010, Buffer.from("_MP_", "latin1")); // checksum wrong
    const decoy = Buffer.alloc(16);
    decoy.write("_MPQ", 0, "latin1");
    decoy[15] = (0x100 - byteSum(decoy)) & 0xff; // sums to 0, wrong signature
    mem.write(0xf_0020, decoy);
    buildMpTable(platform, { address: 0xf_1000 }).writeTo(mem);
    expect(findMpFloatingPointer(mem, 0xe_0000, 0x10_0000)).toBe(0xf_1000);
    expect(findMpFloatingPointer(mem, 0xe_0000, 0xf_1000)).toBeUndefined();
    expect(findMpFloatingPointer(mem, 0xf_0ff1, 0xf_1010)).toBe(0xf_1000);
    expect(findMpFloatingPointer(mem, 0xf_0ff1, 0xf_100f)).toBeUndefined();
  });
});

describe("buildMpTable vCPU checks", () => {
  it("needs a vCPU, and the first one (the BSP) enabled", () => {
    expect(code(() => buildMpTable({ vcpus: [], ioapic: { id: 1 } }, { address: FP }))).toBe("ACPI_INVALID_ARGUMENT");
    expect(code(() => buildMpTable({ vcpus: [{ apicId: 0, enabled: false }, { apicId: 1 }], ioapic: { id: 2 } }, { address: FP }))).toBe("ACPI_INVALID_ARGUMENT");
    const mem = GuestMemoryMap.allocate([{ base: 0, size: 0x10_0000 }]);
    buildMpTable({ vcpus: [{ apicId: 3, enabled: true }, { apicId: 1, enabled: false }], ioapic: { id: 2 } }, { address: FP }).writeTo(mem);
    expect(parseMpTable(mem, FP).processors.map((p) => [p.apicId, p.enabled, p.bsp])).toEqual([
      [3, true, true],
      [1, false, false],
    ]);
  });
});
