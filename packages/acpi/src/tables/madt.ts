import {
  MADT_FIXED,
  MADT_INTERRUPT_SOURCE_OVERRIDE,
  MADT_IO_APIC,
  MADT_LOCAL_APIC,
  MADT_LOCAL_APIC_NMI,
  MADT_LOCAL_X2APIC,
  MADT_LOCAL_X2APIC_NMI,
  MADT_TYPE_INTERRUPT_SOURCE_OVERRIDE,
  MADT_TYPE_IO_APIC,
  MADT_TYPE_LOCAL_APIC,
  MADT_TYPE_LOCAL_APIC_NMI,
  MADT_TYPE_LOCAL_X2APIC,
  MADT_TYPE_LOCAL_X2APIC_NMI,
} from "../layouts.js";
import type { OverridePolarity, OverrideTrigger, ResolvedPlatform } from "../platform.js";
import { buildSdt } from "../sdt.js";

export const MADT_REVISION = 5;
export const MADT_FLAG_PCAT_COMPAT = 1;
export const MADT_LAPIC_ENABLED = 1;

/** MPS INTI flags (ACPI 6.4 table 5.26; the same bits as the MP spec's). */
export function intiFlags(trigger: OverrideTrigger, polarity: OverridePolarity): number {
  const pol = polarity === "active-high" ? 1 : polarity === "active-low" ? 3 : 0;
  const trig = trigger === "edge" ? 1 : trigger === "level" ? 3 : 0;
  return pol | (trig << 2);
}

/** Whether vCPU `index` with this APIC id is listed as a Processor Local x2APIC. */
export function usesX2apicEntry(index: number, apicId: number): boolean {
  // The xAPIC entry has 8-bit UID and id fields, and 0xFF means "all" in the NMI entry: the spec
  // wants xAPIC entries for every id below 255 and x2APIC entries for the rest.
  return apicId >= 0xff || index >= 0xff;
}

/**
 * The MADT: one Processor Local APIC (or x2APIC) per vCPU, its ACPI processor UID being its index;
 * the I/O APIC; the interrupt source overrides; the LAPIC NMI on LINT1 for all processors.
 */
export function buildMadt(p: ResolvedPlatform): Buffer {
  const parts: Buffer[] = [MADT_FIXED.encode({ localApicAddress: p.localApicAddress, flags: p.pcatCompat ? MADT_FLAG_PCAT_COMPAT : 0 })];
  let anyX2 = false;
  let anyX = false;
  p.vcpus.forEach((v, i) => {
    const flags = v.enabled ? MADT_LAPIC_ENABLED : 0;
    if (usesX2apicEntry(i, v.apicId)) {
      anyX2 = true;
      parts.push(
        MADT_LOCAL_X2APIC.encode({ type: MADT_TYPE_LOCAL_X2APIC, length: MADT_LOCAL_X2APIC.size, x2apicId: v.apicId, flags, processorUid: i }),
      );
    } else {
      anyX = true;
      parts.push(MADT_LOCAL_APIC.encode({ type: MADT_TYPE_LOCAL_APIC, length: MADT_LOCAL_APIC.size, processorUid: i, apicId: v.apicId, flags }));
    }
  });
  parts.push(
    MADT_IO_APIC.encode({
      type: MADT_TYPE_IO_APIC,
      length: MADT_IO_APIC.size,
      ioApicId: p.ioapic.id,
      ioApicAddress: p.ioapic.address,
      gsiBase: p.ioapic.gsiBase,
    }),
  );
  for (const o of p.overrides) {
    parts.push(
      MADT_INTERRUPT_SOURCE_OVERRIDE.encode({
        type: MADT_TYPE_INTERRUPT_SOURCE_OVERRIDE,
        length: MADT_INTERRUPT_SOURCE_OVERRIDE.size,
        bus: 0,
        source: o.source,
        gsi: o.gsi,
        flags: intiFlags(o.trigger, o.polarity),
      }),
    );
  }
  if (p.lapicNmi !== false) {
    if (anyX) {
      parts.push(
        MADT_LOCAL_APIC_NMI.encode({ type: MADT_TYPE_LOCAL_APIC_NMI, length: MADT_LOCAL_APIC_NMI.size, processorUid: 0xff, flags: 0, lint: p.lapicNmi.lint }),
      );
    }
    if (anyX2) {
      parts.push(
        MADT_LOCAL_X2APIC_NMI.encode({
          type: MADT_TYPE_LOCAL_X2APIC_NMI,
          length: MADT_LOCAL_X2APIC_NMI.size,
          flags: 0,
          processorUid: 0xffff_ffff,
          lint: p.lapicNmi.lint,
        }),
      );
    }
  }
  return buildSdt("APIC", MADT_REVISION, Buffer.concat(parts), p.ids);
}
