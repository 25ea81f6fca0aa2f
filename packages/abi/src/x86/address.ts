import { TsvmmError } from "../errors.js";

// Canonical linear addresses (SDM Vol. 1 §3.3.7.1, APM Vol. 2 §5.3.1): with a linear-address
// width of N bits (48 with 4-level paging, 57 with 5-level), bits 63:N−1 are all equal.

/** A linear-address width outside 32..64, or an address that is not a u64. */
export class AddressWidthError extends TsvmmError<"ADDRESS_INVALID_WIDTH"> {
  constructor(width: number) {
    super("ADDRESS_INVALID_WIDTH", `linear-address width ${width} is not an integer in 32..64`);
  }
}

const U64 = 0xffff_ffff_ffff_ffffn;
// The two widths in use get precomputed constants: callers check many addresses per state and the
// BigInt conversions of the general case are measurable there.
const TOP48 = 0x1ffffn;
const TOP57 = 0xffn;

function checkWidth(width: number): void {
  if (!Number.isInteger(width) || width < 32 || width > 64) throw new AddressWidthError(width);
}

/** Whether `v` (a u64) is canonical for a `width`-bit linear address space. */
export function isCanonical(v: bigint, width: number): boolean {
  if (width === 48) {
    const top = v >> 47n;
    return top === 0n || top === TOP48;
  }
  if (width === 57) {
    const top = v >> 56n;
    return top === 0n || top === TOP57;
  }
  checkWidth(width);
  const top = v >> BigInt(width - 1);
  return top === 0n || top === (1n << BigInt(65 - width)) - 1n;
}

/** `v` with bits 63:width sign-extended from bit width−1 (what VMRUN does to loaded bases). */
export function canonicalize(v: bigint, width: number): bigint {
  checkWidth(width);
  const w = BigInt(width);
  const low = v & ((1n << w) - 1n);
  return (low >> (w - 1n)) & 1n ? (U64 & ~((1n << w) - 1n)) | low : low;
}

/** The linear-address width CR4.LA57 selects in IA-32e mode: 57 or 48. */
export function linearAddressWidth(la57: boolean): 48 | 57 {
  return la57 ? 57 : 48;
}
