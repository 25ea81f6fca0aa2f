// The ALU subset against the host CPU: a C program compiled at test time runs each instruction
// natively (user mode, register operands, flags loaded with POPF) on random inputs and prints the
// result and RFLAGS; the emulator runs the same encoding (register and memory destinations) and must
// agree on the result and every flag the SDM defines. Undefined flags are masked (see flags.ts).
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AF, CF, OF, STATUS } from "@tsvmm/x86";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CODE, DATA, machine } from "./helpers/machine.js";

const SCALE = Number(process.env.TSVMM_FUZZ_SCALE ?? "1");
const BINARY = ["add", "or", "adc", "sbb", "and", "sub", "xor", "cmp", "test"] as const;
const UNARY = ["inc", "dec", "neg", "not"] as const;
const SHIFTS = ["rol", "ror", "rcl", "rcr", "shl", "shr", "sar"] as const;
const OPS = [...BINARY, ...UNARY, ...SHIFTS];
type Op = (typeof OPS)[number];
const SIZES = [8, 16, 32, 64] as const;
const HIGH = 0x5a5a5a5a5a5a5a5an;
const SUFFIX: Record<number, [string, string]> = { 8: ["b", "b"], 16: ["w", "w"], 32: ["l", "k"], 64: ["q", "q"] };

function cProgram(): string {
  const cases: string[] = [];
  OPS.forEach((op, oi) => {
    for (const bits of SIZES) {
      const [suf, m] = SUFFIX[bits]!;
      const id = oi * 4 + SIZES.indexOf(bits);
      let asm: string;
      if ((BINARY as readonly string[]).includes(op)) asm = `"${op}${suf} %${m}[s], %${m}[d]\\n"`;
      else if ((UNARY as readonly string[]).includes(op)) asm = `"${op}${suf} %${m}[d]\\n"`;
      else asm = `"${op}${suf} %%cl, %${m}[d]\\n"`;
      cases.push(`case ${id}: asm volatile("push %[f]\\n popfq\\n" ${asm} "pushfq\\n pop %[f]\\n" : [d] "+r"(d), [f] "+r"(f) : [s] "r"(b), "c"(b) : "cc", "memory"); break;`);
    }
  });
  return `#include <stdio.h>
#include <stdint.h>
int main(void) {
  unsigned id; unsigned long long a, b, fin;
  while (scanf("%u %llx %llx %llx", &id, &a, &b, &fin) == 4) {
    uint64_t d = a, f = (fin & 0x8d5ULL) | 2;
    switch (id) {
${cases.join("\n")}
    default: return 2;
    }
    printf("%llx %llx\\n", (unsigned long long)d, (unsigned long long)f);
  }
  return 0;
}
`;
}

let dir = "";
let exe = "";
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "x86-alu-"));
  writeFileSync(join(dir, "alu.c"), cProgram());
  exe = join(dir, "alu");
  execFileSync("gcc", ["-O1", "-mno-red-zone", join(dir, "alu.c"), "-o", exe]);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Case {
  op: Op;
  bits: (typeof SIZES)[number];
  a: bigint;
  b: bigint;
  flags: bigint;
  memory: boolean;
}

const ALU_BASE: Record<string, number> = { add: 0, or: 1, adc: 2, sbb: 3, and: 4, sub: 5, xor: 6, cmp: 7 };
const UNARY_ENC: Record<string, [number, number]> = { inc: [0xfe, 0], dec: [0xfe, 1], not: [0xf6, 2], neg: [0xf6, 3] };
const SHIFT_REG: Record<string, number> = { rol: 0, ror: 1, rcl: 2, rcr: 3, shl: 4, shr: 5, sar: 7 };

/** Encode `op dst, src` with dst = RBX or [RDI] and src = RCX (CL for shifts). */
function encode(c: Case): number[] {
  const pre: number[] = c.bits === 16 ? [0x66] : c.bits === 64 ? [0x48] : [];
  const w = c.bits === 8 ? 0 : 1;
  const rm = c.memory ? 0x07 : 0xc3;
  if (c.op in ALU_BASE) return [...pre, ALU_BASE[c.op]! * 8 + w, rm | (1 << 3)];
  if (c.op === "test") return [...pre, 0x84 + w, rm | (1 << 3)];
  if (c.op in UNARY_ENC) {
    const [opc, r] = UNARY_ENC[c.op]!;
    return [...pre, opc + w, rm | (r << 3)];
  }
  return [...pre, 0xd2 + w, rm | (SHIFT_REG[c.op]! << 3)];
}

/** Flags the SDM leaves undefined for this case. */
function undefinedFlags(c: Case): bigint {
  if (["and", "or", "xor", "test"].includes(c.op)) return AF;
  if ((SHIFTS as readonly string[]).includes(c.op)) {
    const count = c.b & (c.bits === 64 ? 0x3fn : 0x1fn);
    if (count === 0n) return 0n;
    let u = count === 1n ? 0n : OF;
    if (["shl", "shr", "sar"].includes(c.op)) u |= AF;
    if ((c.op === "shl" || c.op === "shr") && count >= BigInt(c.bits)) u |= CF | OF;
    return u;
  }
  return 0n;
}

const arbCase = (): fc.Arbitrary<Case> =>
  fc.record({
    op: fc.constantFrom(...OPS),
    bits: fc.constantFrom(...SIZES),
    a: fc.oneof(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.constantFrom(0n, 1n, 0x7fn, 0x80n, 0xffn, 0x7fffn, 0x8000n, 0x7fffffffn, 0x80000000n, (1n << 63n) - 1n, 1n << 63n, (1n << 64n) - 1n)),
    b: fc.oneof(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.bigInt({ min: 0n, max: 70n })),
    flags: fc.bigInt({ min: 0n, max: 0xfffn }).map((f) => (f & 0x8d5n) | 2n),
    memory: fc.boolean(),
  });

describe("ALU instructions vs the host CPU", () => {
  it(`${1000 * SCALE} random cases (and the shift-count edges) across ${OPS.length} operations x 4 sizes x register/memory destinations`, () => {
    const cases = fc.sample(arbCase(), { numRuns: 1000 * SCALE, seed: Number(process.env.TSVMM_SEED ?? Date.now() % 100000) });
    // Shift and rotate counts at the edges, every time: 0 (flags untouched), 1 (OF defined), the
    // operand width and its multiples (a rotate by a multiple of the width still sets CF), past the mask.
    for (const op of SHIFTS) {
      for (const bits of SIZES) {
        for (const b of [0n, 1n, 7n, 8n, 9n, 15n, 16n, 17n, 24n, 31n, 32n, 33n, 63n, 64n]) {
          for (const flags of [0x2n, 0x8d7n]) cases.push({ op, bits, a: 0x8000000000000081n, b, flags, memory: false });
        }
      }
    }
    const input = cases
      .map((c) => {
        const m = (1n << BigInt(c.bits)) - 1n;
        // Register destinations carry a pattern above the operand so zero-extension (or its absence) shows.
        return `${OPS.indexOf(c.op) * 4 + SIZES.indexOf(c.bits)} ${(HIGH & ~m | (c.a & m)).toString(16)} ${(c.b & m).toString(16)} ${c.flags.toString(16)}`;
      })
      .join("\n");
    const out = execFileSync(exe, { input: `${input}\n`, encoding: "utf8" }).trim().split("\n");
    expect(out.length).toBe(cases.length);
    const diffs: string[] = [];
    cases.forEach((c, k) => {
      const [rHex, fHex] = out[k]!.split(" ");
      const m = (1n << BigInt(c.bits)) - 1n;
      const nativeFull = BigInt(`0x${rHex}`);
      const nativeResult = nativeFull & m;
      const nativeFlags = BigInt(`0x${fHex}`);
      const { cpu, emu } = machine(Buffer.from(encode(c)).toString("hex"));
      const a = c.a & m;
      const rbxHigh = HIGH & ~m;
      cpu.gpr[3] = c.memory ? 0n : rbxHigh | a;
      cpu.gpr[1] = c.b & m;
      cpu.gpr[7] = DATA;
      cpu.memory.writeU64(DATA, 0x5a5a5a5a5a5a5a5an);
      if (c.memory) cpu.memory.write(DATA, Buffer.from(a.toString(16).padStart(c.bits / 4, "0"), "hex").reverse());
      cpu.rflags = c.flags;
      const outcome = emu.step();
      expect(outcome).toMatchObject({ kind: "executed", rip: CODE + BigInt(encode(c).length) });
      const full = c.memory ? cpu.memory.readU64(DATA) : cpu.gpr[3]!;
      const result = full & m;
      const mask = STATUS & ~undefinedFlags(c);
      // Register destination: the bits above the operand as the CPU left them; memory: untouched.
      const upper = c.memory ? HIGH & ~m : nativeFull & ~m;
      if (result !== nativeResult || (cpu.rflags & mask) !== (nativeFlags & mask) || (full & ~m) !== upper) {
        diffs.push(`${c.op}${c.bits} a=${a.toString(16)} b=${(c.b & m).toString(16)} f=${c.flags.toString(16)} mem=${c.memory}: native ${nativeResult.toString(16)}/${(nativeFlags & mask).toString(16)}, emulated ${result.toString(16)}/${(cpu.rflags & mask).toString(16)} upper ${(full & ~m).toString(16)}`);
      }
    });
    expect(diffs.slice(0, 10)).toEqual([]);
  });
});
