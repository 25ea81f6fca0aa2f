import { bytes, defineStruct, nested, pad, type StructLayout, u8, u16, u32, u64 } from "@tsvmm/abi";

// Every fixed ACPI structure this package reads or writes, declared once (ACPI 6.4 section
// numbers in the comments). No C header for them exists on this machine: test/layouts.test.ts
// checks sizes and offsets against the spec's tables, written out independently there.

/** 5.2.5.3 Root System Description Pointer, revision 2 (36 bytes). */
export interface Rsdp {
  signature: Buffer;
  checksum: number;
  oemId: Buffer;
  revision: number;
  rsdtAddress: number;
  length: number;
  xsdtAddress: bigint;
  extendedChecksum: number;
}
export const RSDP = defineStruct<Rsdp>("ACPI RSDP", [
  bytes(8, "signature"),
  u8("checksum"),
  bytes(6, "oemId"),
  u8("revision"),
  u32("rsdtAddress"),
  u32("length"),
  u64("xsdtAddress"),
  u8("extendedChecksum"),
  pad(3),
]);
/** The revision-1 checksum covers only the ACPI 1.0 part of the RSDP. */
export const RSDP_V1_LENGTH = 20;

/** 5.2.6 System Description Table Header (36 bytes), shared by every table but the RSDP and FACS. */
export interface SdtHeader {
  signature: Buffer;
  length: number;
  revision: number;
  checksum: number;
  oemId: Buffer;
  oemTableId: Buffer;
  oemRevision: number;
  creatorId: Buffer;
  creatorRevision: number;
}
export const SDT_HEADER = defineStruct<SdtHeader>("ACPI SDT header", [
  bytes(4, "signature"),
  u32("length"),
  u8("revision"),
  u8("checksum"),
  bytes(6, "oemId"),
  bytes(8, "oemTableId"),
  u32("oemRevision"),
  bytes(4, "creatorId"),
  u32("creatorRevision"),
]);

/** 5.2.3.2 Generic Address Structure (12 bytes). */
export interface Gas {
  addressSpaceId: number;
  registerBitWidth: number;
  registerBitOffset: number;
  accessSize: number;
  address: bigint;
}
export const GAS = defineStruct<Gas>("ACPI GAS", [
  u8("addressSpaceId"),
  u8("registerBitWidth"),
  u8("registerBitOffset"),
  u8("accessSize"),
  u64("address"),
]);
export const GAS_SYSTEM_MEMORY = 0;
export const GAS_SYSTEM_IO = 1;

/** 5.2.9 Fixed ACPI Description Table, revision 6 (276 bytes). */
export interface Fadt {
  header: SdtHeader;
  firmwareCtrl: number;
  dsdt: number;
  preferredPmProfile: number;
  sciInt: number;
  smiCmd: number;
  acpiEnable: number;
  acpiDisable: number;
  s4biosReq: number;
  pstateCnt: number;
  pm1aEvtBlk: number;
  pm1bEvtBlk: number;
  pm1aCntBlk: number;
  pm1bCntBlk: number;
  pm2CntBlk: number;
  pmTmrBlk: number;
  gpe0Blk: number;
  gpe1Blk: number;
  pm1EvtLen: number;
  pm1CntLen: number;
  pm2CntLen: number;
  pmTmrLen: number;
  gpe0BlkLen: number;
  gpe1BlkLen: number;
  gpe1Base: number;
  cstCnt: number;
  pLvl2Lat: number;
  pLvl3Lat: number;
  flushSize: number;
  flushStride: number;
  dutyOffset: number;
  dutyWidth: number;
  dayAlrm: number;
  monAlrm: number;
  century: number;
  iapcBootArch: number;
  flags: number;
  resetReg: Gas;
  resetValue: number;
  armBootArch: number;
  fadtMinorVersion: number;
  xFirmwareCtrl: bigint;
  xDsdt: bigint;
  xPm1aEvtBlk: Gas;
  xPm1bEvtBlk: Gas;
  xPm1aCntBlk: Gas;
  xPm1bCntBlk: Gas;
  xPm2CntBlk: Gas;
  xPmTmrBlk: Gas;
  xGpe0Blk: Gas;
  xGpe1Blk: Gas;
  sleepControlReg: Gas;
  sleepStatusReg: Gas;
  hypervisorVendorIdentity: bigint;
}
export const FADT = defineStruct<Fadt>("ACPI FADT", [
  nested(SDT_HEADER, "header"),
  u32("firmwareCtrl"),
  u32("dsdt"),
  pad(1),
  u8("preferredPmProfile"),
  u16("sciInt"),
  u32("smiCmd"),
  u8("acpiEnable"),
  u8("acpiDisable"),
  u8("s4biosReq"),
  u8("pstateCnt"),
  u32("pm1aEvtBlk"),
  u32("pm1bEvtBlk"),
  u32("pm1aCntBlk"),
  u32("pm1bCntBlk"),
  u32("pm2CntBlk"),
  u32("pmTmrBlk"),
  u32("gpe0Blk"),
  u32("gpe1Blk"),
  u8("pm1EvtLen"),
  u8("pm1CntLen"),
  u8("pm2CntLen"),
  u8("pmTmrLen"),
  u8("gpe0BlkLen"),
  u8("gpe1BlkLen"),
  u8("gpe1Base"),
  u8("cstCnt"),
  u16("pLvl2Lat"),
  u16("pLvl3Lat"),
  u16("flushSize"),
  u16("flushStride"),
  u8("dutyOffset"),
  u8("dutyWidth"),
  u8("dayAlrm"),
  u8("monAlrm"),
  u8("century"),
  u16("iapcBootArch"),
  pad(1),
  u32("flags"),
  nested(GAS, "resetReg"),
  u8("resetValue"),
  u16("armBootArch"),
  u8("fadtMinorVersion"),
  u64("xFirmwareCtrl"),
  u64("xDsdt"),
  nested(GAS, "xPm1aEvtBlk"),
  nested(GAS, "xPm1bEvtBlk"),
  nested(GAS, "xPm1aCntBlk"),
  nested(GAS, "xPm1bCntBlk"),
  nested(GAS, "xPm2CntBlk"),
  nested(GAS, "xPmTmrBlk"),
  nested(GAS, "xGpe0Blk"),
  nested(GAS, "xGpe1Blk"),
  nested(GAS, "sleepControlReg"),
  nested(GAS, "sleepStatusReg"),
  u64("hypervisorVendorIdentity"),
]);

/** 5.2.10 Firmware ACPI Control Structure (64 bytes, 64-byte aligned). */
export interface Facs {
  signature: Buffer;
  length: number;
  hardwareSignature: number;
  firmwareWakingVector: number;
  globalLock: number;
  flags: number;
  xFirmwareWakingVector: bigint;
  version: number;
  ospmFlags: number;
}
export const FACS = defineStruct<Facs>("ACPI FACS", [
  bytes(4, "signature"),
  u32("length"),
  u32("hardwareSignature"),
  u32("firmwareWakingVector"),
  u32("globalLock"),
  u32("flags"),
  u64("xFirmwareWakingVector"),
  u8("version"),
  pad(3),
  u32("ospmFlags"),
  pad(24),
]);

/** 5.2.12 MADT: the fields between the header and the first interrupt controller structure. */
export interface MadtFixed {
  localApicAddress: number;
  flags: number;
}
export const MADT_FIXED = defineStruct<MadtFixed>("ACPI MADT fixed part", [u32("localApicAddress"), u32("flags")]);

/** Every MADT entry starts with type and length. */
export interface MadtEntryHeader {
  type: number;
  length: number;
}
export const MADT_ENTRY_HEADER = defineStruct<MadtEntryHeader>("ACPI MADT entry header", [u8("type"), u8("length")]);

/** 5.2.12.2 Processor Local APIC (type 0, 8 bytes). */
export interface MadtLocalApic {
  type: number;
  length: number;
  processorUid: number;
  apicId: number;
  flags: number;
}
export const MADT_LOCAL_APIC = defineStruct<MadtLocalApic>("ACPI MADT Processor Local APIC", [
  u8("type"),
  u8("length"),
  u8("processorUid"),
  u8("apicId"),
  u32("flags"),
]);

/** 5.2.12.3 I/O APIC (type 1, 12 bytes). */
export interface MadtIoApic {
  type: number;
  length: number;
  ioApicId: number;
  ioApicAddress: number;
  gsiBase: number;
}
export const MADT_IO_APIC = defineStruct<MadtIoApic>("ACPI MADT I/O APIC", [
  u8("type"),
  u8("length"),
  u8("ioApicId"),
  pad(1),
  u32("ioApicAddress"),
  u32("gsiBase"),
]);

/** 5.2.12.5 Interrupt Source Override (type 2, 10 bytes). */
export interface MadtInterruptSourceOverride {
  type: number;
  length: number;
  bus: number;
  source: number;
  gsi: number;
  flags: number;
}
export const MADT_INTERRUPT_SOURCE_OVERRIDE = defineStruct<MadtInterruptSourceOverride>("ACPI MADT Interrupt Source Override", [
  u8("type"),
  u8("length"),
  u8("bus"),
  u8("source"),
  u32("gsi"),
  u16("flags"),
]);

/** 5.2.12.7 Local APIC NMI (type 4, 6 bytes). */
export interface MadtLocalApicNmi {
  type: number;
  length: number;
  processorUid: number;
  flags: number;
  lint: number;
}
export const MADT_LOCAL_APIC_NMI = defineStruct<MadtLocalApicNmi>("ACPI MADT Local APIC NMI", [
  u8("type"),
  u8("length"),
  u8("processorUid"),
  u16("flags"),
  u8("lint"),
]);

/** 5.2.12.12 Processor Local x2APIC (type 9, 16 bytes). */
export interface MadtLocalX2Apic {
  type: number;
  length: number;
  x2apicId: number;
  flags: number;
  processorUid: number;
}
export const MADT_LOCAL_X2APIC = defineStruct<MadtLocalX2Apic>("ACPI MADT Processor Local x2APIC", [
  u8("type"),
  u8("length"),
  pad(2),
  u32("x2apicId"),
  u32("flags"),
  u32("processorUid"),
]);

/** 5.2.12.13 Local x2APIC NMI (type 10, 12 bytes). */
export interface MadtLocalX2ApicNmi {
  type: number;
  length: number;
  flags: number;
  processorUid: number;
  lint: number;
}
export const MADT_LOCAL_X2APIC_NMI = defineStruct<MadtLocalX2ApicNmi>("ACPI MADT Local x2APIC NMI", [
  u8("type"),
  u8("length"),
  u16("flags"),
  u32("processorUid"),
  u8("lint"),
  pad(3),
]);

export const MADT_TYPE_LOCAL_APIC = 0;
export const MADT_TYPE_IO_APIC = 1;
export const MADT_TYPE_INTERRUPT_SOURCE_OVERRIDE = 2;
export const MADT_TYPE_LOCAL_APIC_NMI = 4;
export const MADT_TYPE_LOCAL_X2APIC = 9;
export const MADT_TYPE_LOCAL_X2APIC_NMI = 10;

/** All ACPI layouts, for tests and for readers of raw tables. */
export const ACPI_LAYOUTS: readonly StructLayout<unknown>[] = [
  RSDP,
  SDT_HEADER,
  GAS,
  FADT,
  FACS,
  MADT_FIXED,
  MADT_ENTRY_HEADER,
  MADT_LOCAL_APIC,
  MADT_IO_APIC,
  MADT_INTERRUPT_SOURCE_OVERRIDE,
  MADT_LOCAL_APIC_NMI,
  MADT_LOCAL_X2APIC,
  MADT_LOCAL_X2APIC_NMI,
] as readonly StructLayout<unknown>[];
