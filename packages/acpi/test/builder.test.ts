import { GuestMemoryMap } from "@tsvmm/abi";
import {
  AcpiError,
  type AcpiPlatform,
  buildAcpiTables,
  byteSum,
  FACS_ALIGNMENT,
  findRsdp,
  parseFadt,
  parseMadt,
  readAcpiTables,
  SDT_HEADER,
} from "@tsvmm/acpi";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { code } from "./helpers/errors.js";

const RUNS = 200 * Number(process.env.TSVMM_FUZZ_SCALE ?? "1");

const lowMemory = (): GuestMemoryMap => GuestMemoryMap.allocate([{ base: 0, size: 0x10_0000 }]);
const twoCpus: AcpiPlatform = { vcpus: [{ apicId: 0 }, { apicId: 1 }], ioapic: { id: 2 } };

describe("buildAcpiTables layout", () => {
  it("puts the RSDP at the base, then every table 16-aligned (the FACS 64), without overlap, inside the blob", () => {
    const t = buildAcpiTables(twoCpus, { base: 0xe_0000 });
    expect(t.rsdpAddress).toBe(0xe_0000);
    expect(t.tables.map((x) => x.signature)).toEqual(["RSD PTR ", "XSDT", "RSDT", "FACP", "FACS", "DSDT", "APIC"]);
    let end = t.base;
    for (const x of t.tables) {
      expect([x.signature, x.address % (x.signature === "FACS" ? FACS_ALIGNMENT : 16)]).toEqual([x.signature, 0]);
      expect(x.address).toBeGreaterThanOrEqual(end);
      end = x.address + x.length;
    }
    expect(end).toBe(t.base + t.bytes.length);
    expect(t.segments).toEqual([{ address: t.base, bytes: t.bytes }]);
  });

  it("a Linux BIOS-area scan finds the RSDP at 0xE0000, and the walk reaches FADT, FACS, DSDT and MADT", () => {
    const mem = lowMemory();
    const t = buildAcpiTables(twoCpus, { base: 0xe_0000 });
    t.writeTo(mem);
    expect(findRsdp(mem)).toBe(0xe_0000);
    const set = readAcpiTables(mem, 0xe_0000);
    expect(set.root.signature).toBe("XSDT");
    expect(set.tables.map((x) => x.signature)).toEqual(["FACP", "APIC", "DSDT"]);
    const fadt = parseFadt(set.find("FACP")!.bytes);
    expect(mem.read(fadt.firmwareCtrl, 4).toString("latin1")).toBe("FACS");
    expect(fadt.xDsdt).toBe(BigInt(set.find("DSDT")!.address));
    expect(fadt.dsdt).toBe(set.find("DSDT")!.address);
    const madt = parseMadt(set.find("APIC")!.bytes);
    expect(madt.localApics.map((l) => l.apicId)).toEqual([0, 1]);
    expect(madt.ioApics).toEqual([{ id: 2, address: 0xfec0_0000, gsiBase: 0 }]);
  });

  it("without an XSDT reader, the RSDT leads to the same tables", () => {
    const mem = lowMemory();
    const t = buildAcpiTables(twoCpus, { base: 0xe_0000 });
    t.writeTo(mem);
    // Turn the RSDP into revision 0 (ACPI 1.0), fixing its checksum, as an old reader would see it.
    const r = mem.slice(t.rsdpAddress, 20);
    r[15] = 0;
    r[8] = 0;
    r[8] = (0x100 - byteSum(r)) & 0xff;
    const set = readAcpiTables(mem, t.rsdpAddress);
    expect(set.root.signature).toBe("RSDT");
    expect(set.tables.map((x) => x.signature)).toEqual(["FACP", "APIC", "DSDT"]);
  });

  it("places the RSDP apart (e.g. for PVH rsdp_paddr) and writes both segments", () => {
    const mem = GuestMemoryMap.allocate([{ base: 0, size: 0x20_0000 }]);
    const t = buildAcpiTables(twoCpus, { base: 0x10_0000, rsdpAddress: 0xf_0000 });
    expect(t.rsdpAddress).toBe(0xf_0000);
    expect(t.segments.map((s) => s.address)).toEqual([0x10_0000, 0xf_0000]);
    t.writeTo(mem);
    expect(findRsdp(mem)).toBe(0xf_0000);
    expect(readAcpiTables(mem, 0xf_0000).tables).toHaveLength(3);
  });

  it("above 4 GiB with rsdt: false, the XSDT carries 64-bit addresses", () => {
    const base = 0x1_0000_0000;
    const mem = new GuestMemoryMap([{ base, size: 0x1000, buffer: Buffer.alloc(0x1000) }]);
    const t = buildAcpiTables(twoCpus, { base, rsdt: false });
    t.writeTo(mem);
    const set = readAcpiTables(mem, base);
    expect(set.rsdp.rsdtAddress).toBe(0);
    expect(set.tables.every((x) => x.address > 0xffff_ffff)).toBe(true);
    const fadt = parseFadt(set.find("FACP")!.bytes);
    expect(fadt.dsdt).toBe(0); // the 32-bit fields cannot hold them
    expect(fadt.firmwareCtrl).toBe(0);
    expect(mem.read(fadt.xFirmwareCtrl, 4).toString("latin1")).toBe("FACS");
    expect(code(() => buildAcpiTables(twoCpus, { base }))).toBe("ACPI_ADDRESS_RANGE");
  });

  it("extra tables are listed in the XSDT and placed after the MADT", () => {
    const mem = lowMemory();
    const extra = Buffer.alloc(40);
    SDT_HEADER.encode({ signature: Buffer.from("TEST"), length: 40, revision: 1, checksum: 0, oemId: Buffer.from("X"), oemTableId: Buffer.from("Y"), oemRevision: 0, creatorId: Buffer.from("Z"), creatorRevision: 0 }, extra);
    extra[9] = (0x100 - byteSum(extra)) & 0xff;
    const t = buildAcpiTables(twoCpus, { base: 0xe_0000, extraTables: [extra] });
    t.writeTo(mem);
    expect(readAcpiTables(mem, 0xe_0000).tables.map((x) => x.signature)).toEqual(["FACP", "APIC", "TEST", "DSDT"]);
  });

  it("refuses bad placements and writes nothing when memory does not back every segment", () => {
    expect(code(() => buildAcpiTables(twoCpus, { base: 0xe_0008 }))).toBe("ACPI_ADDRESS_RANGE");
    expect(code(() => buildAcpiTables(twoCpus, { base: 0xe_0000, rsdpAddress: 0xe_0010 }))).toBe("ACPI_ADDRESS_RANGE");
    expect(code(() => buildAcpiTables(twoCpus, { base: 0xe_0000, rsdpAddress: 0xf_0001 }))).toBe("ACPI_ADDRESS_RANGE");
    const mem = GuestMemoryMap.allocate([{ base: 0, size: 0xf_8000 }]);
    const t = buildAcpiTables(twoCpus, { base: 0xe_0000, rsdpAddress: 0xf_f000 });
    expect(code(() => t.writeTo(mem))).toBe("GUEST_MEMORY_OUT_OF_RANGE");
    expect(mem.read(0xe_0000, t.bytes.length).every((b) => b === 0)).toBe(true);
  });
});

describe("platform validation", () => {
  const bad: Array<[string, AcpiPlatform]> = [
    ["no vCPU", { vcpus: [], ioapic: { id: 0 } }],
    ["duplicate APIC id", { vcpus: [{ apicId: 1 }, { apicId: 1 }], ioapic: { id: 0 } }],
    ["disabled boot CPU", { vcpus: [{ apicId: 0, enabled: false }], ioapic: { id: 0 } }],
    ["IOAPIC id > 255", { vcpus: [{ apicId: 0 }], ioapic: { id: 256 } }],
    ["COM IRQ 16", { vcpus: [{ apicId: 0 }], ioapic: { id: 1 }, devices: [{ kind: "com", irq: 16 }] }],
    ["virtio window past 4 GiB", { vcpus: [{ apicId: 0 }], ioapic: { id: 1 }, devices: [{ kind: "virtio-mmio", address: 0xffff_ff00, gsi: 5 }] }],
    ["duplicate device name", { vcpus: [{ apicId: 0 }], ioapic: { id: 1 }, devices: [{ kind: "com", name: "UART" }, { kind: "com", name: "UART" }] }],
    ["bad device name", { vcpus: [{ apicId: 0 }], ioapic: { id: 1 }, devices: [{ kind: "com", name: "uart" }] }],
    ["overlapping PM blocks", { vcpus: [{ apicId: 0 }], ioapic: { id: 1 }, pm: { pmTimer: 0x602 } }],
    ["S5 type 8", { vcpus: [{ apicId: 0 }], ioapic: { id: 1 }, pm: { s5SleepType: 8 } }],
    ["OEM id of 7 characters", { vcpus: [{ apicId: 0 }], ioapic: { id: 1 }, ids: { oemId: "TOOLONG" } }],
  ];
  for (const [what, p] of bad) {
    it(`refuses: ${what}`, () => expect(code(() => buildAcpiTables(p, { base: 0xe_0000 }))).toBe("ACPI_INVALID_ARGUMENT"));
  }
});

describe("property: what the builder is given is what a reader of guest memory finds", () => {
  const platformArb = fc
    .record({
      apicIds: fc.uniqueArray(fc.oneof(fc.integer({ min: 0, max: 254 }), fc.integer({ min: 255, max: 0xffff_fffe })), { minLength: 1, maxLength: 40 }),
      disabled: fc.array(fc.boolean(), { maxLength: 40 }),
      ioapicId: fc.integer({ min: 0, max: 255 }),
      gsiBase: fc.integer({ min: 0, max: 64 }),
      virtio: fc.array(fc.record({ gsi: fc.integer({ min: 5, max: 23 }), edge: fc.boolean() }), { maxLength: 8 }),
      com: fc.boolean(),
      base: fc.integer({ min: 0, max: 0xf00 }).map((n) => n * 16),
    })
    .map((r) => ({
      base: r.base,
      platform: {
        vcpus: r.apicIds.map((apicId, i) => ({ apicId, enabled: i === 0 || !(r.disabled[i] ?? false) })),
        ioapic: { id: r.ioapicId, gsiBase: r.gsiBase },
        devices: [
          ...(r.com ? [{ kind: "com" as const }] : []),
          ...r.virtio.map((v, i) => ({ kind: "virtio-mmio" as const, address: 0xd000_0000 + i * 0x1000, gsi: v.gsi, trigger: v.edge ? ("edge" as const) : ("level" as const) })),
        ],
      } satisfies AcpiPlatform,
    }));

  it("CPUs (xAPIC or x2APIC entries), IOAPIC and overrides read back; every checksum is 0", () => {
    fc.assert(
      fc.property(platformArb, ({ base, platform }) => {
        const mem = GuestMemoryMap.allocate([{ base: 0, size: 0x2_0000 }]);
        const t = buildAcpiTables(platform, { base });
        t.writeTo(mem);
        const set = readAcpiTables(mem, base); // checks every checksum on the way
        const madt = parseMadt(set.find("APIC")!.bytes);
        expect(madt.localApics.map((l) => [l.processorUid, l.apicId, l.enabled])).toEqual(platform.vcpus.map((v, i) => [i, v.apicId, v.enabled]));
        for (const l of madt.localApics) expect(l.kind).toBe(l.apicId >= 255 || l.processorUid >= 255 ? "local-x2apic" : "local-apic");
        expect(madt.ioApics).toEqual([{ id: platform.ioapic.id, address: 0xfec0_0000, gsiBase: platform.ioapic.gsiBase }]);
        expect(madt.overrides.map((o) => [o.source, o.gsi])).toEqual([
          [0, platform.ioapic.gsiBase + 2],
          [9, platform.ioapic.gsiBase + 9],
        ]);
        expect(madt.other).toEqual([]);
        // The DSDT holds one LNRO0005 string per virtio device.
        const dsdt = set.find("DSDT")!.bytes.toString("latin1");
        expect(dsdt.split("LNRO0005").length - 1).toBe(platform.devices.filter((d) => d.kind === "virtio-mmio").length);
      }),
      { numRuns: RUNS },
    );
  });
});

describe("parser robustness", () => {
  it("property: a corrupted MADT is parsed or refused with AcpiError, never anything else", () => {
    const madt = buildAcpiTables({ vcpus: [{ apicId: 0 }, { apicId: 300 }], ioapic: { id: 1 } }, { base: 0 }).tables.find((x) => x.signature === "APIC")!;
    const good = buildAcpiTables({ vcpus: [{ apicId: 0 }, { apicId: 300 }], ioapic: { id: 1 } }, { base: 0 }).bytes.subarray(madt.address, madt.address + madt.length);
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(good.length + 8), fc.nat(255)), { minLength: 1, maxLength: 6 }), fc.nat(good.length + 8), (edits, cut) => {
        const b = Buffer.alloc(Math.max(cut, 1));
        good.copy(b, 0, 0, Math.min(cut, good.length));
        for (const [i, v] of edits) if (i < b.length) b[i] = v;
        try {
          parseMadt(b);
        } catch (e) {
          expect(e).toBeInstanceOf(AcpiError);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it("a bad checksum or signature is reported with its code", () => {
    const mem = lowMemory();
    const t = buildAcpiTables(twoCpus, { base: 0xe_0000 });
    t.writeTo(mem);
    const madt = t.tables.find((x) => x.signature === "APIC")!;
    mem.writeU8(madt.address + 40, mem.readU8(madt.address + 40) ^ 1);
    expect(code(() => readAcpiTables(mem, 0xe_0000))).toBe("ACPI_BAD_CHECKSUM");
    mem.writeU8(0xe_0000, 0x41);
    expect(code(() => readAcpiTables(mem, 0xe_0000))).toBe("ACPI_NOT_FOUND");
    expect(findRsdp(mem)).toBeUndefined();
  });
});
