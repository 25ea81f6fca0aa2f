import { bytes, defineStruct, pad, u8, u16, u32 } from "@tsvmm/abi";

// Intel MultiProcessor Specification 1.4, chapter 4. No C header for these exists on this
// machine: test/mptable.test.ts checks sizes and offsets against the spec's tables.

/** MP Floating Pointer Structure (figure 4-2, table 4-1): 16 bytes, 16-byte aligned. */
export interface MpFloatingPointer {
  signature: Buffer;
  physicalAddressPointer: number;
  length: number;
  specRev: number;
  checksum: number;
  featureByte1: number;
  featureByte2: number;
}
export const MP_FLOATING_POINTER = defineStruct<MpFloatingPointer>("MP floating pointer structure", [
  bytes(4, "signature"),
  u32("physicalAddressPointer"),
  u8("length"),
  u8("specRev"),
  u8("checksum"),
  u8("featureByte1"),
  u8("featureByte2"),
  pad(3),
]);

/** MP Configuration Table Header (figure 4-3, table 4-2): 44 bytes. */
export interface MpConfigHeader {
  signature: Buffer;
  baseTableLength: number;
  specRev: number;
  checksum: number;
  oemId: Buffer;
  productId: Buffer;
  oemTablePointer: number;
  oemTableSize: number;
  entryCount: number;
  localApicAddress: number;
  extendedTableLength: number;
  extendedTableChecksum: number;
}
export const MP_CONFIG_HEADER = defineStruct<MpConfigHeader>("MP configuration table header", [
  bytes(4, "signature"),
  u16("baseTableLength"),
  u8("specRev"),
  u8("checksum"),
  bytes(8, "oemId"),
  bytes(12, "productId"),
  u32("oemTablePointer"),
  u16("oemTableSize"),
  u16("entryCount"),
  u32("localApicAddress"),
  u16("extendedTableLength"),
  u8("extendedTableChecksum"),
  pad(1),
]);

/** Processor entry (figure 4-4, table 4-4): 20 bytes. */
export interface MpProcessorEntry {
  entryType: number;
  localApicId: number;
  localApicVersion: number;
  cpuFlags: number;
  cpuSignature: number;
  featureFlags: number;
}
export const MP_PROCESSOR_ENTRY = defineStruct<MpProcessorEntry>("MP processor entry", [
  u8("entryType"),
  u8("localApicId"),
  u8("localApicVersion"),
  u8("cpuFlags"),
  u32("cpuSignature"),
  u32("featureFlags"),
  pad(8),
]);

/** Bus entry (figure 4-5, table 4-7): 8 bytes. */
export interface MpBusEntry {
  entryType: number;
  busId: number;
  busTypeString: Buffer;
}
export const MP_BUS_ENTRY = defineStruct<MpBusEntry>("MP bus entry", [u8("entryType"), u8("busId"), bytes(6, "busTypeString")]);

/** I/O APIC entry (figure 4-6, table 4-9): 8 bytes. */
export interface MpIoApicEntry {
  entryType: number;
  ioApicId: number;
  ioApicVersion: number;
  ioApicFlags: number;
  ioApicAddress: number;
}
export const MP_IOAPIC_ENTRY = defineStruct<MpIoApicEntry>("MP I/O APIC entry", [
  u8("entryType"),
  u8("ioApicId"),
  u8("ioApicVersion"),
  u8("ioApicFlags"),
  u32("ioApicAddress"),
]);

/** I/O interrupt assignment entry (figure 4-7, table 4-10): 8 bytes. */
export interface MpIoInterruptEntry {
  entryType: number;
  interruptType: number;
  flags: number;
  sourceBusId: number;
  sourceBusIrq: number;
  destIoApicId: number;
  destIoApicIntin: number;
}
export const MP_IO_INTERRUPT_ENTRY = defineStruct<MpIoInterruptEntry>("MP I/O interrupt assignment entry", [
  u8("entryType"),
  u8("interruptType"),
  u16("flags"),
  u8("sourceBusId"),
  u8("sourceBusIrq"),
  u8("destIoApicId"),
  u8("destIoApicIntin"),
]);

/** Local interrupt assignment entry (figure 4-8, table 4-12): 8 bytes. */
export interface MpLocalInterruptEntry {
  entryType: number;
  interruptType: number;
  flags: number;
  sourceBusId: number;
  sourceBusIrq: number;
  destLocalApicId: number;
  destLocalApicLintin: number;
}
export const MP_LOCAL_INTERRUPT_ENTRY = defineStruct<MpLocalInterruptEntry>("MP local interrupt assignment entry", [
  u8("entryType"),
  u8("interruptType"),
  u16("flags"),
  u8("sourceBusId"),
  u8("sourceBusIrq"),
  u8("destLocalApicId"),
  u8("destLocalApicLintin"),
]);

export const MP_ENTRY_PROCESSOR = 0;
export const MP_ENTRY_BUS = 1;
export const MP_ENTRY_IOAPIC = 2;
export const MP_ENTRY_IO_INTERRUPT = 3;
export const MP_ENTRY_LOCAL_INTERRUPT = 4;

/** Interrupt types of the assignment entries (table 4-11). */
export const MP_INT = 0;
export const MP_NMI = 1;
export const MP_SMI = 2;
export const MP_EXTINT = 3;

export const MP_CPU_ENABLED = 1 << 0;
export const MP_CPU_BSP = 1 << 1;
export const MP_IOAPIC_ENABLED = 1 << 0;
