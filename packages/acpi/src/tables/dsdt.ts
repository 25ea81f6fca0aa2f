import { type AmlBytes, amlDevice, amlEisaId, amlName, amlPackage, amlScope } from "../aml/encoder.js";
import { amlResourceTemplate, resExtendedInterrupt, resIo, resIrqNoFlags, resMemory32Fixed } from "../aml/resources.js";
import type { ResolvedDevice, ResolvedPlatform } from "../platform.js";
import { buildSdt } from "../sdt.js";

/** Revision 2: AML integers are 64-bit. */
export const DSDT_REVISION = 2;

/** The `_HID` Linux's virtio-mmio driver matches in ACPI (drivers/virtio/virtio_mmio.c). */
export const VIRTIO_MMIO_HID = "LNRO0005";
export const COM_HID = "PNP0501";
export const COM_IO_LENGTH = 8;

function deviceAml(d: ResolvedDevice): Buffer {
  if (d.kind === "com") {
    return amlDevice(d.name, [
      amlName("_HID", amlEisaId(COM_HID)),
      amlName("_UID", d.uid),
      amlName("_CRS", amlResourceTemplate([resIo({ min: d.port, length: COM_IO_LENGTH }), resIrqNoFlags([d.irq])])),
    ]);
  }
  return amlDevice(d.name, [
    amlName("_HID", VIRTIO_MMIO_HID),
    amlName("_UID", d.uid),
    amlName(
      "_CRS",
      amlResourceTemplate([
        resMemory32Fixed({ base: d.address, length: d.size }),
        resExtendedInterrupt({ gsis: [d.gsi], trigger: d.trigger, polarity: d.polarity }),
      ]),
    ),
  ]);
}

/** The DSDT's AML: `\_S5` and one device per platform device under `\_SB`. */
export function dsdtAml(p: ResolvedPlatform): Buffer {
  const terms: AmlBytes[] = [
    // SLP_TYPa, SLP_TYPb, reserved, reserved (ACPI 6.4 section 7.4.2).
    amlName("_S5", amlPackage([p.pm.s5SleepType, p.pm.s5SleepType, 0, 0])),
    amlScope("\\_SB", p.devices.map(deviceAml)),
    ...p.extraDsdtTerms,
  ];
  return Buffer.concat(terms);
}

export function buildDsdt(p: ResolvedPlatform): Buffer {
  return buildSdt("DSDT", DSDT_REVISION, dsdtAml(p), p.ids);
}
