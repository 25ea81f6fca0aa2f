// RFLAGS (SDM Vol. 1 §3.4.3, Vol. 3A §2.3; APM Vol. 2 §3.1.6): the same layout on both vendors.

// Only masks in this table, so that OR-ing its values is meaningful.
export const RFLAGS = {
  CF: 1n << 0n,
  /** Bit 1: reserved, always reads 1 and must be written 1 where a check looks (VM entry). */
  FIXED1: 1n << 1n,
  PF: 1n << 2n,
  AF: 1n << 4n,
  ZF: 1n << 6n,
  SF: 1n << 7n,
  TF: 1n << 8n,
  IF: 1n << 9n,
  DF: 1n << 10n,
  OF: 1n << 11n,
  IOPL_MASK: 3n << 12n,
  NT: 1n << 14n,
  RF: 1n << 16n,
  VM: 1n << 17n,
  AC: 1n << 18n,
  VIF: 1n << 19n,
  VIP: 1n << 20n,
  ID: 1n << 21n,
} as const;

/** Where RFLAGS.IOPL starts. */
export const RFLAGS_IOPL_SHIFT = 12n;

/** Reserved bits that must be 0: 63:22, 15, 5 and 3. */
export const RFLAGS_RESERVED = (0xffff_ffff_ffff_ffffn & ~((1n << 22n) - 1n)) | (1n << 15n) | (1n << 5n) | (1n << 3n);

/** The six arithmetic status flags. */
export const RFLAGS_STATUS = RFLAGS.CF | RFLAGS.PF | RFLAGS.AF | RFLAGS.ZF | RFLAGS.SF | RFLAGS.OF;
