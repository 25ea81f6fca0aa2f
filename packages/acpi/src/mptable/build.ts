import type { GuestMemory } from "@tsvmm/abi";
import { fixChecksum } from "../checksum.js";
import { AcpiError } from "../errors.js";
import type { PlatformIoApic, PlatformVcpu } from "../platform.js";
import { DEFAULT_IOAPIC_ADDRESS, DEFAULT_LOCAL_APIC_ADDRESS } from "../platform.js";
import { asciiField } from "../sdt.js";
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
  MP_EXTINT,
  MP_FLOATING_POINTER,
  MP_INT,
  MP_IO_INTERRUPT_ENTRY,
  MP_IOAPIC_ENABLED,
  MP_IOAPIC_ENTRY,
  MP_LOCAL_INTERRUPT_ENTRY,
  MP_NMI,
  MP_PROCESSOR_ENTRY,
} from "./layouts.js";

/** The 0xF0000-0xFFFFF BIOS ROM area, one of the places an OS scans for "_MP_". */
export const MP_BIOS_AREA_START = 0xf_0000;
export const MP_BIOS_AREA_END = 0x10_0000;
/** MP spec revision 1.4. */
export const MP_SPEC_REV = 4;
/** KVM's local APIC reports version 0x14, its IOAPIC 0x11 (the 82093AA's). */
export const DEFAULT_LOCAL_APIC_VERSION = 0x14;
export const DEFAULT_IOAPIC_VERSION = 0x11;
export const MP_ISA_BUS_ID = 0;

/** What the MP table describes: a subset of {@link AcpiPlatform}, plus MP-only fields. */
export interface MpPlatform {
  /** vcpus[0] is the bootstrap processor. APIC ids must be below 255 (8-bit field, 0xFF = all). */
  readonly vcpus: readonly PlatformVcpu[];
  readonly ioapic: PlatformIoApic;
  readonly localApicAddress?: number;
  /** CPUID.1 EAX stepping/model/family. Default family 6 (0x600). */
  readonly cpuSignature?: number;
  /** CPUID.1 EDX. Default FPU | APIC. */
  readonly cpuFeatureFlags?: number;
  readonly localApicVersion?: number;
  readonly ioapicVersion?: number;
  /** 8 characters. Default "TSVMM". */
  readonly oemId?: string;
  /** 12 characters. Default "TSVMM". */
  readonly productId?: string;
}

export interface MpTable {
  /** The floating pointer's address (the one the OS finds by scanning). */
  readonly address: number;
  /** The configuration table's address (right after the floating pointer). */
  readonly configAddress: number;
  /** Floating pointer then configuration table, contiguous. */
  readonly bytes: Buffer;
  writeTo(mem: GuestMemory): void;
}

function int(v: number, min: number, max: number, what: string): number {
  if (!Number.isInteger(v) || v < min || v > max) throw new AcpiError("ACPI_INVALID_ARGUMENT", `${what} must be an integer in ${min}..${max}, got ${v}`);
  return v;
}

/**
 * An MP spec 1.4 table at `address` (16-byte aligned): the floating pointer, then the
 * configuration table with one processor entry per vCPU (vcpus[0] flagged BSP), the ISA bus, the
 * IOAPIC, I/O interrupt entries for ISA IRQs 0-15 (IRQ0 to pin 2, IRQ2 left out since pin 2 is
 * taken: the usual override), ExtINT on the BSP's LINT0 and NMI on every LINT1.
 */
export function buildMpTable(p: MpPlatform, o: { address: number }): MpTable {
  const address = o.address;
  if (!Number.isSafeInteger(address) || address < 0 || address % 16 !== 0 || address + 16 > 0xffff_ffff) {
    throw new AcpiError("ACPI_ADDRESS_RANGE", `MP floating pointer address ${address} must be 16-byte aligned and below 4 GiB`);
  }
  if (p.vcpus.length === 0) throw new AcpiError("ACPI_INVALID_ARGUMENT", "an MP table needs at least one vCPU");
  const ids = new Set<number>();
  for (const [i, v] of p.vcpus.entries()) {
    int(v.apicId, 0, 0xfe, `vcpus[${i}].apicId (MP tables hold 8-bit ids)`);
    if (ids.has(v.apicId)) throw new AcpiError("ACPI_INVALID_ARGUMENT", `APIC id ${v.apicId} is used twice`);
    ids.add(v.apicId);
  }
  if (p.vcpus[0]!.enabled === false) throw new AcpiError("ACPI_INVALID_ARGUMENT", "vcpus[0] is the BSP and must be enabled");
  const ioapicId = int(p.ioapic.id, 0, 0xfe, "ioapic.id");
  const ioapicAddress = int(p.ioapic.address ?? DEFAULT_IOAPIC_ADDRESS, 0, 0xffff_ffff, "ioapic.address");
  if ((p.ioapic.gsiBase ?? 0) !== 0) throw new AcpiError("ACPI_INVALID_ARGUMENT", "an MP table routes ISA IRQs to an IOAPIC whose pins start at GSI 0");
  const bsp = p.vcpus[0]!.apicId;

  const entries: Buffer[] = [];
  p.vcpus.forEach((v, i) => {
    entries.push(
      MP_PROCESSOR_ENTRY.encode({
        entryType: MP_ENTRY_PROCESSOR,
        localApicId: v.apicId,
        localApicVersion: int(p.localApicVersion ?? DEFAULT_LOCAL_APIC_VERSION, 0, 0xff, "localApicVersion"),
        cpuFlags: (v.enabled === false ? 0 : MP_CPU_ENABLED) | (i === 0 ? MP_CPU_BSP : 0),
        cpuSignature: int(p.cpuSignature ?? 0x600, 0, 0xffff_ffff, "cpuSignature"),
        featureFlags: int(p.cpuFeatureFlags ?? ((1 << 0) | (1 << 9)), 0, 0xffff_ffff, "cpuFeatureFlags"),
      }),
    );
  });
  entries.push(MP_BUS_ENTRY.encode({ entryType: MP_ENTRY_BUS, busId: MP_ISA_BUS_ID, busTypeString: asciiField("ISA", 6, "bus type") }));
  entries.push(
    MP_IOAPIC_ENTRY.encode({
      entryType: MP_ENTRY_IOAPIC,
      ioApicId: ioapicId,
      ioApicVersion: int(p.ioapicVersion ?? DEFAULT_IOAPIC_VERSION, 0, 0xff, "ioapicVersion"),
      ioApicFlags: MP_IOAPIC_ENABLED,
      ioApicAddress: ioapicAddress,
    }),
  );
  for (let irq = 0; irq < 16; irq++) {
    if (irq === 2) continue;
    entries.push(
      MP_IO_INTERRUPT_ENTRY.encode({
        entryType: MP_ENTRY_IO_INTERRUPT,
        interruptType: MP_INT,
        flags: 0, // conforms to the ISA bus: edge, active high
        sourceBusId: MP_ISA_BUS_ID,
        sourceBusIrq: irq,
        destIoApicId: ioapicId,
        destIoApicIntin: irq === 0 ? 2 : irq,
      }),
    );
  }
  const local = (interruptType: number, dest: number, lint: number): Buffer =>
    MP_LOCAL_INTERRUPT_ENTRY.encode({
      entryType: MP_ENTRY_LOCAL_INTERRUPT,
      interruptType,
      flags: 0,
      sourceBusId: MP_ISA_BUS_ID,
      sourceBusIrq: 0,
      destLocalApicId: dest,
      destLocalApicLintin: lint,
    });
  entries.push(local(MP_EXTINT, bsp, 0), local(MP_NMI, 0xff, 1));

  const body = Buffer.concat(entries);
  const configLength = MP_CONFIG_HEADER.size + body.length;
  const out = Buffer.alloc(MP_FLOATING_POINTER.size + configLength);
  const configAddress = address + MP_FLOATING_POINTER.size;
  MP_FLOATING_POINTER.encode(
    {
      signature: Buffer.from("_MP_", "latin1"),
      physicalAddressPointer: configAddress,
      length: MP_FLOATING_POINTER.size / 16,
      specRev: MP_SPEC_REV,
      checksum: 0,
      featureByte1: 0, // 0: a configuration table is present (no default configuration)
      featureByte2: 0, // IMCRP clear: virtual wire mode, no IMCR to program
    },
    out,
  );
  fixChecksum(out, MP_FLOATING_POINTER.offsetOf("checksum"), 0, MP_FLOATING_POINTER.size);
  const cfg = out.subarray(MP_FLOATING_POINTER.size);
  MP_CONFIG_HEADER.encode(
    {
      signature: Buffer.from("PCMP", "latin1"),
      baseTableLength: configLength,
      specRev: MP_SPEC_REV,
      checksum: 0,
      oemId: asciiField(p.oemId ?? "TSVMM", 8, "oemId"),
      productId: asciiField(p.productId ?? "TSVMM", 12, "productId"),
      oemTablePointer: 0,
      oemTableSize: 0,
      entryCount: entries.length,
      localApicAddress: int(p.localApicAddress ?? DEFAULT_LOCAL_APIC_ADDRESS, 0, 0xffff_ffff, "localApicAddress"),
      extendedTableLength: 0,
      extendedTableChecksum: 0,
    },
    cfg,
  );
  body.copy(cfg, MP_CONFIG_HEADER.size);
  fixChecksum(cfg, MP_CONFIG_HEADER.offsetOf("checksum"));
  return {
    address,
    configAddress,
    bytes: out,
    writeTo(mem: GuestMemory): void {
      mem.write(address, out);
    },
  };
}
