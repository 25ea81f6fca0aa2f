import type { GuestAddress, GuestMemory } from "@tsvmm/abi";
import { BIOS_RSDP_AREA_END, BIOS_RSDP_AREA_START } from "./builder.js";
import { byteSum } from "./checksum.js";
import { AcpiError } from "./errors.js";
import {
  FADT,
  type Fadt,
  MADT_ENTRY_HEADER,
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
  RSDP,
  RSDP_V1_LENGTH,
  SDT_HEADER,
  type SdtHeader,
} from "./layouts.js";
import { RSDP_ALIGNMENT, RSDP_SIGNATURE } from "./tables/rsdp.js";

// A reader of tables in guest memory, as an OS would walk them: RSDP -> XSDT (or RSDT) -> tables.
// Everything read is untrusted: lengths are bounded and checksums checked before use.

/** Tables longer than this are refused (a bad length field must not make us read gigabytes). */
export const MAX_TABLE_LENGTH = 1 << 20;

export interface ParsedRsdp {
  readonly address: number;
  readonly revision: number;
  readonly oemId: string;
  readonly rsdtAddress: number;
  /** 0 for a revision-0 RSDP. */
  readonly xsdtAddress: bigint;
}

function toNumber(a: GuestAddress): number {
  return typeof a === "bigint" ? Number(a) : a;
}

function ascii(b: Buffer): string {
  return b.toString("latin1");
}

/** Read and check the RSDP at `address`: signature and both checksums (the second from revision 2). */
export function parseRsdp(mem: GuestMemory, address: GuestAddress): ParsedRsdp {
  const v1 = mem.read(address, RSDP_V1_LENGTH);
  if (ascii(v1.subarray(0, 8)) !== RSDP_SIGNATURE) throw new AcpiError("ACPI_NOT_FOUND", `no "RSD PTR " at 0x${address.toString(16)}`);
  if (byteSum(v1) !== 0) throw new AcpiError("ACPI_BAD_CHECKSUM", `RSDP at 0x${address.toString(16)}: the 20-byte checksum does not sum to 0`);
  const revision = v1[RSDP.offsetOf("revision")]!;
  const full = Buffer.alloc(RSDP.size);
  v1.copy(full);
  if (revision >= 2) {
    const b = mem.read(address, RSDP.size);
    const length = RSDP.decode(b).length;
    if (length < RSDP.size || length > 4096) throw new AcpiError("ACPI_MALFORMED", `RSDP length ${length}`);
    if (byteSum(mem.read(address, length)) !== 0) throw new AcpiError("ACPI_BAD_CHECKSUM", "RSDP extended checksum does not sum to 0");
    b.copy(full);
  }
  const r = RSDP.decode(full);
  return { address: toNumber(address), revision, oemId: ascii(r.oemId), rsdtAddress: r.rsdtAddress, xsdtAddress: revision >= 2 ? r.xsdtAddress : 0n };
}

/** The first valid RSDP on a 16-byte boundary in `[start, end)`, as Linux scans the BIOS area. */
export function findRsdp(mem: GuestMemory, start = BIOS_RSDP_AREA_START, end = BIOS_RSDP_AREA_END): number | undefined {
  for (let a = Math.ceil(start / RSDP_ALIGNMENT) * RSDP_ALIGNMENT; a + RSDP_V1_LENGTH <= end; a += RSDP_ALIGNMENT) {
    if (!mem.contains(a, 8) || ascii(mem.read(a, 8)) !== RSDP_SIGNATURE) continue;
    try {
      parseRsdp(mem, a);
      return a;
    } catch {
      // Not an RSDP: a bad checksum or length (AcpiError), or 20/36 bytes or a declared length
      // running past guest memory (GuestMemoryError); stray bytes must not stop the scan.
    }
  }
  return undefined;
}

/** One system description table read from guest memory. */
export interface SdtView {
  readonly signature: string;
  readonly address: number;
  readonly header: SdtHeader;
  /** The whole table, header included (a copy). */
  readonly bytes: Buffer;
}

/** Read the table at `address`, checking its length and checksum. */
export function readSdt(mem: GuestMemory, address: GuestAddress): SdtView {
  const header = SDT_HEADER.decode(mem.read(address, SDT_HEADER.size));
  if (header.length < SDT_HEADER.size || header.length > MAX_TABLE_LENGTH) {
    throw new AcpiError("ACPI_MALFORMED", `table at 0x${address.toString(16)} has length ${header.length}`);
  }
  const bytes = mem.read(address, header.length);
  const signature = ascii(header.signature);
  if (byteSum(bytes) !== 0) throw new AcpiError("ACPI_BAD_CHECKSUM", `${signature} at 0x${address.toString(16)}: checksum does not sum to 0`);
  return { signature, address: toNumber(address), header, bytes };
}

export interface AcpiTableSet {
  readonly rsdp: ParsedRsdp;
  /** The XSDT (revision >= 2 with a non-zero address) or else the RSDT. */
  readonly root: SdtView;
  /** Every table the root lists, then the DSDT the FADT points to. */
  readonly tables: readonly SdtView[];
  /** The first table with this signature, if any. */
  find(signature: string): SdtView | undefined;
}

/** Walk RSDP -> XSDT/RSDT -> every table (and the DSDT through the FADT), checking each. */
export function readAcpiTables(mem: GuestMemory, rsdpAddress: GuestAddress): AcpiTableSet {
  const rsdp = parseRsdp(mem, rsdpAddress);
  const useX = rsdp.revision >= 2 && rsdp.xsdtAddress !== 0n;
  const root = readSdt(mem, useX ? rsdp.xsdtAddress : rsdp.rsdtAddress);
  if (root.signature !== (useX ? "XSDT" : "RSDT")) throw new AcpiError("ACPI_MALFORMED", `root table is ${root.signature}`);
  const width = useX ? 8 : 4;
  const body = root.bytes.subarray(SDT_HEADER.size);
  if (body.length % width !== 0) throw new AcpiError("ACPI_MALFORMED", `${root.signature} body of ${body.length} bytes`);
  const tables: SdtView[] = [];
  for (let i = 0; i < body.length; i += width) {
    const a = useX ? body.readBigUInt64LE(i) : BigInt(body.readUInt32LE(i));
    tables.push(readSdt(mem, a));
  }
  const facp = tables.find((t) => t.signature === "FACP");
  if (facp !== undefined) {
    const f = parseFadt(facp.bytes);
    const d = f.xDsdt !== 0n ? f.xDsdt : BigInt(f.dsdt);
    if (d !== 0n) tables.push(readSdt(mem, d));
  }
  return { rsdp, root, tables, find: (s) => tables.find((t) => t.signature === s) };
}

/** Decode a FADT; fields past the end of an older, shorter FADT read as 0. */
export function parseFadt(table: Uint8Array): Fadt {
  const b = Buffer.alloc(Math.max(FADT.size, table.length));
  b.set(table);
  return FADT.decode(b);
}

export interface MadtLocalApicInfo {
  readonly kind: "local-apic" | "local-x2apic";
  readonly processorUid: number;
  readonly apicId: number;
  readonly enabled: boolean;
}
export interface MadtIoApicInfo {
  readonly id: number;
  readonly address: number;
  readonly gsiBase: number;
}
export interface MadtOverrideInfo {
  readonly bus: number;
  readonly source: number;
  readonly gsi: number;
  /** MPS INTI flags: polarity bits 0-1, trigger bits 2-3. */
  readonly flags: number;
}
export interface MadtNmiInfo {
  readonly kind: "local-apic" | "local-x2apic";
  readonly processorUid: number;
  readonly flags: number;
  readonly lint: number;
}
export interface ParsedMadt {
  readonly localApicAddress: number;
  readonly flags: number;
  readonly localApics: readonly MadtLocalApicInfo[];
  readonly ioApics: readonly MadtIoApicInfo[];
  readonly overrides: readonly MadtOverrideInfo[];
  readonly nmis: readonly MadtNmiInfo[];
  /** Entries of other types, kept as type and length. */
  readonly other: readonly { readonly type: number; readonly length: number }[];
}

/** Parse a MADT (header included), refusing entries that run past the table or are too short. */
export function parseMadt(table: Uint8Array): ParsedMadt {
  const t = Buffer.from(table);
  if (t.length < SDT_HEADER.size + MADT_FIXED.size) throw new AcpiError("ACPI_MALFORMED", `MADT of ${t.length} bytes is shorter than its fixed part`);
  const header = SDT_HEADER.decode(t);
  if (ascii(header.signature) !== "APIC") throw new AcpiError("ACPI_MALFORMED", `not a MADT: ${ascii(header.signature)}`);
  if (header.length < SDT_HEADER.size + MADT_FIXED.size || header.length > t.length) throw new AcpiError("ACPI_MALFORMED", `MADT length ${header.length} > ${t.length} bytes given`);
  const fixed = MADT_FIXED.decode(t, SDT_HEADER.size);
  const localApics: MadtLocalApicInfo[] = [];
  const ioApics: MadtIoApicInfo[] = [];
  const overrides: MadtOverrideInfo[] = [];
  const nmis: MadtNmiInfo[] = [];
  const other: { type: number; length: number }[] = [];
  let off = SDT_HEADER.size + MADT_FIXED.size;
  const end = header.length;
  while (off < end) {
    if (end - off < MADT_ENTRY_HEADER.size) throw new AcpiError("ACPI_MALFORMED", `MADT entry header at ${off} runs past the table`);
    const { type, length } = MADT_ENTRY_HEADER.decode(t, off);
    if (length < MADT_ENTRY_HEADER.size || off + length > end) throw new AcpiError("ACPI_MALFORMED", `MADT entry type ${type} at ${off} has length ${length}`);
    const need = (size: number): void => {
      if (length < size) throw new AcpiError("ACPI_MALFORMED", `MADT entry type ${type} at ${off}: length ${length} < ${size}`);
    };
    switch (type) {
      case MADT_TYPE_LOCAL_APIC: {
        need(MADT_LOCAL_APIC.size);
        const e = MADT_LOCAL_APIC.decode(t, off);
        localApics.push({ kind: "local-apic", processorUid: e.processorUid, apicId: e.apicId, enabled: (e.flags & 1) !== 0 });
        break;
      }
      case MADT_TYPE_LOCAL_X2APIC: {
        need(MADT_LOCAL_X2APIC.size);
        const e = MADT_LOCAL_X2APIC.decode(t, off);
        localApics.push({ kind: "local-x2apic", processorUid: e.processorUid, apicId: e.x2apicId, enabled: (e.flags & 1) !== 0 });
        break;
      }
      case MADT_TYPE_IO_APIC: {
        need(MADT_IO_APIC.size);
        const e = MADT_IO_APIC.decode(t, off);
        ioApics.push({ id: e.ioApicId, address: e.ioApicAddress, gsiBase: e.gsiBase });
        break;
      }
      case MADT_TYPE_INTERRUPT_SOURCE_OVERRIDE: {
        need(MADT_INTERRUPT_SOURCE_OVERRIDE.size);
        const e = MADT_INTERRUPT_SOURCE_OVERRIDE.decode(t, off);
        overrides.push({ bus: e.bus, source: e.source, gsi: e.gsi, flags: e.flags });
        break;
      }
      case MADT_TYPE_LOCAL_APIC_NMI: {
        need(MADT_LOCAL_APIC_NMI.size);
        const e = MADT_LOCAL_APIC_NMI.decode(t, off);
        nmis.push({ kind: "local-apic", processorUid: e.processorUid, flags: e.flags, lint: e.lint });
        break;
      }
      case MADT_TYPE_LOCAL_X2APIC_NMI: {
        need(MADT_LOCAL_X2APIC_NMI.size);
        const e = MADT_LOCAL_X2APIC_NMI.decode(t, off);
        nmis.push({ kind: "local-x2apic", processorUid: e.processorUid, flags: e.flags, lint: e.lint });
        break;
      }
      default:
        other.push({ type, length });
    }
    off += length;
  }
  return { localApicAddress: fixed.localApicAddress, flags: fixed.flags, localApics, ioApics, overrides, nmis, other };
}
