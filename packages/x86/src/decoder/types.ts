import type { Reg, SegmentName } from "./registers.js";

/**
 * The processor mode an instruction is decoded in. Compatibility mode decodes exactly like
 * protected mode with the same CS.D, so `protected16`/`protected32` cover both.
 */
export type CpuMode = "real" | "v86" | "protected16" | "protected32" | "long64";

/** Which opcode table the opcode byte indexes. VEX/EVEX/XOP name theirs by map number. */
export type OpcodeMap = "primary" | "0f" | "0f38" | "0f3a" | "3dnow" | "map5" | "map6" | "xop8" | "xop9" | "xopa";

export type Encoding = "legacy" | "vex" | "evex" | "xop";

export interface RexPrefix {
  readonly w: boolean;
  readonly r: boolean;
  readonly x: boolean;
  readonly b: boolean;
}

export interface VexPrefix {
  /** 2 for C5, 3 for C4 (and XOP 8F). */
  readonly size: 2 | 3;
  readonly r: boolean;
  readonly x: boolean;
  readonly b: boolean;
  readonly w: boolean;
  /** The extra source register (VEX.vvvv, already inverted). */
  readonly vvvv: number;
  /** VEX.L: 0 = 128-bit, 1 = 256-bit. */
  readonly l: number;
  /** Implied mandatory prefix: 0 none, 1 = 66, 2 = F3, 3 = F2. */
  readonly pp: number;
  readonly mmmmm: number;
}

export interface EvexPrefix {
  readonly map: number;
  readonly w: boolean;
  readonly vvvv: number;
  readonly pp: number;
  /** Vector length L'L (0..3). */
  readonly ll: number;
  readonly z: boolean;
  readonly b: boolean;
  readonly aaa: number;
}

export interface Prefixes {
  /** Every prefix byte in order, legacy and REX (not VEX/EVEX). */
  readonly bytes: readonly number[];
  readonly lock: boolean;
  /** The last of F2/F3, if any: `rep` (F3) or `repne` (F2). */
  readonly rep: "rep" | "repne" | undefined;
  /** The segment-override prefix in effect: the last one; in 64-bit mode the last FS/GS (ES/CS/SS/DS are ignored there). */
  readonly segment: SegmentName | undefined;
  readonly operandSize: boolean;
  readonly addressSize: boolean;
  /** REX that applies (a REX followed by a legacy prefix is ignored and not recorded here). */
  readonly rex: RexPrefix | undefined;
  readonly vex: VexPrefix | undefined;
  readonly evex: EvexPrefix | undefined;
}

export interface RegOperand {
  readonly kind: "reg";
  readonly reg: Reg;
}

export interface MemOperand {
  readonly kind: "mem";
  /** Access width in bits; 0 when the instruction does not access memory through it (LEA) or the size varies (XSAVE). */
  readonly bits: number;
  /** Effective segment: the override if any, else DS, or SS for RSP/RBP-based forms. */
  readonly segment: SegmentName;
  readonly base: Reg | undefined;
  readonly index: Reg | undefined;
  readonly scale: 1 | 2 | 4 | 8;
  /** Signed displacement. With `ripRelative` it is relative to the next instruction. */
  readonly disp: bigint;
  readonly ripRelative: boolean;
  readonly addressBits: 16 | 32 | 64;
  /** A moffs operand (A0-A3): absolute offset, no ModRM. */
  readonly absolute: boolean;
}

export interface ImmOperand {
  readonly kind: "imm";
  /** The value as the instruction uses it: sign- or zero-extended to `bits`, two's complement, unsigned. */
  readonly value: bigint;
  readonly bits: number;
  /** Relative branch target offset (Jb/Jz): `value` is the signed displacement from the next instruction. */
  readonly relative: boolean;
}

/** A far pointer immediate (Ap): selector and offset. */
export interface FarOperand {
  readonly kind: "far";
  readonly selector: number;
  readonly offset: number;
}

export type Operand = RegOperand | MemOperand | ImmOperand | FarOperand;

export interface ModRM {
  readonly mod: number;
  /** Raw 3-bit reg field. */
  readonly reg: number;
  /** Raw 3-bit rm field. */
  readonly rm: number;
}

export interface Sib {
  readonly scale: number;
  readonly index: number;
  readonly base: number;
}

/** A decoded instruction. */
export interface Instruction {
  readonly mode: CpuMode;
  /** Total length in bytes, prefixes included (1..15). */
  readonly length: number;
  readonly bytes: Uint8Array;
  readonly prefixes: Prefixes;
  readonly encoding: Encoding;
  readonly map: OpcodeMap;
  readonly opcode: number;
  readonly modrm: ModRM | undefined;
  readonly sib: Sib | undefined;
  readonly mnemonic: string;
  readonly operands: readonly Operand[];
  /** Effective operand size for general-register instructions (16/32/64). */
  readonly operandSize: 16 | 32 | 64;
  readonly addressSize: 16 | 32 | 64;
  /** Offset of the displacement in `bytes` and its size (0 when none). */
  readonly dispOffset: number;
  readonly dispSize: number;
  /** Offset and size of the (first) immediate in `bytes` (0 when none). */
  readonly immOffset: number;
  readonly immSize: number;
}

/**
 * Why decoding stopped without an instruction:
 * - `invalid`: no instruction has this encoding here (the CPU raises #UD);
 * - `too-long`: more than 15 bytes (the CPU raises #GP(0));
 * - `truncated`: the bytes given end before the instruction does; fetch more and retry.
 */
export type DecodeFailureReason = "invalid" | "too-long" | "truncated";

export interface DecodeFailure {
  readonly ok: false;
  readonly reason: DecodeFailureReason;
  /** The exception vector the CPU raises for this encoding (6 = #UD, 13 = #GP); undefined for `truncated`. */
  readonly vector: 6 | 13 | undefined;
  /** Bytes consumed when the decoder stopped; the full length when it was known (lock on a non-lockable instruction). */
  readonly length: number;
  readonly detail: string;
}

export interface DecodeSuccess {
  readonly ok: true;
  readonly insn: Instruction;
}

export type DecodeResult = DecodeSuccess | DecodeFailure;
