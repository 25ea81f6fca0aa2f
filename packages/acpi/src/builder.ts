import type { GuestMemory } from "@tsvmm/abi";
import { AcpiError } from "./errors.js";
import { FADT, RSDP, SDT_HEADER } from "./layouts.js";
import { type AcpiPlatform, type ResolvedPlatform, resolvePlatform } from "./platform.js";
import { buildDsdt } from "./tables/dsdt.js";
import { buildFacs, buildFadt, FACS_ALIGNMENT } from "./tables/fadt.js";
import { buildMadt } from "./tables/madt.js";
import { buildRsdp, RSDP_ALIGNMENT } from "./tables/rsdp.js";
import { buildRsdt, buildXsdt } from "./tables/xsdt.js";

/** The BIOS read-only area an OS scans for "RSD PTR " (16-byte steps) when no loader told it. */
export const BIOS_RSDP_AREA_START = 0xe_0000;
export const BIOS_RSDP_AREA_END = 0x10_0000;

/** Alignment of each table after the RSDP (the FACS needs 64). */
export const TABLE_ALIGNMENT = 16;

export interface AcpiLayoutOptions {
  /** Guest-physical address of the table blob (16-byte aligned). The RSDP goes here unless `rsdpAddress` says otherwise. */
  readonly base: number;
  /** Put the RSDP on its own at this address (16-byte aligned, outside the blob). */
  readonly rsdpAddress?: number;
  /** Also build an RSDT (32-bit pointers) for ACPI 1.0 readers. Default true; needs the blob below 4 GiB. */
  readonly rsdt?: boolean;
  /** More complete tables (header and checksum included) to list in the XSDT/RSDT, e.g. an HPET or MCFG. */
  readonly extraTables?: readonly Uint8Array[];
}

/** Where one table landed. */
export interface PlacedTable {
  /** "RSD PTR " for the RSDP, else the 4-character signature ("FACP" is the FADT, "APIC" the MADT). */
  readonly signature: string;
  readonly address: number;
  readonly length: number;
}

export interface AcpiTables {
  /** Address to hand the guest: PVH `rsdp_paddr`, boot_params `acpi_rsdp_addr`, or found by the BIOS-area scan. */
  readonly rsdpAddress: number;
  /** Address of `bytes`. */
  readonly base: number;
  /** The blob at `base`: the RSDP (unless placed apart) and every table, pointers fixed up. */
  readonly bytes: Buffer;
  /** Every table with its address, in blob order (the RSDP first). */
  readonly tables: readonly PlacedTable[];
  /** What {@link AcpiTables.writeTo} writes: the blob, plus the RSDP when it is placed apart. */
  readonly segments: readonly { readonly address: number; readonly bytes: Buffer }[];
  /** The platform as the tables describe it (defaults filled in). */
  readonly platform: ResolvedPlatform;
  /** Write every segment to guest memory (throws GuestMemoryError if memory does not back it). */
  writeTo(mem: GuestMemory): void;
}

const align = (n: number, a: number): number => Math.ceil(n / a) * a;

function checkAddress(n: number, what: string, alignment: number): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new AcpiError("ACPI_ADDRESS_RANGE", `${what} ${n} is not a non-negative safe integer`);
  if (n % alignment !== 0) throw new AcpiError("ACPI_ADDRESS_RANGE", `${what} 0x${n.toString(16)} is not ${alignment}-byte aligned`);
}

/**
 * Build RSDP, XSDT (+RSDT), FADT, FACS, DSDT and MADT for `platform`, laid out contiguously at
 * `layout.base` in that order, each table 16-byte aligned (the FACS 64), with every pointer set
 * to where its target lands.
 */
export function buildAcpiTables(platform: AcpiPlatform, layout: AcpiLayoutOptions): AcpiTables {
  const p = resolvePlatform(platform);
  checkAddress(layout.base, "ACPI table base", RSDP_ALIGNMENT);
  const withRsdt = layout.rsdt ?? true;
  const extra = (layout.extraTables ?? []).map((t, i) => {
    if (t.length < SDT_HEADER.size) throw new AcpiError("ACPI_INVALID_ARGUMENT", `extraTables[${i}] is shorter than a table header`);
    const h = SDT_HEADER.decode(t);
    if (h.length !== t.length) throw new AcpiError("ACPI_INVALID_ARGUMENT", `extraTables[${i}]: header length ${h.length} != ${t.length} bytes`);
    return { signature: h.signature.toString("latin1"), bytes: Buffer.from(t) };
  });

  // Tables whose content does not depend on where anything is.
  const dsdt = buildDsdt(p);
  const madt = buildMadt(p);
  const facs = buildFacs();
  const pointed = 2 + extra.length; // FADT, MADT, extras
  const sizes = { xsdt: SDT_HEADER.size + 8 * pointed, rsdt: SDT_HEADER.size + 4 * pointed, fadt: FADT.size };

  const rsdpApart = layout.rsdpAddress !== undefined;
  let off = 0;
  const place = (len: number, alignment = TABLE_ALIGNMENT): number => {
    off = align(off, alignment);
    const at = layout.base + off;
    off += len;
    return at;
  };
  const rsdpAt = rsdpApart ? layout.rsdpAddress! : place(RSDP.size);
  if (rsdpApart) checkAddress(rsdpAt, "RSDP address", RSDP_ALIGNMENT);
  const xsdtAt = place(sizes.xsdt);
  const rsdtAt = withRsdt ? place(sizes.rsdt) : 0;
  const fadtAt = place(sizes.fadt);
  const facsAt = place(facs.length, FACS_ALIGNMENT);
  const dsdtAt = place(dsdt.length);
  const madtAt = place(madt.length);
  const extraAt = extra.map((e) => place(e.bytes.length));
  const total = off;
  if (rsdpApart && rsdpAt < layout.base + total && layout.base < rsdpAt + RSDP.size) {
    throw new AcpiError("ACPI_ADDRESS_RANGE", `RSDP at 0x${rsdpAt.toString(16)} overlaps the tables at 0x${layout.base.toString(16)}..0x${(layout.base + total).toString(16)}`);
  }
  if (!Number.isSafeInteger(layout.base + total)) throw new AcpiError("ACPI_ADDRESS_RANGE", "ACPI tables end past 2^53");
  if (withRsdt && layout.base + total > 0x1_0000_0000) {
    throw new AcpiError("ACPI_ADDRESS_RANGE", "an RSDT needs every table below 4 GiB; pass rsdt: false");
  }

  const entries = [fadtAt, madtAt, ...extraAt].map(BigInt);
  const fadt = buildFadt(p, { dsdt: BigInt(dsdtAt), facs: BigInt(facsAt) });
  const xsdt = buildXsdt(entries, p.ids);
  const rsdt = withRsdt ? buildRsdt(entries, p.ids) : undefined;
  const rsdp = buildRsdp({ xsdtAddress: BigInt(xsdtAt), rsdtAddress: withRsdt ? rsdtAt : 0, oemId: p.ids.oemId });

  const bytes = Buffer.alloc(total);
  const tables: PlacedTable[] = [];
  const put = (signature: string, at: number, b: Buffer): void => {
    if (at >= layout.base && at < layout.base + total) bytes.set(b, at - layout.base);
    tables.push({ signature, address: at, length: b.length });
  };
  put("RSD PTR ", rsdpAt, rsdp);
  put("XSDT", xsdtAt, xsdt);
  if (rsdt !== undefined) put("RSDT", rsdtAt, rsdt);
  put("FACP", fadtAt, fadt);
  put("FACS", facsAt, facs);
  put("DSDT", dsdtAt, dsdt);
  put("APIC", madtAt, madt);
  extra.forEach((e, i) => {
    put(e.signature, extraAt[i]!, e.bytes);
  });

  const segments: { address: number; bytes: Buffer }[] = [{ address: layout.base, bytes }];
  if (rsdpApart) segments.push({ address: rsdpAt, bytes: rsdp });
  return {
    rsdpAddress: rsdpAt,
    base: layout.base,
    bytes,
    tables,
    segments,
    platform: p,
    writeTo(mem: GuestMemory): void {
      // Check every segment first so a failure writes nothing.
      for (const s of segments) {
        if (!mem.contains(s.address, s.bytes.length)) mem.slice(s.address, s.bytes.length);
      }
      for (const s of segments) mem.write(s.address, s.bytes);
    },
  };
}
