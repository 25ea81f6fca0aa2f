import { RFLAGS, RFLAGS_STATUS } from "@tsvmm/abi";

/** RFLAGS bits (SDM vol. 1 3.4.3), abi's, under the short names the emulator's ALU code reads best with. */
export const { CF, PF, AF, ZF, SF, TF, IF, DF, OF, AC, VM } = RFLAGS;
/** The six arithmetic status flags. */
export const STATUS = RFLAGS_STATUS;

export interface AluResult {
  readonly value: bigint;
  /** New values of the status flags the operation defines (others keep their old value). */
  readonly flags: bigint;
  /** Which status flags the operation writes. */
  readonly mask: bigint;
}

export function maskOf(bits: number): bigint {
  return (1n << BigInt(bits)) - 1n;
}

function parity(v: bigint): bigint {
  let b = Number(v & 0xffn);
  b ^= b >> 4;
  b ^= b >> 2;
  b ^= b >> 1;
  return (b & 1) === 0 ? PF : 0n;
}

/** SF, ZF, PF of a result. */
function szp(r: bigint, bits: number): bigint {
  let f = parity(r);
  if (r === 0n) f |= ZF;
  if ((r >> BigInt(bits - 1)) & 1n) f |= SF;
  return f;
}

export function add(a: bigint, b: bigint, carry: bigint, bits: number): AluResult {
  const m = maskOf(bits);
  const full = a + b + carry;
  const r = full & m;
  let f = szp(r, bits);
  if (full > m) f |= CF;
  if (((a ^ r) & (b ^ r)) >> BigInt(bits - 1) & 1n) f |= OF;
  if ((a ^ b ^ r) & 0x10n) f |= AF;
  return { value: r, flags: f, mask: STATUS };
}

export function sub(a: bigint, b: bigint, borrow: bigint, bits: number): AluResult {
  const m = maskOf(bits);
  const r = (a - b - borrow) & m;
  let f = szp(r, bits);
  if (a < b + borrow) f |= CF;
  if (((a ^ b) & (a ^ r)) >> BigInt(bits - 1) & 1n) f |= OF;
  if ((a ^ b ^ r) & 0x10n) f |= AF;
  return { value: r, flags: f, mask: STATUS };
}

/**
 * AND/OR/XOR/TEST: CF = OF = 0, SF/ZF/PF from the result. AF is undefined (SDM); this emulator
 * clears it.
 */
export function logic(r: bigint, bits: number): AluResult {
  return { value: r & maskOf(bits), flags: szp(r & maskOf(bits), bits), mask: STATUS };
}

/** INC/DEC: like ADD/SUB 1 but CF is left alone. */
export function incDec(a: bigint, dec: boolean, bits: number): AluResult {
  const r = dec ? sub(a, 1n, 0n, bits) : add(a, 1n, 0n, bits);
  return { value: r.value, flags: r.flags & ~CF, mask: STATUS & ~CF };
}

export function neg(a: bigint, bits: number): AluResult {
  const r = sub(0n, a, 0n, bits);
  return r;
}

export type ShiftOp = "rol" | "ror" | "rcl" | "rcr" | "shl" | "sal" | "shr" | "sar";

/**
 * Group-2 shifts and rotates (SDM vol. 2 SAL/SAR/SHL/SHR and RCL/RCR/ROL/ROR). The count is
 * masked to 5 bits (6 with 64-bit operands); a masked count of 0 changes neither the value nor
 * any flag. Undefined results, and this emulator's choice:
 * - OF when the count is not 1: computed with the count-1 formula on the final result;
 * - AF after SHL/SHR/SAR with a non-zero count: cleared;
 * - CF after SHL/SHR when the count is at least the operand width (8/16-bit): the last bit shifted out (0).
 */
export function shift(op: ShiftOp, a: bigint, countIn: bigint, cfIn: boolean, bits: number): AluResult {
  const m = maskOf(bits);
  const B = BigInt(bits);
  const count = countIn & (bits === 64 ? 0x3fn : 0x1fn);
  if (count === 0n) return { value: a, flags: 0n, mask: 0n };
  const msb = (v: bigint): bigint => (v >> (B - 1n)) & 1n;
  switch (op) {
    case "shl":
    case "sal": {
      const r = (a << count) & m;
      const cf = count <= B ? (a >> (B - count)) & 1n : 0n;
      let f = szp(r, bits) | (cf ? CF : 0n);
      if (msb(r) ^ cf) f |= OF;
      return { value: r, flags: f, mask: STATUS };
    }
    case "shr": {
      const r = a >> count;
      const cf = (a >> (count - 1n)) & 1n;
      let f = szp(r, bits) | (cf ? CF : 0n);
      if (msb(a)) f |= OF;
      return { value: r, flags: f, mask: STATUS };
    }
    case "sar": {
      const s = BigInt.asIntN(bits, a);
      const r = (s >> count) & m;
      const cf = (s >> (count - 1n)) & 1n;
      const f = szp(r, bits) | (cf ? CF : 0n);
      return { value: r, flags: f, mask: STATUS };
    }
    case "rol": {
      const c = count % B;
      const r = c === 0n ? a : ((a << c) | (a >> (B - c))) & m;
      const cf = r & 1n;
      let f = cf ? CF : 0n;
      if (msb(r) ^ cf) f |= OF;
      return { value: r, flags: f, mask: CF | OF };
    }
    case "ror": {
      const c = count % B;
      const r = c === 0n ? a : ((a >> c) | (a << (B - c))) & m;
      const cf = msb(r);
      let f = cf ? CF : 0n;
      if (msb(r) ^ ((r >> (B - 2n)) & 1n)) f |= OF;
      return { value: r, flags: f, mask: CF | OF };
    }
    case "rcl":
    case "rcr": {
      // Rotate through a (bits+1)-wide value whose top bit is CF.
      const W = B + 1n;
      const c = count % W;
      const wide = (cfIn ? 1n << B : 0n) | a;
      const wm = (1n << W) - 1n;
      const rot = c === 0n ? wide : op === "rcl" ? ((wide << c) | (wide >> (W - c))) & wm : ((wide >> c) | (wide << (W - c))) & wm;
      const r = rot & m;
      const cf = (rot >> B) & 1n;
      let f = cf ? CF : 0n;
      if (op === "rcl" ? msb(r) ^ cf : msb(r) ^ ((r >> (B - 2n)) & 1n)) f |= OF;
      return { value: r, flags: f, mask: CF | OF };
    }
  }
}
