// The decoder checked against an independent one: GNU objdump. Generated encodings (fast-check,
// from the decoder's own opcode tables) and real instruction streams (this machine's binaries,
// code compiled by gcc and assembled by as at test time). TSVMM_FUZZ_SCALE multiplies the counts.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type CpuMode, decode, formatIntel } from "@tsvmm/x86";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { EMULATED_MNEMONICS, splitObjdumpText } from "./helpers/emulated-set.js";
import { arbEncoding } from "./helpers/generate.js";
import { hex, objdumpSlots } from "./helpers/objdump.js";
import { compareStream, objdumpElf, type StreamReport } from "./helpers/streams.js";

const SCALE = Number(process.env.TSVMM_FUZZ_SCALE ?? "1");
const fixtures = join(import.meta.dirname, "fixtures");
const work = mkdtempSync(join(tmpdir(), "x86-decoder-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

// Decoder rejections objdump prints anyway: the CPU raises #UD for these, objdump does not model it.
const EXPLAINED_REJECTS = /LOCK is not allowed|VEX after 66\/F2\/F3\/F0\/REX|EVEX after|no such segment register/;

function expectStreamAgrees(r: StreamReport, label: string): void {
  expect(r.compared, `${label}: instructions compared`).toBeGreaterThan(0);
  expect(r.lengthMismatches.slice(0, 10), `${label}: length mismatches`).toEqual([]);
  expect(r.rejectedOther.filter((m) => !EXPLAINED_REJECTS.test(m.ours)).slice(0, 10), `${label}: rejected`).toEqual([]);
  expect(r.rejectedSameLength.filter((m) => !EXPLAINED_REJECTS.test(m.ours)).slice(0, 10), `${label}: rejected`).toEqual([]);
}

describe("generated encodings vs objdump", () => {
  const runs = 4000 * SCALE;
  const samples = fc.sample(arbEncoding(), { numRuns: runs, seed: Number(process.env.TSVMM_SEED ?? Date.now() % 100000) });
  for (const mode of ["long64", "protected32", "protected16"] as CpuMode[]) {
    it(`${mode}: lengths agree wherever objdump decodes; operands agree for the emulated set`, () => {
      const list = samples.filter((s) => s.mode === mode);
      const od = objdumpSlots(
        list.map((s) => s.bytes),
        mode,
      );
      let bad = 0;
      let operandChecks = 0;
      const lengthDiff: string[] = [];
      const operandDiff: string[] = [];
      list.forEach((s, i) => {
        const o = od[i]!;
        const r = decode(s.bytes, mode);
        if (!r.ok) throw new Error(`generator produced an encoding the decoder rejects: ${hex(s.bytes)}`);
        if (o.bad) {
          bad++;
          return;
        }
        if (r.insn.length !== o.length) lengthDiff.push(`${hex(s.bytes)}: ours ${r.insn.length} ${r.insn.mnemonic}, objdump ${o.length} ${o.text}`);
        const scalarSse = r.insn.map !== "primary" && r.insn.mnemonic === "movsd";
        // objdump sizes MOVSXD's source by the 66 prefix even under REX.W; the SDM (and the CPU) read 32 bits.
        const movsxdQuirk = r.insn.mnemonic === "movsxd" && r.insn.prefixes.operandSize && r.insn.prefixes.rex?.w === true;
        if (EMULATED_MNEMONICS.has(r.insn.mnemonic) && !scalarSse && !movsxdQuirk) {
          operandChecks++;
          const mine = formatIntel(r.insn).split(" ").slice(1).join(" ");
          const [, theirs] = splitObjdumpText(o.text);
          if (mine !== theirs) operandDiff.push(`${hex(s.bytes)}: ours "${mine}", objdump "${o.text}"`);
        }
      });
      expect(lengthDiff.slice(0, 10)).toEqual([]);
      expect(operandDiff.slice(0, 10)).toEqual([]);
      // objdump refuses some encodings CPUs execute (F2 0F BC, 66 on WBINVD, ...); they must stay a minority.
      expect(bad / list.length).toBeLessThan(0.2);
      expect(operandChecks).toBeGreaterThan(list.length / 20);
    });
  }
});

describe("real instruction streams vs objdump", () => {
  it("/usr/bin/ls .text (64-bit, linear sweep)", () => {
    expectStreamAgrees(compareStream(objdumpElf("/usr/bin/ls", "long64"), "long64"), "ls");
  });

  it("gcc-compiled code at -O0/-O2/-O3 with AVX2, BMI2, FMA and AVX-512 functions (64-bit)", () => {
    let total = 0;
    for (const opt of ["-O0", "-O2", "-O3 -march=x86-64-v3", "-Os -mno-red-zone -mcmodel=kernel -fno-pic"]) {
      const obj = join(work, `mixed${opt.replace(/[^a-z0-9]/gi, "")}.o`);
      execFileSync("sh", ["-c", `gcc ${opt} -c "$1" -o "$2"`, "sh", join(fixtures, "mixed.c"), obj]);
      const r = compareStream(objdumpElf(obj, "long64"), "long64");
      expectStreamAgrees(r, `mixed.c ${opt}`);
      total += r.compared;
    }
    expect(total).toBeGreaterThan(500);
  });

  it("gcc -m32 and -m16 code (32-bit protected mode, 16-bit code with size prefixes)", () => {
    const o32 = join(work, "m32.o");
    const o16 = join(work, "m16.o");
    execFileSync("gcc", ["-m32", "-O2", "-ffreestanding", "-c", join(fixtures, "mixed.c"), "-o", o32]);
    execFileSync("gcc", ["-m16", "-O2", "-ffreestanding", "-c", join(fixtures, "mixed.c"), "-o", o16]);
    expectStreamAgrees(compareStream(objdumpElf(o32, "protected32"), "protected32"), "m32");
    expectStreamAgrees(compareStream(objdumpElf(o16, "protected16", ["-M", "i8086"]), "protected16"), "m16");
  });

  it("system and emulated instructions assembled by as (every one decoded, operands as objdump prints them)", () => {
    const obj = join(work, "system.o");
    execFileSync("as", ["--64", join(fixtures, "system.S"), "-o", obj]);
    const insns = objdumpElf(obj, "long64");
    const r = compareStream(insns, "long64");
    expectStreamAgrees(r, "system.S");
    expect(r.agreed).toBe(insns.length);
    const diffs: string[] = [];
    for (const ins of insns) {
      const d = decode(Uint8Array.from(ins.bytes), "long64");
      if (!d.ok || !EMULATED_MNEMONICS.has(d.insn.mnemonic) || d.insn.operands.length === 0) continue;
      const [, theirs] = splitObjdumpText(ins.text);
      // objdump shows RIP-relative targets as absolute addresses in a comment only; the operand text is comparable.
      const mine = formatIntel(d.insn).split(" ").slice(1).join(" ");
      if (mine !== theirs) diffs.push(`${hex(ins.bytes)}: ours "${mine}", objdump "${ins.text}"`);
    }
    expect(diffs).toEqual([]);
  });

  it("shared libraries (libm; under `npm run fuzz` also libc, libcrypto and the cached Debian vmlinux)", () => {
    const files = ["/usr/lib/x86_64-linux-gnu/libm.so.6"];
    if (SCALE > 1) {
      files.push("/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libcrypto.so.3");
      // fetch-debian-kernel.mjs caches it here; the fuzz run uses it when a boot test has fetched it.
      const vmlinux = join(import.meta.dirname, "../../../.cache/debian-kernel/vmlinux");
      if (existsSync(vmlinux)) files.push(vmlinux);
    }
    for (const f of files.filter((x) => existsSync(x))) {
      const r = compareStream(objdumpElf(f, "long64"), "long64");
      console.log(`${f}: ${r.compared} compared, ${r.agreed} agreed, ${r.rejectedSameLength.length + r.rejectedOther.length} rejected (#UD: LOCK misuse, VEX after prefix)`);
      expectStreamAgrees(r, f);
    }
  }, 600_000);
});
