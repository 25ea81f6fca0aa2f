/** Register classes the decoder names. `gpr` covers every width of the 16 general registers. */
export type RegClass = "gpr" | "seg" | "cr" | "dr" | "xmm" | "ymm" | "mmx" | "st" | "rip";

/** A register operand: class, architectural index and width in bits. */
export interface Reg {
  readonly name: string;
  readonly cls: RegClass;
  /** 0..15 for GPRs (rax=0 ... r15=15); for AH/CH/DH/BH the index of the full register (0..3). */
  readonly index: number;
  readonly bits: number;
  /** AH, CH, DH, BH: bits 8..15 of register `index`. */
  readonly high8?: boolean;
}

export type SegmentName = "es" | "cs" | "ss" | "ds" | "fs" | "gs";
/** Segment registers in their encoding order (ModRM.reg of MOV Sreg, prefix table). */
export const SEGMENTS: readonly SegmentName[] = ["es", "cs", "ss", "ds", "fs", "gs"];

const R64 = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi"];
const R32 = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"];
const R16 = ["ax", "cx", "dx", "bx", "sp", "bp", "si", "di"];
const R8REX = ["al", "cl", "dl", "bl", "spl", "bpl", "sil", "dil"];
const R8LEGACY = ["al", "cl", "dl", "bl", "ah", "ch", "dh", "bh"];

function gprName(index: number, bits: number, rex: boolean): string {
  if (index >= 8) {
    const suffix = bits === 64 ? "" : bits === 32 ? "d" : bits === 16 ? "w" : "b";
    return `r${index}${suffix}`;
  }
  if (bits === 64) return R64[index]!;
  if (bits === 32) return R32[index]!;
  if (bits === 16) return R16[index]!;
  return (rex ? R8REX : R8LEGACY)[index]!;
}

/**
 * A general register of `bits` width. Without a REX prefix, byte registers 4..7 are AH..BH
 * (bits 8..15 of registers 0..3); with any REX prefix they are SPL..DIL.
 */
export function gpr(index: number, bits: number, rex = false): Reg {
  if (bits === 8 && !rex && index >= 4 && index < 8) {
    return { name: R8LEGACY[index]!, cls: "gpr", index: index - 4, bits: 8, high8: true };
  }
  return { name: gprName(index, bits, rex), cls: "gpr", index, bits };
}

export function segReg(index: number): Reg {
  return { name: SEGMENTS[index] ?? `seg${index}`, cls: "seg", index, bits: 16 };
}

export function vecReg(index: number, bits: 128 | 256): Reg {
  return bits === 128 ? { name: `xmm${index}`, cls: "xmm", index, bits } : { name: `ymm${index}`, cls: "ymm", index, bits };
}

export function mmxReg(index: number): Reg {
  return { name: `mm${index & 7}`, cls: "mmx", index: index & 7, bits: 64 };
}

export function ctrlReg(cls: "cr" | "dr", index: number, bits: number): Reg {
  return { name: `${cls}${index}`, cls, index, bits };
}

export const RIP: Reg = { name: "rip", cls: "rip", index: 0, bits: 64 };
export const EIP: Reg = { name: "eip", cls: "rip", index: 0, bits: 32 };
