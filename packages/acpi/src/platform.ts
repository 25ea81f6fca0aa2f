import type { AmlBytes } from "./aml/encoder.js";
import type { InterruptPolarity, InterruptTrigger } from "./aml/resources.js";
import { AcpiError } from "./errors.js";
import { DEFAULT_PM_PORTS, DEFAULT_S5_SLEEP_TYPE, DEFAULT_SCI_IRQ, PM_TMR_LEN, PM1_CNT_LEN, PM1_EVT_LEN, type PmPorts } from "./pm.js";
import { DEFAULT_TABLE_IDS, type TableIds } from "./sdt.js";

/** One vCPU as the MADT (and MP table) lists it. */
export interface PlatformVcpu {
  /** Its local APIC id (what CPUID and the LAPIC ID register report). */
  readonly apicId: number;
  /** Default true. A disabled CPU is listed but not started by the OS. */
  readonly enabled?: boolean;
}

export interface PlatformIoApic {
  readonly id: number;
  /** Default 0xFEC00000. */
  readonly address?: number;
  /** First GSI of its pins. Default 0. */
  readonly gsiBase?: number;
}

/** A 16550 UART: `PNP0501` with its I/O window and ISA IRQ. */
export interface ComDevice {
  readonly kind: "com";
  /** Default 0x3F8. */
  readonly port?: number;
  /** ISA IRQ 0-15. Default 4. */
  readonly irq?: number;
  /** 4-character ACPI name. Default COM1, COM2, ... in order. */
  readonly name?: string;
  /** _UID. Default 1, 2, ... in order. */
  readonly uid?: number;
}

/** A virtio-mmio transport: `LNRO0005` with its register window and interrupt. */
export interface VirtioMmioDevice {
  readonly kind: "virtio-mmio";
  readonly address: number;
  /** Default 0x200 (the register block). */
  readonly size?: number;
  readonly gsi: number;
  /** Default "level": see the README for why. */
  readonly trigger?: InterruptTrigger;
  /** Default "active-high". */
  readonly polarity?: InterruptPolarity;
  /** Default VR00, VR01, ... (hex) in order. */
  readonly name?: string;
  /** _UID. Default 0, 1, ... in order. */
  readonly uid?: number;
}

export type PlatformDevice = ComDevice | VirtioMmioDevice;

export type OverrideTrigger = "conforming" | "edge" | "level";
export type OverridePolarity = "conforming" | "active-high" | "active-low";

/** An ISA IRQ routed to a GSI other than its own number, or with non-ISA polarity/trigger. */
export interface InterruptOverride {
  /** ISA IRQ 0-15. */
  readonly source: number;
  readonly gsi: number;
  readonly trigger: OverrideTrigger;
  readonly polarity: OverridePolarity;
}

/** FADT IAPC_BOOT_ARCH flags (ACPI 6.4 table 5.11). */
export interface BootArchFlags {
  readonly legacyDevices: boolean;
  readonly i8042: boolean;
  readonly vgaNotPresent: boolean;
  readonly msiNotSupported: boolean;
  readonly cmosRtcNotPresent: boolean;
}

export interface PmOptions extends PmPorts {
  /** ISA IRQ of the SCI (FADT SCI_INT). */
  readonly sciIrq: number;
  /** SLP_TYP for S5, written into `\_S5`; the guest writes it to PM1a_CNT to power off. */
  readonly s5SleepType: number;
  /** FADT TMR_VAL_EXT: a 32-bit PM timer instead of 24-bit. */
  readonly pmTimer32Bit: boolean;
}

/** The machine the tables describe. */
export interface AcpiPlatform {
  readonly vcpus: readonly PlatformVcpu[];
  readonly ioapic: PlatformIoApic;
  readonly devices?: readonly PlatformDevice[];
  /** Default 0xFEE00000. */
  readonly localApicAddress?: number;
  /** MADT PCAT_COMPAT: a pair of 8259s is present too. Default true (KVM's in-kernel irqchip has them). */
  readonly pcatCompat?: boolean;
  readonly pm?: Partial<PmOptions>;
  /** Replaces the default overrides (IRQ0 -> GSI2; the SCI as level, active-high). */
  readonly overrides?: readonly InterruptOverride[];
  /** MADT Local APIC NMI for all CPUs on this LINT (default 1); false for none. */
  readonly lapicNmi?: { readonly lint: 0 | 1 } | false;
  /** FADT RESET_REG (I/O port) and RESET_VALUE. Default port 0x64, value 0xFE (the i8042 reset pulse); false for none. */
  readonly reset?: { readonly port: number; readonly value: number } | false;
  readonly bootArch?: Partial<BootArchFlags>;
  /** Header ids for every table. */
  readonly ids?: Partial<TableIds>;
  /** Extra AML terms appended at the DSDT's root (wrap them in amlScope to place them). */
  readonly extraDsdtTerms?: readonly AmlBytes[];
}

export interface ResolvedComDevice {
  readonly kind: "com";
  readonly port: number;
  readonly irq: number;
  readonly name: string;
  readonly uid: number;
}
export interface ResolvedVirtioMmioDevice {
  readonly kind: "virtio-mmio";
  readonly address: number;
  readonly size: number;
  readonly gsi: number;
  readonly trigger: InterruptTrigger;
  readonly polarity: InterruptPolarity;
  readonly name: string;
  readonly uid: number;
}
export type ResolvedDevice = ResolvedComDevice | ResolvedVirtioMmioDevice;

/** The platform with every default filled in and every value checked. */
export interface ResolvedPlatform {
  readonly vcpus: readonly { readonly apicId: number; readonly enabled: boolean }[];
  readonly ioapic: { readonly id: number; readonly address: number; readonly gsiBase: number };
  readonly devices: readonly ResolvedDevice[];
  readonly localApicAddress: number;
  readonly pcatCompat: boolean;
  readonly pm: PmOptions;
  readonly overrides: readonly InterruptOverride[];
  readonly lapicNmi: { readonly lint: 0 | 1 } | false;
  readonly reset: { readonly port: number; readonly value: number } | false;
  readonly bootArch: BootArchFlags;
  readonly ids: TableIds;
  readonly extraDsdtTerms: readonly AmlBytes[];
}

export const DEFAULT_IOAPIC_ADDRESS = 0xfec0_0000;
export const DEFAULT_LOCAL_APIC_ADDRESS = 0xfee0_0000;
export const DEFAULT_VIRTIO_MMIO_SIZE = 0x200;

/** A guest with a CMOS RTC, no VGA and no keyboard controller (the i8042 here only resets). */
export const DEFAULT_BOOT_ARCH: BootArchFlags = Object.freeze({
  legacyDevices: false,
  i8042: false,
  vgaNotPresent: true,
  msiNotSupported: false,
  cmosRtcNotPresent: false,
});

function int(v: unknown, min: number, max: number, what: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    throw new AcpiError("ACPI_INVALID_ARGUMENT", `${what} must be an integer in ${min}..${max}, got ${String(v)}`);
  }
  return v;
}

const NAME_SEG = /^[A-Z_][A-Z0-9_]{3}$/;

export function resolvePlatform(p: AcpiPlatform): ResolvedPlatform {
  if (p.vcpus.length === 0) throw new AcpiError("ACPI_INVALID_ARGUMENT", "a platform needs at least one vCPU");
  const apicIds = new Set<number>();
  const vcpus = p.vcpus.map((v, i) => {
    // 0xFFFFFFFF is the x2APIC broadcast id.
    const apicId = int(v.apicId, 0, 0xffff_fffe, `vcpus[${i}].apicId`);
    if (apicIds.has(apicId)) throw new AcpiError("ACPI_INVALID_ARGUMENT", `APIC id ${apicId} is used twice`);
    apicIds.add(apicId);
    return { apicId, enabled: v.enabled ?? true };
  });
  if (!vcpus[0]!.enabled) throw new AcpiError("ACPI_INVALID_ARGUMENT", "vcpus[0] is the boot CPU and must be enabled");
  const ioapic = {
    id: int(p.ioapic.id, 0, 0xff, "ioapic.id"),
    address: int(p.ioapic.address ?? DEFAULT_IOAPIC_ADDRESS, 0, 0xffff_ffff, "ioapic.address"),
    gsiBase: int(p.ioapic.gsiBase ?? 0, 0, 0xffff_ffff, "ioapic.gsiBase"),
  };
  const pm: PmOptions = {
    pm1aEvent: int(p.pm?.pm1aEvent ?? DEFAULT_PM_PORTS.pm1aEvent, 1, 0x1_0000 - PM1_EVT_LEN, "pm.pm1aEvent"),
    pm1aControl: int(p.pm?.pm1aControl ?? DEFAULT_PM_PORTS.pm1aControl, 1, 0x1_0000 - PM1_CNT_LEN, "pm.pm1aControl"),
    pmTimer: int(p.pm?.pmTimer ?? DEFAULT_PM_PORTS.pmTimer, 1, 0x1_0000 - PM_TMR_LEN, "pm.pmTimer"),
    sciIrq: int(p.pm?.sciIrq ?? DEFAULT_SCI_IRQ, 0, 15, "pm.sciIrq"),
    s5SleepType: int(p.pm?.s5SleepType ?? DEFAULT_S5_SLEEP_TYPE, 0, 7, "pm.s5SleepType"),
    pmTimer32Bit: p.pm?.pmTimer32Bit ?? false,
  };
  const blocks: Array<[string, number, number]> = [
    ["PM1a_EVT_BLK", pm.pm1aEvent, PM1_EVT_LEN],
    ["PM1a_CNT_BLK", pm.pm1aControl, PM1_CNT_LEN],
    ["PM_TMR_BLK", pm.pmTimer, PM_TMR_LEN],
  ];
  for (const [an, a, al] of blocks) {
    for (const [bn, b, bl] of blocks) {
      if (an < bn && a < b + bl && b < a + al) throw new AcpiError("ACPI_INVALID_ARGUMENT", `${an} and ${bn} overlap`);
    }
  }
  const overrides = (
    p.overrides ?? [
      // PC convention: the PIT's IRQ0 is wired to IOAPIC pin 2 (pin 0 carries the 8259's ExtINT).
      { source: 0, gsi: ioapic.gsiBase + 2, trigger: "conforming", polarity: "conforming" },
      // The SCI is a shared, level-triggered interrupt; active-high matches KVM's line semantics.
      { source: pm.sciIrq, gsi: ioapic.gsiBase + pm.sciIrq, trigger: "level", polarity: "active-high" },
    ]
  ).map((o, i) => ({
    source: int(o.source, 0, 15, `overrides[${i}].source`),
    gsi: int(o.gsi, 0, 0xffff_ffff, `overrides[${i}].gsi`),
    trigger: o.trigger,
    polarity: o.polarity,
  }));
  const names = new Set<string>();
  let com = 0;
  let virtio = 0;
  const devices = (p.devices ?? []).map((d, i): ResolvedDevice => {
    let r: ResolvedDevice;
    if (d.kind === "com") {
      com++;
      r = {
        kind: "com",
        port: int(d.port ?? 0x3f8, 0, 0xfff8, `devices[${i}].port`),
        irq: int(d.irq ?? 4, 0, 15, `devices[${i}].irq`),
        name: d.name ?? `COM${com}`,
        uid: int(d.uid ?? com, 0, 0xffff_ffff, `devices[${i}].uid`),
      };
    } else if (d.kind === "virtio-mmio") {
      const size = int(d.size ?? DEFAULT_VIRTIO_MMIO_SIZE, 1, 0xffff_ffff, `devices[${i}].size`);
      r = {
        kind: "virtio-mmio",
        address: int(d.address, 0, 0xffff_ffff - size + 1, `devices[${i}].address (with its size below 4 GiB)`),
        size,
        gsi: int(d.gsi, 0, 0xffff_ffff, `devices[${i}].gsi`),
        trigger: d.trigger ?? "level",
        polarity: d.polarity ?? "active-high",
        name: d.name ?? `VR${virtio.toString(16).toUpperCase().padStart(2, "0")}`,
        uid: int(d.uid ?? virtio, 0, 0xffff_ffff, `devices[${i}].uid`),
      };
      virtio++;
    } else {
      throw new AcpiError("ACPI_INVALID_ARGUMENT", `devices[${i}]: unknown kind ${String((d as { kind: unknown }).kind)}`);
    }
    if (!NAME_SEG.test(r.name)) throw new AcpiError("ACPI_INVALID_ARGUMENT", `devices[${i}].name ${JSON.stringify(r.name)} is not a 4-character ACPI name`);
    if (names.has(r.name)) throw new AcpiError("ACPI_INVALID_ARGUMENT", `device name ${r.name} is used twice`);
    names.add(r.name);
    return r;
  });
  const reset =
    p.reset === false
      ? false
      : {
          port: int(p.reset?.port ?? 0x64, 0, 0xffff, "reset.port"),
          value: int(p.reset?.value ?? 0xfe, 0, 0xff, "reset.value"),
        };
  const lapicNmi = p.lapicNmi === false ? false : { lint: p.lapicNmi?.lint ?? 1 };
  if (lapicNmi !== false && lapicNmi.lint !== 0 && lapicNmi.lint !== 1) throw new AcpiError("ACPI_INVALID_ARGUMENT", "lapicNmi.lint must be 0 or 1");
  return {
    vcpus,
    ioapic,
    devices,
    localApicAddress: int(p.localApicAddress ?? DEFAULT_LOCAL_APIC_ADDRESS, 0, 0xffff_ffff, "localApicAddress"),
    pcatCompat: p.pcatCompat ?? true,
    pm,
    overrides,
    lapicNmi,
    reset,
    bootArch: { ...DEFAULT_BOOT_ARCH, ...p.bootArch },
    ids: { ...DEFAULT_TABLE_IDS, ...p.ids },
    extraDsdtTerms: p.extraDsdtTerms ?? [],
  };
}
