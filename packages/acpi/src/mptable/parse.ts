import type { GuestMemory } from "@tsvmm/abi";
import { byteSum } from "../checksum.js";
import { AcpiError } from "../errors.js";
import {
  MP_BUS_ENTRY,
  MP_CONFIG_HEADER,
  MP_CPU_BSP,
  MP_CPU_ENABLED,
  MP_ENTRY_BUS,
  MP_ENTRY_IO_INTERRUPT,
  MP_ENTRY_IOAPIC,
  MP_ENTRY_LOCAL_INTERRUPT,
  MP_ENTRY_PROCESSOR,
  MP_FLOATING_POINTER,
  MP_IO_INTERRUPT_ENTRY,
  MP_IOAPIC_ENABLED,
  MP_IOAPIC_ENTRY,
  MP_LOCAL_INTERRUPT_ENTRY,
  MP_PROCESSOR_ENTRY,
} from "./layouts.js";

export interface ParsedMpTable {
  readonly address: number;
  readonly configAddress: number;
  readonly specRev: number;
  readonly localApicAddress: number;
  readonly processors: readonly { apicId: number; version: number; enabled: boolean; bsp: boolean; signature: number; features: number }[];
  readonly buses: readonly { id: number; type: string }[];
  readonly ioApics: readonly { id: number; version: number; enabled: boolean; address: number }[];
  readonly ioInterrupts: readonly { type: number; flags: number; bus: number; irq: number; ioApicId: number; pin: number }[];
  readonly localInterrupts: readonly { type: number; flags: number; bus: number; irq: number; localApicId: number; lint: number }[];
}

/** The first "_MP_" floating pointer with a valid checksum on a 16-byte boundary in [start, end). */
export function findMpFloatingPointer(mem: GuestMemory, start: number, end: number): number | undefined {
  for (let a = Math.ceil(start / 16) * 16; a + 16 <= end; a += 16) {
    if (!mem.contains(a, 16)) continue;
    const b = mem.read(a, 16);
    if (b.toString("latin1", 0, 4) === "_MP_" && byteSum(b) === 0) return a;
  }
  return undefined;
}

/** Parse the MP table whose floating pointer is at `address`, checking both checksums and every entry's bounds. */
export function parseMpTable(mem: GuestMemory, address: number): ParsedMpTable {
  const fpBytes = mem.read(address, MP_FLOATING_POINTER.size);
  const fp = MP_FLOATING_POINTER.decode(fpBytes);
  if (fp.signature.toString("latin1") !== "_MP_") throw new AcpiError("ACPI_NOT_FOUND", `no "_MP_" at 0x${address.toString(16)}`);
  if (byteSum(fpBytes) !== 0) throw new AcpiError("ACPI_BAD_CHECKSUM", "MP floating pointer checksum does not sum to 0");
  if (fp.featureByte1 !== 0 || fp.physicalAddressPointer === 0) throw new AcpiError("ACPI_MALFORMED", "MP default configurations are not parsed");
  const cfgAt = fp.physicalAddressPointer;
  const header = MP_CONFIG_HEADER.decode(mem.read(cfgAt, MP_CONFIG_HEADER.size));
  if (header.signature.toString("latin1") !== "PCMP") throw new AcpiError("ACPI_MALFORMED", "MP configuration table signature is not PCMP");
  if (header.baseTableLength < MP_CONFIG_HEADER.size) throw new AcpiError("ACPI_MALFORMED", `MP base table length ${header.baseTableLength}`);
  const t = mem.read(cfgAt, header.baseTableLength);
  if (byteSum(t) !== 0) throw new AcpiError("ACPI_BAD_CHECKSUM", "MP configuration table checksum does not sum to 0");
  const out = {
    address,
    configAddress: cfgAt,
    specRev: fp.specRev,
    localApicAddress: header.localApicAddress,
    processors: [] as ParsedMpTable["processors"][number][],
    buses: [] as ParsedMpTable["buses"][number][],
    ioApics: [] as ParsedMpTable["ioApics"][number][],
    ioInterrupts: [] as ParsedMpTable["ioInterrupts"][number][],
    localInterrupts: [] as ParsedMpTable["localInterrupts"][number][],
  };
  let off = MP_CONFIG_HEADER.size;
  for (let i = 0; i < header.entryCount; i++) {
    const type = t[off];
    const size = type === MP_ENTRY_PROCESSOR ? MP_PROCESSOR_ENTRY.size : 8;
    if (type === undefined || off + size > t.length) throw new AcpiError("ACPI_MALFORMED", `MP entry ${i} at ${off} runs past the table`);
    switch (type) {
      case MP_ENTRY_PROCESSOR: {
        const e = MP_PROCESSOR_ENTRY.decode(t, off);
        out.processors.push({
          apicId: e.localApicId,
          version: e.localApicVersion,
          enabled: (e.cpuFlags & MP_CPU_ENABLED) !== 0,
          bsp: (e.cpuFlags & MP_CPU_BSP) !== 0,
          signature: e.cpuSignature,
          features: e.featureFlags,
        });
        break;
      }
      case MP_ENTRY_BUS: {
        const e = MP_BUS_ENTRY.decode(t, off);
        out.buses.push({ id: e.busId, type: e.busTypeString.toString("latin1").trimEnd() });
        break;
      }
      case MP_ENTRY_IOAPIC: {
        const e = MP_IOAPIC_ENTRY.decode(t, off);
        out.ioApics.push({ id: e.ioApicId, version: e.ioApicVersion, enabled: (e.ioApicFlags & MP_IOAPIC_ENABLED) !== 0, address: e.ioApicAddress });
        break;
      }
      case MP_ENTRY_IO_INTERRUPT: {
        const e = MP_IO_INTERRUPT_ENTRY.decode(t, off);
        out.ioInterrupts.push({ type: e.interruptType, flags: e.flags, bus: e.sourceBusId, irq: e.sourceBusIrq, ioApicId: e.destIoApicId, pin: e.destIoApicIntin });
        break;
      }
      case MP_ENTRY_LOCAL_INTERRUPT: {
        const e = MP_LOCAL_INTERRUPT_ENTRY.decode(t, off);
        out.localInterrupts.push({ type: e.interruptType, flags: e.flags, bus: e.sourceBusId, irq: e.sourceBusIrq, localApicId: e.destLocalApicId, lint: e.destLocalApicLintin });
        break;
      }
      default:
        throw new AcpiError("ACPI_MALFORMED", `MP entry ${i} has unknown type ${type}`);
    }
    off += size;
  }
  if (off !== t.length) throw new AcpiError("ACPI_MALFORMED", `MP entries end at ${off}, base table length is ${t.length}`);
  return out;
}
