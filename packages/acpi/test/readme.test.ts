import { readFileSync } from "node:fs";
import { GuestMemoryMap } from "@tsvmm/abi";
import {
  buildAcpiTables,
  buildMpTable,
  DEFAULT_PM_PORTS,
  findMpFloatingPointer,
  findRsdp,
  isPowerOffRequest,
  parseMadt,
  parseMpTable,
  readAcpiTables,
} from "@tsvmm/acpi";
import { expect, it } from "vitest";

// The README's example is the code between the markers below, character for character (the
// first test checks that), and the second test runs it.
function example() {
  // README-EXAMPLE-START
  const mem = GuestMemoryMap.allocate([{ base: 0, size: 0x10_0000 }]);
  const platform = {
    vcpus: [{ apicId: 0 }, { apicId: 1 }],
    ioapic: { id: 2 },
    devices: [
      { kind: "com" as const }, // COM1: PNP0501, IO 0x3F8/8, IRQ 4
      { kind: "virtio-mmio" as const, address: 0xd000_0000, gsi: 5 }, // LNRO0005
    ],
  };

  // ACPI: RSDP at 0xE0000 (found by the BIOS-area scan), the tables right after it.
  const acpi = buildAcpiTables(platform, { base: 0xe_0000 });
  acpi.writeTo(mem); // or hand acpi.rsdpAddress to PVH / boot_params

  // MP table for guests without ACPI, in the 0xF0000 BIOS area.
  buildMpTable(platform, { address: 0xf_0000 }).writeTo(mem);

  // What a guest finds:
  const rsdp = findRsdp(mem); // 0xE0000
  const madt = parseMadt(readAcpiTables(mem, rsdp!).find("APIC")!.bytes);
  const mp = parseMpTable(mem, findMpFloatingPointer(mem, 0xf_0000, 0x10_0000)!);

  // The power-off device the VMM puts at DEFAULT_PM_PORTS.pm1aControl (0x604):
  const poweroff = (written: number) => isPowerOffRequest(written); // true for 0x3401
  // README-EXAMPLE-END
  return { acpi, rsdp, madt, mp, poweroff };
}

it("the README's example is the code this test runs", () => {
  const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
  const block = /```ts\n([\s\S]*?)```/.exec(readme)?.[1];
  const src = readFileSync(new URL(import.meta.url), "utf8");
  const body = src.slice(src.indexOf("// README-EXAMPLE-START\n") + 24, src.indexOf("  // README-EXAMPLE-END"));
  const dedent = (s: string) => s.replace(/^ {2}/gm, "").trim();
  expect(block).toBeDefined();
  // The README block adds only its import lines.
  expect(block!.replace(/^import[^\n]*\n/gm, "").trim()).toBe(dedent(body));
});

it("the README's example gives what it says", () => {
  const { acpi, rsdp, madt, mp, poweroff } = example();
  expect(acpi.rsdpAddress).toBe(0xe_0000);
  expect(rsdp).toBe(0xe_0000);
  expect(madt.localApics.map((l) => l.apicId)).toEqual([0, 1]);
  expect(madt.overrides.map((o) => [o.source, o.gsi])).toEqual([
    [0, 2],
    [9, 9],
  ]);
  expect(mp.processors.map((p) => [p.apicId, p.bsp])).toEqual([
    [0, true],
    [1, false],
  ]);
  expect(DEFAULT_PM_PORTS.pm1aControl).toBe(0x604);
  expect(poweroff(0x3401)).toBe(true);
  expect(poweroff(0x1401)).toBe(false);
  expect(acpi.bytes.length).toBeLessThan(0x1000);
});
