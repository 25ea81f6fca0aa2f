import { TsvmmError } from "@tsvmm/abi";

/** Every error code `@tsvmm/acpi` throws. Stable: programs may switch on them. */
export type AcpiErrorCode =
  /** A platform description or encoder argument is out of its domain (APIC id, port, name, …). */
  | "ACPI_INVALID_ARGUMENT"
  /** An address does not fit where it must go (a 32-bit field, a legacy area) or tables overlap. */
  | "ACPI_ADDRESS_RANGE"
  /** A value is too large for its AML encoding (PkgLength over 2^28, a Package over 255 elements). */
  | "ACPI_AML_TOO_LARGE"
  /** Parsing found no RSDP / MP floating pointer, or a bad signature. */
  | "ACPI_NOT_FOUND"
  /** Parsing found a checksum that does not sum to zero. */
  | "ACPI_BAD_CHECKSUM"
  /** Parsing found a length or entry that does not fit the table holding it. */
  | "ACPI_MALFORMED";

export class AcpiError extends TsvmmError<AcpiErrorCode> {}
