import type { Reg } from "../decoder/registers.js";
import type { ImmOperand, Instruction, MemOperand, Operand } from "../decoder/types.js";
import type { XsaveLayout } from "./cpu.js";
import { setXstateBv, xmmOffset, xstateBv } from "./xsave.js";

export interface SseIo {
  read(o: MemOperand, bytes: number, aligned: boolean): Uint8Array;
  write(o: MemOperand, data: Uint8Array, aligned: boolean): void;
  getGpr(r: Reg): bigint;
  setGpr(r: Reg, v: bigint): void;
  unsupported(why: string): never;
  readonly layout: XsaveLayout;
}

type RegOp = Extract<Operand, { kind: "reg" }>;

const SSE = new Set(["movd", "movq", "movdqu", "movdqa", "pxor", "por", "paddd", "pshufb", "pshufd", "psrld", "pslld", "palignr"]);

/** Mnemonics {@link executeSse} handles (legacy SSE and their VEX forms). */
export function isSseMnemonic(m: string): boolean {
  return SSE.has(m) || (m.startsWith("v") && SSE.has(m.slice(1)));
}

/** Vector register file view over a standard-format XSAVE image (XMM in the legacy region, YMM_H in component 2). */
class Vregs {
  constructor(
    readonly img: Uint8Array,
    readonly ymmhOffset: number | undefined,
  ) {}
  get(i: number, bytes: 16 | 32): Uint8Array {
    const out = new Uint8Array(bytes);
    const bv = xstateBv(this.img);
    if (bv & 2n) out.set(this.img.subarray(xmmOffset(i), xmmOffset(i) + 16));
    if (bytes === 32 && bv & 4n && this.ymmhOffset !== undefined) out.set(this.img.subarray(this.ymmhOffset + 16 * i, this.ymmhOffset + 16 * i + 16), 16);
    return out;
  }
  /** Write XMM/YMM `i`; `zeroUpper` (VEX encodings) clears bits 255:128 when writing 16 bytes. */
  set(i: number, data: Uint8Array, zeroUpper: boolean): void {
    let bv = xstateBv(this.img);
    // A component whose XSTATE_BV bit is clear is in its initial state whatever the image bytes say.
    if (!(bv & 2n)) {
      this.img.fill(0, xmmOffset(0), xmmOffset(16));
      bv |= 2n;
    }
    this.img.set(data.subarray(0, 16), xmmOffset(i));
    if ((data.length === 32 || zeroUpper) && this.ymmhOffset !== undefined) {
      if (!(bv & 4n)) {
        this.img.fill(0, this.ymmhOffset, this.ymmhOffset + 256);
        bv |= 4n;
      }
      const hi = data.length === 32 ? data.subarray(16, 32) : new Uint8Array(16);
      this.img.set(hi, this.ymmhOffset + 16 * i);
    }
    setXstateBv(this.img, bv);
  }
}

function u32s(b: Uint8Array): Uint32Array {
  return new Uint32Array(Uint8Array.from(b).buffer);
}
function fromU32(a: Uint32Array): Uint8Array {
  return new Uint8Array(a.buffer.slice(0));
}

/**
 * Execute the SSE/AVX subset Linux's BLAKE2s (SSSE3/AVX) and memcpy-like paths use, on the
 * vector state image. Returns true when the image changed (so the caller writes it back).
 */
export function executeSse(insn: Instruction, img: Uint8Array, io: SseIo): boolean {
  const vex = insn.encoding === "vex";
  const name = vex ? insn.mnemonic.slice(1) : insn.mnemonic;
  const width: 16 | 32 = vex && insn.prefixes.vex!.l === 1 ? 32 : 16;
  const ymmh = io.layout.components.find((c) => c.index === 2)?.offset;
  const V = new Vregs(img, ymmh);
  const ops = insn.operands;
  const isVec = (o: Operand | undefined): o is RegOp => o?.kind === "reg" && (o.reg.cls === "xmm" || o.reg.cls === "ymm");
  const readSrc = (o: Operand, bytes: number, aligned: boolean): Uint8Array => {
    if (isVec(o)) return V.get(o.reg.index, bytes > 16 ? 32 : 16).subarray(0, bytes);
    if (o.kind === "mem") return io.read(o, bytes, aligned);
    const r = o as Operand;
    if (r.kind === "reg") return bigBytes(io.getGpr(r.reg), bytes);
    return io.unsupported("immediate vector source");
  };
  switch (name) {
    case "movd":
    case "movq": {
      const [d, s] = ops as [Operand, Operand];
      if ((d.kind === "reg" && d.reg.cls === "mmx") || (s.kind === "reg" && s.reg.cls === "mmx")) return io.unsupported("MMX register forms");
      const bytes = name === "movd" && !(insn.prefixes.rex?.w ?? false) && !(vex && insn.prefixes.vex!.w) ? 4 : 8;
      if (isVec(d)) {
        const out = new Uint8Array(16);
        out.set(readSrc(s, bytes, false).subarray(0, bytes));
        V.set(d.reg.index, out, vex);
        return true;
      }
      const v = V.get((s as Extract<Operand, { kind: "reg" }>).reg.index, 16).subarray(0, bytes);
      const dd = d as Operand;
      if (dd.kind === "mem") io.write(dd, v, false);
      else if (dd.kind === "reg") io.setGpr(dd.reg, leBig(v));
      return false;
    }
    case "movdqu":
    case "movdqa": {
      const [d, s] = ops as [Operand, Operand];
      const aligned = name === "movdqa";
      if (isVec(d)) {
        V.set(d.reg.index, readSrc(s, width, aligned), vex);
        return true;
      }
      io.write(d as MemOperand, V.get((s as Extract<Operand, { kind: "reg" }>).reg.index, width).subarray(0, width), aligned);
      return false;
    }
    default:
      break;
  }
  // Arithmetic: legacy dst = dst op src; VEX dst = vvvv op src. Legacy memory operands must be aligned.
  const d = ops[0];
  if (!isVec(d)) return io.unsupported(`${insn.mnemonic} destination`);
  const srcOp = ops[1]!;
  const a = vex ? V.get(insn.prefixes.vex!.vvvv, width) : V.get(d.reg.index, 16);
  const imm = ops.find((o): o is ImmOperand => o.kind === "imm");
  // The shift-by-immediate group (66 0F 72 /2 /6) names its register in ModRM.rm, the source and destination.
  const immShift = insn.map === "0f" && insn.opcode === 0x72;
  // VEX: destination VEX.vvvv (operand 0), source ModRM.rm (operand 1); legacy: ModRM.rm is both.
  const b = immShift ? (vex ? readSrc(srcOp, width, false) : a) : readSrc(srcOp, width, !vex);
  const out = new Uint8Array(width);
  const lanes = width / 16;
  switch (name) {
    case "pxor":
    case "por":
      for (let k = 0; k < width; k++) out[k] = name === "pxor" ? a[k]! ^ b[k]! : a[k]! | b[k]!;
      break;
    case "paddd": {
      const x = u32s(a);
      const y = u32s(b);
      const r = new Uint32Array(width / 4);
      for (let k = 0; k < r.length; k++) r[k] = (x[k]! + y[k]!) >>> 0;
      out.set(fromU32(r));
      break;
    }
    case "pshufb":
      for (let l = 0; l < lanes; l++) {
        for (let k = 0; k < 16; k++) {
          const sel = b[l * 16 + k]!;
          out[l * 16 + k] = sel & 0x80 ? 0 : a[l * 16 + (sel & 15)]!;
        }
      }
      break;
    case "pshufd": {
      const src = u32s(b);
      const r = new Uint32Array(width / 4);
      const order = Number(imm!.value);
      for (let l = 0; l < lanes; l++) for (let k = 0; k < 4; k++) r[l * 4 + k] = src[l * 4 + ((order >> (2 * k)) & 3)]!;
      out.set(fromU32(r));
      break;
    }
    case "psrld":
    case "pslld": {
      const count = imm !== undefined ? imm.value : leBig(readSrc(srcOp, 16, !vex).subarray(0, 8));
      const src = u32s(immShift ? b : a);
      const r = new Uint32Array(width / 4);
      for (let k = 0; k < r.length; k++) r[k] = count > 31n ? 0 : name === "psrld" ? src[k]! >>> Number(count) : (src[k]! << Number(count)) >>> 0;
      out.set(fromU32(r));
      break;
    }
    case "palignr": {
      const n = Number(imm!.value);
      for (let l = 0; l < lanes; l++) {
        // Concatenate dst:src (dst high), shift right by n bytes, keep the low 16.
        const cat = new Uint8Array(32);
        cat.set(b.subarray(l * 16, l * 16 + 16), 0);
        cat.set(a.subarray(l * 16, l * 16 + 16), 16);
        for (let k = 0; k < 16; k++) out[l * 16 + k] = k + n < 32 ? cat[k + n]! : 0;
      }
      break;
    }
    default:
      return io.unsupported(`${insn.mnemonic} is not emulated`);
  }
  V.set(d.reg.index, out, vex);
  return true;
}

function bigBytes(v: bigint, n: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = BigInt.asUintN(n * 8, v);
  for (let k = 0; k < n; k++) {
    out[k] = Number(x & 0xffn);
    x >>= 8n;
  }
  return out;
}
function leBig(b: Uint8Array): bigint {
  let v = 0n;
  for (let k = b.length - 1; k >= 0; k--) v = (v << 8n) | BigInt(b[k]!);
  return v;
}
