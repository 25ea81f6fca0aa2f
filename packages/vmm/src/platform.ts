import type { GuestMemory } from "@tsvmm/abi";
import {
  type AcpiPlatform, type AcpiTables, BIOS_RSDP_AREA_END, BIOS_RSDP_AREA_START, buildAcpiTables, buildMpTable, DEFAULT_PM_PORTS,
  DEFAULT_S5_SLEEP_TYPE, type MpTable, type PlatformDevice,
} from "@tsvmm/acpi";
import { type ElfFile, parseElf } from "@tsvmm/elf-loader";
import { VmmError } from "./errors.js";

// The firmware tables every VM gets: ACPI (RSDP, XSDT, RSDT, FADT, FACS, DSDT, MADT) and the MP
// table, describing the machine `assemble` builds: one local APIC per vCPU (APIC id = vCPU index,
// as the CPUID topology and KVM's LAPIC ID register say), KVM's in-kernel IOAPIC (id 0, what its ID
// register reads), COM1, the PM block of `@tsvmm/devices`' PmDevice, and whatever devices the
// builder registered for the DSDT (virtio-mmio transports).

/** Where the ACPI blob goes: the start of the BIOS area every OS scans for "RSD PTR ". */
export const ACPI_TABLES_ADDRESS = BIOS_RSDP_AREA_START;
/** Where the MP floating pointer and its configuration table go (MP spec 1.4: 0xF0000-0xFFFFF). */
export const MP_TABLE_ADDRESS = 0xf_0000;
/** KVM's in-kernel IOAPIC: its ID register reads 0 after reset, at the PC address. */
export const IOAPIC_ID = 0;
export const IOAPIC_ADDRESS = 0xfec0_0000;

/**
 * A device the firmware tables describe besides COM1. The virtio integration adds one per
 * virtio-mmio transport; Linux without CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES finds them only here
 * (`_HID "LNRO0005"`, its window and its interrupt).
 */
export interface VirtioMmioPlatformDevice {
  readonly kind: "virtio-mmio";
  /** Guest-physical base of the register window (below 4 GiB). */
  readonly address: number;
  /** Bytes of the window (0x200 is the virtio-mmio register block). */
  readonly size: number;
  /** The IOAPIC input it raises (5-23 and not 8 or 9 on KVM's IOAPIC: see @tsvmm/acpi's README). */
  readonly gsi: number;
  /** Default "level" (the line follows InterruptStatus != 0); "edge" for an irqfd without resample. */
  readonly trigger?: "level" | "edge";
  /** 4-character ACPI name; default VR00, VR01, ... in order. */
  readonly name?: string;
}
export type FirmwarePlatformDevice = VirtioMmioPlatformDevice;

/** What the firmware step is given (a slice of VmmSpec). */
export interface FirmwareOptions {
  readonly vcpus: number;
  readonly serial: { readonly port: number; readonly irq: number };
  /** ACPI tables (default on). Off: no RSDP anywhere, no PM device. */
  readonly acpi: boolean;
  /** The MP table (default on): for guests without an ACPI parser. */
  readonly mpTable: boolean;
  readonly devices: readonly FirmwarePlatformDevice[];
}

/** The tables planned for one VM, before anything is written. */
export interface FirmwarePlan {
  /** The ACPI blob and where its RSDP is, or undefined with ACPI off. */
  readonly acpi: AcpiTables | undefined;
  readonly mp: MpTable | undefined;
  /** RSDP address for the boot protocol (PVH rsdp_paddr, boot_params.acpi_rsdp_addr). */
  readonly rsdpAddress: number | undefined;
  /** The PM block the FADT declares: the VMM puts a PmDevice there. */
  readonly pm: { readonly pm1aEvent: number; readonly pm1aControl: number; readonly pmTimer: number; readonly s5SleepType: number } | undefined;
  /** Every byte range the tables occupy. */
  readonly ranges: readonly { readonly address: number; readonly size: number; readonly what: string }[];
}

/** The machine as @tsvmm/acpi describes it. */
export function acpiPlatformFor(o: FirmwareOptions): AcpiPlatform {
  const devices: PlatformDevice[] = [{ kind: "com", port: o.serial.port, irq: o.serial.irq }];
  for (const d of o.devices) {
    devices.push({ kind: "virtio-mmio", address: d.address, size: d.size, gsi: d.gsi, ...(d.trigger !== undefined ? { trigger: d.trigger } : {}), ...(d.name !== undefined ? { name: d.name } : {}) });
  }
  return {
    vcpus: Array.from({ length: o.vcpus }, (_, i) => ({ apicId: i })),
    ioapic: { id: IOAPIC_ID, address: IOAPIC_ADDRESS },
    devices,
  };
}

/** Lay out the tables for `o` (pure: nothing is written). Errors are AcpiError. */
export function planFirmware(o: FirmwareOptions): FirmwarePlan {
  const platform = acpiPlatformFor(o);
  const acpi = o.acpi ? buildAcpiTables(platform, { base: ACPI_TABLES_ADDRESS }) : undefined;
  const mp = o.mpTable ? buildMpTable(platform, { address: MP_TABLE_ADDRESS }) : undefined;
  const ranges: { address: number; size: number; what: string }[] = [];
  if (acpi !== undefined) {
    for (const s of acpi.segments) ranges.push({ address: s.address, size: s.bytes.length, what: "ACPI tables" });
    if (acpi.base + acpi.bytes.length > MP_TABLE_ADDRESS && mp !== undefined) {
      throw new VmmError("VMM_BUILD_INVALID", `the ACPI tables (${acpi.bytes.length} bytes at 0x${acpi.base.toString(16)}) run into the MP table at 0x${MP_TABLE_ADDRESS.toString(16)}`);
    }
    if (acpi.base + acpi.bytes.length > BIOS_RSDP_AREA_END) throw new VmmError("VMM_BUILD_INVALID", "the ACPI tables do not fit in the BIOS area");
  }
  if (mp !== undefined) ranges.push({ address: mp.address, size: mp.bytes.length, what: "MP table" });
  const p = acpi?.platform.pm;
  return {
    acpi,
    mp,
    rsdpAddress: acpi?.rsdpAddress,
    pm: p === undefined ? undefined : { pm1aEvent: p.pm1aEvent, pm1aControl: p.pm1aControl, pmTimer: p.pmTimer, s5SleepType: p.s5SleepType },
    ranges,
  };
}

/** Default PM ports and S5 value, for callers that want them without planning tables. */
export const FIRMWARE_PM_DEFAULTS = Object.freeze({ ...DEFAULT_PM_PORTS, s5SleepType: DEFAULT_S5_SLEEP_TYPE });

function overlaps(a: number, alen: number, b: number, blen: number): boolean {
  return a < b + blen && b < a + alen;
}

/**
 * Write the planned tables, after the kernel was loaded. Refuses (VmmError VMM_BUILD_INVALID,
 * nothing written) when the loaded image reaches into a table's range: an ELF segment (file bytes
 * or zero-filled bss) over it, or any non-zero byte the loader left there (boot data, modules).
 * `parsed` is `kernel` already parsed as ELF (loadKernel hands it back), so as not to parse it again.
 */
export function writeFirmware(memory: GuestMemory, plan: FirmwarePlan, kernel: Uint8Array | undefined, parsed?: ElfFile): void {
  if (kernel !== undefined && kernel.length >= 4 && Buffer.from(kernel.buffer, kernel.byteOffset, 4).readUInt32BE(0) === 0x7f454c46) {
    const elf = parsed ?? parseElf(kernel);
    for (const ph of elf.programHeaders) {
      if (ph.type !== 1 || ph.memsz === 0n) continue;
      const start = Number(ph.paddr);
      const size = Number(ph.memsz);
      for (const r of plan.ranges) {
        if (overlaps(start, size, r.address, r.size)) {
          throw new VmmError("VMM_BUILD_INVALID", `the kernel's segment at 0x${start.toString(16)}+0x${size.toString(16)} overlaps the ${r.what} at 0x${r.address.toString(16)}+0x${r.size.toString(16)}`);
        }
      }
    }
  }
  for (const r of plan.ranges) {
    const bytes = memory.read(r.address, r.size);
    const at = bytes.findIndex((b) => b !== 0);
    if (at >= 0) throw new VmmError("VMM_BUILD_INVALID", `the loader wrote 0x${(r.address + at).toString(16)}, inside the ${r.what} at 0x${r.address.toString(16)}+0x${r.size.toString(16)}`);
  }
  plan.acpi?.writeTo(memory);
  plan.mp?.writeTo(memory);
}
