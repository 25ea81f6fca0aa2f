import { fixChecksum } from "../checksum.js";
import { AcpiError } from "../errors.js";
import { RSDP, RSDP_V1_LENGTH } from "../layouts.js";
import { asciiField } from "../sdt.js";

export const RSDP_SIGNATURE = "RSD PTR ";
/** Where OSPM looks for the RSDP in the BIOS area: every 16-byte boundary. */
export const RSDP_ALIGNMENT = 16;

/** RSDP revision 2 (ACPI 2.0+): both the 20-byte and the 36-byte checksum are set. */
export function buildRsdp(o: { xsdtAddress: bigint; rsdtAddress?: number; oemId: string }): Buffer {
  const rsdt = o.rsdtAddress ?? 0;
  if (!Number.isInteger(rsdt) || rsdt < 0 || rsdt > 0xffff_ffff) throw new AcpiError("ACPI_ADDRESS_RANGE", `RSDT address ${rsdt} does not fit 32 bits`);
  const b = RSDP.encode({
    signature: Buffer.from(RSDP_SIGNATURE, "latin1"),
    checksum: 0,
    oemId: asciiField(o.oemId, 6, "oemId"),
    revision: 2,
    rsdtAddress: rsdt,
    length: RSDP.size,
    xsdtAddress: o.xsdtAddress,
    extendedChecksum: 0,
  });
  fixChecksum(b, RSDP.offsetOf("checksum"), 0, RSDP_V1_LENGTH);
  fixChecksum(b, RSDP.offsetOf("extendedChecksum"), 0, RSDP.size);
  return b;
}
