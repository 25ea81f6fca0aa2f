// The SSE/AVX subset against the host CPU: a C program compiled at test time loads YMM0-3, RAX and
// a 32-byte buffer (RDI) from random inputs, runs each encoding natively (CPL3, where AVX works on
// this host), and prints the registers and buffer back; the emulator runs the same bytes on the same
// state and must leave the same YMM0-3 (low and high halves), RAX and buffer.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CODE, DATA, machine } from "./helpers/machine.js";

const SCALE = Number(process.env.TSVMM_FUZZ_SCALE ?? "1");

/** [objdump's text, encoding]: register forms over YMM0-3, GPR forms over RAX, memory forms over [RDI]. */
const CASES: readonly [string, string][] = [
  ["psrld xmm1,0x4", "66 0f 72 d1 04"],
  ["pslld xmm2,0x1f", "66 0f 72 f2 1f"],
  ["vpsrld xmm0,xmm1,0x4", "c5 f9 72 d1 04"],
  ["vpslld xmm3,xmm2,0x7", "c5 e1 72 f2 07"],
  ["vpsrld ymm0,ymm1,0x1f", "c5 fd 72 d1 1f"],
  ["vpslld xmm0,xmm1,0x21", "c5 f9 72 f1 21"],
  ["psrld xmm0,xmm1", "66 0f d2 c1"],
  ["pslld xmm0,xmm2", "66 0f f2 c2"],
  ["vpsrld xmm0,xmm1,xmm2", "c5 f1 d2 c2"],
  ["vpslld ymm3,ymm1,xmm2", "c5 f5 f2 da"],
  ["por xmm0,xmm1", "66 0f eb c1"],
  ["pxor xmm3,xmm2", "66 0f ef da"],
  ["vpxor ymm0,ymm1,ymm2", "c5 f5 ef c2"],
  ["vpor xmm0,xmm1,xmm2", "c5 f1 eb c2"],
  ["paddd xmm1,xmm2", "66 0f fe ca"],
  ["vpaddd ymm0,ymm1,ymm2", "c5 f5 fe c2"],
  ["pshufb xmm0,xmm1", "66 0f 38 00 c1"],
  ["vpshufb ymm0,ymm1,ymm2", "c4 e2 75 00 c2"],
  ["pshufd xmm0,xmm1,0x1b", "66 0f 70 c1 1b"],
  ["vpshufd ymm0,ymm1,0x4e", "c5 fd 70 c1 4e"],
  ["palignr xmm0,xmm1,0x14", "66 0f 3a 0f c1 14"],
  ["vpalignr ymm0,ymm1,ymm2,0x5", "c4 e3 75 0f c2 05"],
  ["vpalignr xmm0,xmm1,xmm2,0x21", "c4 e3 71 0f c2 21"],
  ["movdqa xmm0,xmm1", "66 0f 6f c1"],
  ["vmovdqu ymm0,ymm1", "c5 fe 6f c1"],
  ["vmovdqa xmm2,xmm1", "c5 f9 6f d1"],
  ["movdqu xmm0,XMMWORD PTR [rdi]", "f3 0f 6f 07"],
  ["movdqu XMMWORD PTR [rdi],xmm1", "f3 0f 7f 0f"],
  ["vmovdqu YMMWORD PTR [rdi],ymm2", "c5 fe 7f 17"],
  ["movd xmm0,eax", "66 0f 6e c0"],
  ["movq xmm1,rax", "66 48 0f 6e c8"],
  ["vmovd xmm2,eax", "c5 f9 6e d0"],
  ["vmovq xmm3,rax", "c4 e1 f9 6e d8"],
  ["movd eax,xmm1", "66 0f 7e c8"],
  ["movq rax,xmm2", "66 48 0f 7e d0"],
  ["movd DWORD PTR [rdi],xmm3", "66 0f 7e 1f"],
  ["vmovq QWORD PTR [rdi],xmm1", "c4 e1 f9 7e 0f"],
  ["movd xmm0,DWORD PTR [rdi]", "66 0f 6e 07"],
];

function bytesOf(hex: string): number[] {
  return hex.split(" ").map((h) => Number.parseInt(h, 16));
}

function cProgram(): string {
  const cases = CASES.map(
    ([, hex], id) =>
      `case ${id}: asm volatile("vmovdqu 0(%[y]), %%ymm0\\n vmovdqu 32(%[y]), %%ymm1\\n vmovdqu 64(%[y]), %%ymm2\\n vmovdqu 96(%[y]), %%ymm3\\n mov %[a], %%rax\\n mov %[m], %%rdi\\n"
      ".byte ${bytesOf(hex).map((b) => `0x${b.toString(16)}`).join(",")}\\n"
      "vmovdqu %%ymm0, 0(%[y])\\n vmovdqu %%ymm1, 32(%[y])\\n vmovdqu %%ymm2, 64(%[y])\\n vmovdqu %%ymm3, 96(%[y])\\n mov %%rax, %[a]\\n vzeroupper\\n"
      : [a] "+m"(rax) : [y] "r"(y), [m] "r"(m) : "rax", "rdi", "xmm0", "xmm1", "xmm2", "xmm3", "memory"); break;`,
  );
  return `#include <stdio.h>
#include <stdint.h>
static int hexin(unsigned char *p, int n) {
  for (int i = 0; i < n; i++) { unsigned v; if (scanf("%2x", &v) != 1) return 0; p[i] = (unsigned char)v; }
  return 1;
}
static void hexout(const unsigned char *p, int n) { for (int i = 0; i < n; i++) printf("%02x", p[i]); }
int main(void) {
  unsigned id; unsigned long long rax;
  static unsigned char y[128] __attribute__((aligned(32))), m[32] __attribute__((aligned(32)));
  while (scanf("%u %llx ", &id, &rax) == 2 && hexin(y, 128) && scanf(" ") == 0 && hexin(m, 32)) {
    switch (id) {
${cases.join("\n")}
    default: return 2;
    }
    printf("%llx ", rax); hexout(y, 128); printf(" "); hexout(m, 32); printf("\\n");
  }
  return 0;
}
`;
}

let dir = "";
let exe = "";
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "x86-sse-"));
  writeFileSync(join(dir, "sse.c"), cProgram());
  exe = join(dir, "sse");
  execFileSync("gcc", ["-O1", "-mavx2", join(dir, "sse.c"), "-o", exe]);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Case {
  id: number;
  rax: bigint;
  ymm: Uint8Array;
  mem: Uint8Array;
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
const XMM = 160; // legacy-region offset of XMM0 in the standard XSAVE format
const YMMH = 576; // component 2 (AVX) offset in DEFAULT_XSAVE_LAYOUT

function emulate(c: Case): { rax: bigint; ymm: string; mem: string } {
  const { cpu, emu } = machine(CASES[c.id]![1]);
  for (let r = 0; r < 4; r++) {
    cpu.xsave.set(c.ymm.subarray(32 * r, 32 * r + 16), XMM + 16 * r);
    cpu.xsave.set(c.ymm.subarray(32 * r + 16, 32 * r + 32), YMMH + 16 * r);
  }
  cpu.xsave[512] = 7; // XSTATE_BV: x87, SSE and AVX state in use
  cpu.gpr[0] = c.rax;
  cpu.gpr[7] = DATA;
  cpu.memory.write(DATA, c.mem);
  const out = emu.step();
  expect([CASES[c.id]![0], out]).toMatchObject([CASES[c.id]![0], { kind: "executed", rip: CODE + BigInt(bytesOf(CASES[c.id]![1]).length) }]);
  const ymm = new Uint8Array(128);
  for (let r = 0; r < 4; r++) {
    ymm.set(cpu.xsave.subarray(XMM + 16 * r, XMM + 16 * r + 16), 32 * r);
    ymm.set(cpu.xsave.subarray(YMMH + 16 * r, YMMH + 16 * r + 16), 32 * r + 16);
  }
  return { rax: cpu.gpr[0]!, ymm: hex(ymm), mem: hex(cpu.memory.read(DATA, 32)) };
}

describe("SSE/AVX subset vs the host CPU", () => {
  it("the encodings decode as objdump prints them", async () => {
    const { decode } = await import("@tsvmm/x86");
    const { objdumpSlots } = await import("./helpers/objdump.js");
    const enc = CASES.map(([, h]) => Uint8Array.from(bytesOf(h)));
    const od = objdumpSlots(enc, "long64");
    CASES.forEach(([text, h], k) => {
      const r = decode(enc[k]!, "long64");
      expect([h, r.ok && r.insn.length]).toEqual([h, enc[k]!.length]);
      expect([h, od[k]!.length, od[k]!.text.replace(/\s+/g, " ")]).toEqual([h, enc[k]!.length, text.replace(/^(\S+)/, "$1")]);
    });
  });

  it(`${CASES.length} encodings x ${20 * SCALE} random register/memory states agree with the CPU`, () => {
    const seed = Number(process.env.TSVMM_SEED ?? Date.now() % 100000);
    const arb = fc.record({
      id: fc.nat({ max: CASES.length - 1 }),
      rax: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      ymm: fc.uint8Array({ minLength: 128, maxLength: 128 }),
      mem: fc.uint8Array({ minLength: 32, maxLength: 32 }),
      smallCount: fc.nat({ max: 40 }),
      useSmall: fc.boolean(),
    });
    const cases: Case[] = [];
    for (const x of fc.sample(arb, { numRuns: CASES.length * 20 * SCALE, seed })) {
      // Shift counts from a register: half the time a small one, so the per-lane shift is exercised.
      if (x.useSmall) for (const r of [1, 2]) x.ymm.set([x.smallCount, 0, 0, 0, 0, 0, 0, 0], 32 * r);
      cases.push({ id: x.id, rax: x.rax, ymm: x.ymm, mem: x.mem });
    }
    // Every encoding at least once, whatever the sample.
    CASES.forEach((_, id) => {
      cases.push({ id, rax: 0x0123456789abcdefn, ymm: Uint8Array.from({ length: 128 }, (_, k) => (k * 37 + 11) & 0xff), mem: Uint8Array.from({ length: 32 }, (_, k) => 0xa0 + k) });
    });
    const input = cases.map((c) => `${c.id} ${c.rax.toString(16)} ${hex(c.ymm)} ${hex(c.mem)}`).join("\n");
    const out = execFileSync(exe, { input: `${input}\n`, encoding: "utf8" }).trim().split("\n");
    expect(out.length).toBe(cases.length);
    const diffs: string[] = [];
    cases.forEach((c, k) => {
      const [rax, ymm, mem] = out[k]!.split(" ");
      const e = emulate(c);
      if (e.rax !== BigInt(`0x${rax}`) || e.ymm !== ymm || e.mem !== mem) {
        diffs.push(`${CASES[c.id]![0]} (seed ${seed}): native rax ${rax} ymm ${ymm} mem ${mem}; emulated rax ${e.rax.toString(16)} ymm ${e.ymm} mem ${e.mem}`);
      }
    });
    expect(diffs.slice(0, 5)).toEqual([]);
  });
});
