// DR6 and DR7 (SDM Vol. 3B §18.2, APM Vol. 2 §13.1.1): the bits both vendors define alike.
// Intel's DR6.RTM/DR7.RTM and the bus-lock bit DR6.BLD are left to the vendor packages.

/** DR6, the debug status register. */
export const DR6 = {
  /** Bn: breakpoint condition n (0–3) was met. */
  B0: 1n << 0n,
  B1: 1n << 1n,
  B2: 1n << 2n,
  B3: 1n << 3n,
  /** The four Bn bits. */
  B_MASK: 0xfn,
  /** Debug-register access detected (DR7.GD). */
  BD: 1n << 13n,
  /** Single step. */
  BS: 1n << 14n,
  /** Task switch to a TSS with the T bit. */
  BT: 1n << 15n,
} as const;

/** DR6 at reset and after a #DB handler clears it: the reserved low bits read as 1. */
export const DR6_INIT = 0xffff_0ff0n;
/** DR6 bits 63:32 are must-be-zero (MOV to DR6 faults; VMRUN checks them). */
export const DR6_MBZ = 0xffff_ffff_0000_0000n;

/** DR7, the debug control register. */
export const DR7 = {
  /** Ln is bit 2n, Gn bit 2n + 1 (n = 0–3). */
  L0: 1n << 0n,
  G0: 1n << 1n,
  L1: 1n << 2n,
  G1: 1n << 3n,
  L2: 1n << 4n,
  G2: 1n << 5n,
  L3: 1n << 6n,
  G3: 1n << 7n,
  LE: 1n << 8n,
  GE: 1n << 9n,
  /** Bit 10 is reserved and reads as 1. */
  FIXED1: 1n << 10n,
  GD: 1n << 13n,
} as const;

/** R/Wn is the 2-bit field at DR7_RW_SHIFT + 4n, LENn the one at DR7_LEN_SHIFT + 4n. */
export const DR7_RW_SHIFT = 16n;
export const DR7_LEN_SHIFT = 18n;

/** R/Wn encodings; IO needs CR4.DE. */
export const DR7_RW = { EXECUTE: 0, WRITE: 1, IO: 2, READ_WRITE: 3 } as const;
/** LENn encodings: 10b (eight bytes) is defined in long mode only. */
export const DR7_LEN = { BYTES_1: 0, BYTES_2: 1, BYTES_8: 2, BYTES_4: 3 } as const;

/** DR7 at reset. */
export const DR7_INIT = 0x400n;
/** DR7 bits 63:32 are must-be-zero (MOV to DR7 faults; VMRUN checks them). */
export const DR7_MBZ = 0xffff_ffff_0000_0000n;
