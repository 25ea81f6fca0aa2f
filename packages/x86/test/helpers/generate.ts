import { type CpuMode, decode, MAP_0F, MAP_0F3A, MAP_0F38, PRIMARY, type Slot } from "@tsvmm/x86";
import fc from "fast-check";

const LEGACY = [0xf0, 0xf2, 0xf3, 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0x67];

function defined(t: readonly Slot[]): number[] {
  const out: number[] = [];
  t.forEach((s, i) => {
    if (s !== undefined) out.push(i);
  });
  return out;
}

const PRIMARY_OPS = defined(PRIMARY).filter((o) => o !== 0x0f && !LEGACY.includes(o) && (o & 0xf0) !== 0x40);
const OF_OPS = defined(MAP_0F).filter((o) => o !== 0x0f);
const O38_OPS = defined(MAP_0F38);
const O3A_OPS = defined(MAP_0F3A);

/** VEX opcodes with the map, pp, L and W (-1: either) the SDM defines for them (a curated set across the maps). */
const VEX_FORMS: readonly [map: number, opcode: number, pp: number, l: number, w: number][] = [
  [1, 0x10, 0, -1, -1], [1, 0x10, 1, -1, -1], [1, 0x10, 2, -1, -1], [1, 0x10, 3, -1, -1], [1, 0x11, 0, -1, -1], [1, 0x28, 1, -1, -1],
  [1, 0x29, 0, -1, -1], [1, 0x2e, 0, -1, -1], [1, 0x51, 1, -1, -1], [1, 0x54, 0, -1, -1], [1, 0x57, 1, -1, -1], [1, 0x58, 0, -1, -1],
  [1, 0x58, 3, -1, -1], [1, 0x59, 2, -1, -1], [1, 0x5c, 1, -1, -1], [1, 0x5e, 0, -1, -1], [1, 0x60, 1, -1, -1], [1, 0x6e, 1, 0, -1],
  [1, 0x6f, 1, -1, -1], [1, 0x6f, 2, -1, -1], [1, 0x70, 1, -1, -1], [1, 0x70, 2, -1, -1], [1, 0x72, 1, -1, -1], [1, 0x73, 1, -1, -1],
  [1, 0x74, 1, -1, -1], [1, 0x7e, 1, 0, -1], [1, 0x7e, 2, 0, -1], [1, 0x7f, 1, -1, -1], [1, 0x7f, 2, -1, -1], [1, 0xc2, 0, -1, -1],
  [1, 0xc6, 1, -1, -1], [1, 0xd4, 1, -1, -1], [1, 0xd6, 1, 0, -1], [1, 0xdb, 1, -1, -1], [1, 0xe7, 1, -1, -1], [1, 0xeb, 1, -1, -1],
  [1, 0xef, 1, -1, -1], [1, 0xf0, 3, -1, -1], [1, 0xfe, 1, -1, -1], [1, 0xfa, 1, -1, -1], [2, 0x00, 1, -1, -1], [2, 0x04, 1, -1, -1],
  [2, 0x17, 1, -1, -1], [2, 0x18, 1, -1, 0], [2, 0x1e, 1, -1, -1], [2, 0x30, 1, -1, -1], [2, 0x36, 1, 1, 0], [2, 0x40, 1, -1, -1],
  [2, 0x45, 1, -1, -1], [2, 0x58, 1, -1, 0], [2, 0x78, 1, -1, 0], [2, 0x98, 1, -1, -1], [2, 0xa8, 1, -1, -1], [2, 0xb9, 1, -1, -1],
  [2, 0xdc, 1, 0, -1], [2, 0xf2, 0, 0, -1], [2, 0xf5, 0, 0, -1], [2, 0xf5, 2, 0, -1], [2, 0xf5, 3, 0, -1], [2, 0xf6, 3, 0, -1],
  [2, 0xf7, 0, 0, -1], [2, 0xf7, 1, 0, -1], [2, 0xf7, 2, 0, -1], [2, 0xf7, 3, 0, -1], [3, 0x0f, 1, -1, -1], [3, 0x0e, 1, -1, -1],
  [3, 0x16, 1, 0, -1], [3, 0x20, 1, 0, -1], [3, 0x22, 1, 0, -1], [3, 0x44, 1, 0, -1], [3, 0x4a, 1, -1, 0], [3, 0x4c, 1, -1, 0],
  [3, 0xf0, 3, 0, -1], [3, 0xdf, 1, 0, -1], [3, 0x0c, 1, -1, -1], [3, 0x40, 1, -1, -1],
];

/** Maps whose instructions need a memory ModRM in AVX (vmovntdq etc. are mod!=3 only; the decoder says so). */
export interface Encoded {
  bytes: Uint8Array;
  mode: CpuMode;
}

const MODES: readonly CpuMode[] = ["long64", "long64", "long64", "protected32", "protected16"];

/**
 * Instruction encodings built from the decoder's own opcode tables: random legacy prefixes, REX,
 * opcode, then random ModRM/SIB/displacement/immediate bytes. The encoding is cut to the length
 * the decoder reports; candidates the decoder rejects are dropped (filter), so every sample is an
 * instruction the decoder claims is valid — objdump then judges it.
 */
export function arbEncoding(): fc.Arbitrary<Encoded> {
  return fc
    .record({
      mode: fc.constantFrom(...MODES),
      prefixes: fc.array(fc.constantFrom(0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0x67, 0xf2, 0xf3, 0xf0), { maxLength: 3 }),
      rex: fc.option(fc.integer({ min: 0x40, max: 0x4f }), { freq: 2 }),
      kind: fc.constantFrom("primary", "primary", "0f", "0f", "0f38", "0f3a", "vex", "vex", "evex"),
      pick: fc.nat(),
      vexBits: fc.nat({ max: 0xffff }),
      tail: fc.uint8Array({ minLength: 14, maxLength: 14 }),
    })
    .map(({ mode, prefixes, rex, kind, pick, vexBits, tail }): Encoded => {
      const out: number[] = [];
      const is64 = mode === "long64";
      if (kind === "vex" || kind === "evex") {
        if (!is64) tail[0] = (tail[0]! & 0x3f) | 0xc0;
        const [map, opcode, pp, lReq, wReq] = VEX_FORMS[pick % VEX_FORMS.length]!;
        if (lReq >= 0) vexBits = (vexBits & ~0x400) | (lReq << 10);
        if (wReq >= 0) vexBits = (vexBits & ~0x8000) | (wReq << 15);
        if (kind === "vex") {
          const r = is64 ? vexBits & 0xe0 : 0xe0;
          const w = vexBits & 0x8000;
          // VEX.vvvv = 1111b (no extra register): accepted by every VEX instruction, required by two-operand ones.
          const vvvvL = 0x78 | ((vexBits >> 8) & 4);
          if (map === 1 && (vexBits & 1) === 1 && r & 0x40 && r & 0x20 && w === 0) out.push(0xc5, (r & 0x80) | vvvvL | pp);
          else out.push(0xc4, r | map, w >> 8 | vvvvL | pp);
          out.push(opcode);
        } else {
          // EVEX: fixed bits as the SDM requires (P0 bit 3 = 0, P1 bit 2 = 1), a valid map.
          const p0 = (is64 ? vexBits & 0xf0 : 0xf0) | [1, 2, 3][pick % 3]!;
          out.push(0x62, p0, ((vexBits >> 8) & 0x80) | 0x7c | pp, (tail[13]! & 0x67) | 0x08, opcode);
        }
        out.push(...tail);
        return { mode, bytes: Uint8Array.from(out.slice(0, 15)) };
      }
      out.push(...prefixes);
      if (is64 && rex !== null) out.push(rex);
      if (kind === "primary") out.push(PRIMARY_OPS[pick % PRIMARY_OPS.length]!);
      else if (kind === "0f") out.push(0x0f, OF_OPS[pick % OF_OPS.length]!);
      else if (kind === "0f38") out.push(0x0f, 0x38, O38_OPS[pick % O38_OPS.length]!);
      else out.push(0x0f, 0x3a, O3A_OPS[pick % O3A_OPS.length]!);
      out.push(...tail);
      return { mode, bytes: Uint8Array.from(out.slice(0, 15)) };
    })
    .map(({ mode, bytes }) => {
      const r = decode(bytes, mode);
      return { mode, bytes: r.ok ? r.insn.bytes : new Uint8Array(0) };
    })
    .filter((e) => e.bytes.length > 0);
}
