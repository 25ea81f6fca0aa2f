import { AcpiError } from "../errors.js";
import { FACS, FADT, GAS_SYSTEM_IO, type Gas } from "../layouts.js";
import type { ResolvedPlatform } from "../platform.js";
import { PM_TMR_LEN, PM1_CNT_LEN, PM1_EVT_LEN } from "../pm.js";
import { sdtHeader, sealSdt } from "../sdt.js";

export const FADT_REVISION = 6;
export const FADT_MINOR_REVISION = 3;

/** FADT Flags (ACPI 6.4 table 5.10) this package sets. */
export const FADT_FLAG_WBINVD = 1 << 0;
export const FADT_FLAG_PROC_C1 = 1 << 2;
export const FADT_FLAG_PWR_BUTTON = 1 << 4;
export const FADT_FLAG_SLP_BUTTON = 1 << 5;
export const FADT_FLAG_TMR_VAL_EXT = 1 << 8;
export const FADT_FLAG_RESET_REG_SUP = 1 << 10;
export const FADT_FLAG_HW_REDUCED_ACPI = 1 << 20;

/** IAPC_BOOT_ARCH bits (ACPI 6.4 table 5.11). */
export const BOOT_ARCH_LEGACY_DEVICES = 1 << 0;
export const BOOT_ARCH_8042 = 1 << 1;
export const BOOT_ARCH_VGA_NOT_PRESENT = 1 << 2;
export const BOOT_ARCH_MSI_NOT_SUPPORTED = 1 << 3;
export const BOOT_ARCH_CMOS_RTC_NOT_PRESENT = 1 << 5;

const NO_GAS: Gas = { addressSpaceId: 0, registerBitWidth: 0, registerBitOffset: 0, accessSize: 0, address: 0n };

function io(port: number, bytes: number): Gas {
  // Access size 0 ("legacy"): OSPM uses the register's own width, as for the 32-bit block fields.
  return { addressSpaceId: GAS_SYSTEM_IO, registerBitWidth: bytes * 8, registerBitOffset: 0, accessSize: 0, address: BigInt(port) };
}

/**
 * The FADT of a machine with the fixed PM hardware (not hardware-reduced): PM1a event and control
 * blocks and a PM timer in I/O space, the SCI on an ISA IRQ, no SMI command port (the machine is
 * always in ACPI mode), no GPE blocks. Each PM block is given both as the 32-bit field and as the
 * X_ Generic Address, with the same value, as ACPICA checks.
 */
export function buildFadt(p: ResolvedPlatform, a: { dsdt: bigint; facs: bigint }): Buffer {
  if (a.facs < 0n || a.dsdt < 0n) throw new AcpiError("ACPI_ADDRESS_RANGE", "negative table address");
  const facsLow = a.facs <= 0xffff_ffffn;
  const b = p.bootArch;
  const iapcBootArch =
    (b.legacyDevices ? BOOT_ARCH_LEGACY_DEVICES : 0) |
    (b.i8042 ? BOOT_ARCH_8042 : 0) |
    (b.vgaNotPresent ? BOOT_ARCH_VGA_NOT_PRESENT : 0) |
    (b.msiNotSupported ? BOOT_ARCH_MSI_NOT_SUPPORTED : 0) |
    (b.cmosRtcNotPresent ? BOOT_ARCH_CMOS_RTC_NOT_PRESENT : 0);
  const flags =
    FADT_FLAG_WBINVD |
    FADT_FLAG_PROC_C1 |
    // No fixed power/sleep button: a button would be a control-method device in the DSDT.
    FADT_FLAG_PWR_BUTTON |
    FADT_FLAG_SLP_BUTTON |
    (p.pm.pmTimer32Bit ? FADT_FLAG_TMR_VAL_EXT : 0) |
    (p.reset !== false ? FADT_FLAG_RESET_REG_SUP : 0);
  const table = FADT.encode({
    header: sdtHeader("FACP", FADT_REVISION, FADT.size, p.ids),
    // The spec wants exactly one of FIRMWARE_CTRL / X_FIRMWARE_CTRL; the 32-bit one, when the
    // FACS is below 4 GiB, is what ACPI 1.0-era readers (kvm-unit-tests among them) look at.
    firmwareCtrl: facsLow ? Number(a.facs) : 0,
    dsdt: a.dsdt <= 0xffff_ffffn ? Number(a.dsdt) : 0,
    preferredPmProfile: 0,
    sciInt: p.pm.sciIrq,
    smiCmd: 0,
    acpiEnable: 0,
    acpiDisable: 0,
    s4biosReq: 0,
    pstateCnt: 0,
    pm1aEvtBlk: p.pm.pm1aEvent,
    pm1bEvtBlk: 0,
    pm1aCntBlk: p.pm.pm1aControl,
    pm1bCntBlk: 0,
    pm2CntBlk: 0,
    pmTmrBlk: p.pm.pmTimer,
    gpe0Blk: 0,
    gpe1Blk: 0,
    pm1EvtLen: PM1_EVT_LEN,
    pm1CntLen: PM1_CNT_LEN,
    pm2CntLen: 0,
    pmTmrLen: PM_TMR_LEN,
    gpe0BlkLen: 0,
    gpe1BlkLen: 0,
    gpe1Base: 0,
    cstCnt: 0,
    // > 100 / > 1000 µs: C2 and C3 are not supported.
    pLvl2Lat: 101,
    pLvl3Lat: 1001,
    flushSize: 0,
    flushStride: 0,
    dutyOffset: 0,
    dutyWidth: 0,
    dayAlrm: 0,
    monAlrm: 0,
    century: 0,
    iapcBootArch,
    flags,
    resetReg: p.reset !== false ? { ...io(p.reset.port, 1), registerBitWidth: 8 } : NO_GAS,
    resetValue: p.reset !== false ? p.reset.value : 0,
    armBootArch: 0,
    fadtMinorVersion: FADT_MINOR_REVISION,
    xFirmwareCtrl: facsLow ? 0n : a.facs,
    xDsdt: a.dsdt,
    xPm1aEvtBlk: io(p.pm.pm1aEvent, PM1_EVT_LEN),
    xPm1bEvtBlk: NO_GAS,
    xPm1aCntBlk: io(p.pm.pm1aControl, PM1_CNT_LEN),
    xPm1bCntBlk: NO_GAS,
    xPm2CntBlk: NO_GAS,
    xPmTmrBlk: io(p.pm.pmTimer, PM_TMR_LEN),
    xGpe0Blk: NO_GAS,
    xGpe1Blk: NO_GAS,
    sleepControlReg: NO_GAS,
    sleepStatusReg: NO_GAS,
    hypervisorVendorIdentity: 0n,
  });
  return sealSdt(table);
}

/** FACS alignment the spec requires. */
export const FACS_ALIGNMENT = 64;

/** An FACS (version 2) with no waking vector and no global lock in use. */
export function buildFacs(): Buffer {
  return FACS.encode({
    signature: Buffer.from("FACS", "latin1"),
    length: FACS.size,
    hardwareSignature: 0,
    firmwareWakingVector: 0,
    globalLock: 0,
    flags: 0,
    xFirmwareWakingVector: 0n,
    version: 2,
    ospmFlags: 0,
  });
}
