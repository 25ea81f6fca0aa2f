import { AcpiError } from "../errors.js";
import { buildSdt, type TableIds } from "../sdt.js";

/** XSDT: 64-bit physical addresses of every other table (but the FACS and DSDT, which the FADT holds). */
export function buildXsdt(entries: readonly bigint[], ids: TableIds): Buffer {
  const body = Buffer.alloc(8 * entries.length);
  entries.forEach((a, i) => {
    if (a < 0n || a > 0xffff_ffff_ffff_ffffn) throw new AcpiError("ACPI_ADDRESS_RANGE", `XSDT entry ${a} does not fit 64 bits`);
    body.writeBigUInt64LE(a, 8 * i);
  });
  return buildSdt("XSDT", 1, body, ids);
}

/** RSDT: the same list with 32-bit addresses, for ACPI 1.0 readers. */
export function buildRsdt(entries: readonly bigint[], ids: TableIds): Buffer {
  const body = Buffer.alloc(4 * entries.length);
  entries.forEach((a, i) => {
    if (a < 0n || a > 0xffff_ffffn) throw new AcpiError("ACPI_ADDRESS_RANGE", `RSDT entry 0x${a.toString(16)} does not fit 32 bits`);
    body.writeUInt32LE(Number(a), 4 * i);
  });
  return buildSdt("RSDT", 1, body, ids);
}
