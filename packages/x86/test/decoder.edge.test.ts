// Rare encodings the random and real-stream checks seldom reach (3DNow!, XOP maps 8/9/A, EVEX in
// 16-bit code and map 6, AMX, BMI1 group 17, VEX forms with the wrong pp or ModRM, far pointers,
// 16-bit relative branches, riz/eiz and eip-relative text), each decoded alone and compared with
// GNU objdump: same length always; the same text where formatIntel is meant to agree; and where the
// decoder says #UD, either objdump says (bad) too, or the SDM/APM rule that makes it #UD is named.
import { type CpuMode, decode, formatIntel, formatOperand } from "@tsvmm/x86";
import { describe, expect, it } from "vitest";
import { objdumpBinary } from "./helpers/objdump.js";

type Expect =
  /** objdump prints exactly formatIntel's text (mnemonic padding aside). */
  | { text: true }
  /** Same operands as objdump (the mnemonic is the decoder's own: callf, jmpf, x87...). */
  | { operands: true }
  /** Only the length is compared (operands of non-emulated VEX/EVEX/XOP forms are not modelled). */
  | { length: true }
  /** The decoder says #UD and objdump says (bad). */
  | { bad: true }
  /** The decoder says #UD, objdump decodes it anyway; `rule` is why the CPU raises #UD. */
  | { ud: string };

const CASES: [CpuMode, string, Expect][] = [
  // 3DNow!: the opcode is the byte after ModRM/SIB/displacement.
  ["long64", "0f 0f c1 9e", { length: true }],
  ["long64", "0f 0f 44 24 08 b4", { length: true }],
  ["long64", "41 90", { text: true }], // 90 with REX.B is xchg r8d, eax, not nop
  ["protected16", "99", { text: true }],
  ["protected32", "66 99", { text: true }],
  ["protected32", "99", { text: true }],
  ["long64", "48 99", { text: true }],
  ["real", "e9 fd ff", { text: true }], // rel16
  ["protected32", "66 e9 00 00", { operands: true }],
  ["long64", "e8 00 00 00 00", { text: true }],
  ["protected32", "e8 f0 ff ff ff", { text: true }], // target wraps at 32 bits
  ["long64", "eb fe", { text: true }],
  ["real", "ea 00 10 00 f0", { operands: true }], // ptr16:16
  ["protected32", "ea 00 10 00 00 08 00", { operands: true }], // ptr16:32
  ["long64", "ff 1f", { operands: true }], // m16:32, FWORD
  ["protected32", "ff 2f", { operands: true }],
  ["protected32", "8b 04 25 00 00 00 00", { text: true }], // SIB without base or index: [eiz*1+disp32]
  ["long64", "67 8b 05 10 00 00 00", { text: true }], // eip-relative
  ["long64", "cc", { text: true }],
  ["long64", "90", { text: true }],
  ["long64", "c5 fc 77", { text: true }], // VEX.L = 1: vzeroall
  ["long64", "c5 f8 77", { text: true }], // VEX.L = 0: vzeroupper
  ["long64", "62 f5 7c 48 58 c1", { length: true }], // EVEX map 5 (vaddph)
  ["long64", "c5 f8 ae 17", { text: true }],
  ["long64", "c4 e3 7b f0 c1 05", { text: true }],
  ["long64", "c5 fd 70 c1 1b", { text: true }],
  ["long64", "c5 ec 41 cb", { length: true }], // kandw k1,k2,k3
  ["long64", "c4 e2 78 f3 c9", { length: true }], // blsr
  ["long64", "c4 e2 78 f3 d1", { length: true }], // blsmsk
  ["long64", "c4 e2 78 f3 d9", { length: true }], // blsi
  ["long64", "c4 e2 70 f5 c1", { length: true }], // bzhi
  ["long64", "c4 e2 78 49 c0", { length: true }], // tilerelease (AMX)
  ["long64", "62 f6 75 48 98 c2", { length: true }], // EVEX map 6 (AVX512-FP16)
  ["long64", "8f e8 78 c0 c1 05", { length: true }], // XOP map 8: imm8
  ["long64", "8f e9 78 80 c1", { length: true }], // XOP map 9: no immediate
  ["long64", "8f ea 78 10 c1 01 00 00 00", { length: true }], // XOP map A: imm32
  ["long64", "8f 48 78 c0 c1 05", { length: true }], // XOP.R/X/B extend to xmm8/xmm9
  ["protected16", "8f e9 78 80 47 01", { length: true }], // XOP, 16-bit [bx+disp8]
  ["protected32", "67 8f e9 78 80 47 01", { length: true }],
  ["protected16", "8f e9 78 80 06 34 12", { length: true }], // 16-bit disp16 alone
  ["protected16", "8f e9 78 80 87 34 12", { length: true }], // [bx+disp16]
  ["protected16", "8f e9 78 80 07", { length: true }], // [bx]
  ["protected16", "62 f1 7c 08 58 c1", { length: true }], // EVEX in 16-bit code (mod = 11)
  ["protected16", "62 f1 7c 08 58 47 01", { length: true }],
  ["protected16", "67 62 f1 7c 08 58 44 24 01", { length: true }], // 67: 32-bit addressing with SIB
  ["protected16", "62 f1 7c 08 58 06 34 12", { length: true }],
  ["protected16", "62 f1 7c 08 58 87 34 12", { length: true }],
  ["protected32", "67 62 f1 7c 08 58 47 01", { length: true }],
  ["long64", "67 62 f1 7c 08 58 47 01", { length: true }],
  // #UD that objdump also rejects.
  ["long64", "c5 f8 fc c1", { bad: true }], // MMX paddb has no VEX form
  ["long64", "c5 f8 ae d0", { bad: true }], // vldmxcsr needs memory
  ["long64", "c5 f8 ae 07", { bad: true }], // VEX 0F AE /0 does not exist
  ["long64", "c5 f8 78 c1", { bad: true }],
  ["long64", "c4 e2 78 f3 c1", { bad: true }], // group 17 /0
  ["long64", "c4 e2 79 f3 c9", { bad: true }], // group 17 with pp = 66
  ["long64", "c4 e2 79 f2 c1", { bad: true }], // andn with pp = 66
  ["long64", "c4 e2 78 00 c1", { bad: true }], // vpshufb needs pp = 66
  ["long64", "c4 e2 79 80 01", { bad: true }], // invept/invvpid have no VEX form
  ["long64", "c4 e2 79 f0 01", { bad: true }], // movbe has no VEX form
  ["long64", "c4 e3 79 f0 c1 05", { bad: true }], // rorx needs pp = F2
  ["long64", "c4 e3 78 0f c1 05", { bad: true }], // vpalignr needs pp = 66
  // #UD by rule, although objdump prints an instruction.
  ["real", "c5 f8 77", { ud: "SDM vol. 2 2.3.2: VEX is #UD in real-address and virtual-8086 mode" }],
  ["v86", "c5 f8 77", { ud: "SDM vol. 2 2.3.2: VEX is #UD in real-address and virtual-8086 mode" }],
  ["protected32", "0f 01 f8", { ud: "SWAPGS: #UD if not in 64-bit mode" }],
  ["long64", "66 8f e9 78 80 c1", { ud: "AMD APM vol. 3 1.8: XOP after a 66, F2, F3 or REX prefix is #UD" }],
  ["long64", "c5 f9 ae 17", { ud: "VLDMXCSR is VEX.LZ.0F (NP) AE /2: pp = 66 is another, undefined, opcode" }],
];

const bytesOf = (h: string): Uint8Array => Uint8Array.from(Buffer.from(h.replace(/ /g, ""), "hex"));
/** objdump's text with the mnemonic padding, a `# target` comment and {evex}/data16 pseudo-prefixes removed. */
const norm = (t: string): string => t.replace(/\s+#.*$/, "").replace(/\s+/g, " ").trim();

describe("rare encodings vs objdump", () => {
  const byMode = new Map<CpuMode, [string, Expect][]>();
  for (const [mode, h, e] of CASES) byMode.set(mode, [...(byMode.get(mode) ?? []), [h, e]]);

  for (const [mode, rows] of byMode) {
    it(`${mode}: ${rows.length} encodings`, () => {
      // One file per mode: each encoding at address 0 of its own 32-byte NOP-padded slot would shift
      // relative targets, so every encoding gets its own objdump run (they are few).
      const failures: string[] = [];
      for (const [h, e] of rows) {
        const bytes = bytesOf(h);
        const od = objdumpBinary(Buffer.concat([bytes, Buffer.alloc(16, 0x90)]), mode)[0]!;
        const r = decode(bytes, mode);
        const got = r.ok ? `${r.insn.length} ${formatIntel(r.insn)}` : `${r.reason} #${r.vector} ${r.detail}`;
        const odText = norm(od.text);
        let ok: boolean;
        if ("bad" in e) ok = !r.ok && r.reason === "invalid" && odText === "(bad)";
        else if ("ud" in e) ok = !r.ok && r.reason === "invalid" && r.vector === 6 && odText !== "(bad)";
        else if (!r.ok) ok = false;
        else if (r.insn.length !== od.bytes.length) ok = false;
        else if ("text" in e) ok = formatIntel(r.insn) === odText;
        else if ("operands" in e) ok = r.insn.operands.map((o) => formatOperand(o, r.insn)).join(",") === odText.replace(/^\S+ /, "");
        else ok = true;
        if (!ok) failures.push(`${h}: decoder ${got} | objdump ${od.bytes.length} ${odText}`);
      }
      expect(failures).toEqual([]);
    });
  }

  it("a buffer that stops inside a 3DNow!, XOP or EVEX instruction is `truncated`; with the rest it decodes", () => {
    for (const [mode, h] of [
      ["long64", "0f 0f 44 24 08 b4"],
      ["long64", "8f ea 78 10 c1 01 00 00 00"],
      ["protected16", "62 f1 7c 08 58 87 34 12"],
    ] as const) {
      const b = bytesOf(h);
      for (let n = 1; n < b.length; n++) expect([h, n, decode(b.subarray(0, n), mode)]).toMatchObject([h, n, { ok: false, reason: "truncated" }]);
      expect(decode(b, mode)).toMatchObject({ ok: true, insn: { length: b.length } });
    }
  });

  it("BMI1 group 17 (blsr/blsmsk/blsi): one operand, the r/m source objdump prints last (VEX.vvvv, the destination, is not modelled)", () => {
    for (const h of ["c4 e2 78 f3 c9", "c4 e2 f8 f3 d1", "c4 e2 78 f3 1f", "c4 c2 f8 f3 4c 24 08"]) {
      const r = decode(bytesOf(h), "long64");
      if (!r.ok) throw new Error(r.detail);
      const od = norm(objdumpBinary(Buffer.concat([bytesOf(h), Buffer.alloc(16, 0x90)]), "long64")[0]!.text);
      expect([h, r.insn.operands.length, formatOperand(r.insn.operands[0]!, r.insn)]).toEqual([h, 1, od.slice(od.lastIndexOf(",") + 1)]);
    }
  });

  it("REX.W far call/jmp takes m16:64 (SDM: FF /3 and FF /5 with REX.W), a TBYTE; objdump follows AMD and says FWORD", () => {
    for (const h of ["48 ff 1f", "48 ff 2f"]) {
      const r = decode(bytesOf(h), "long64");
      if (!r.ok) throw new Error(r.detail);
      expect(formatOperand(r.insn.operands[0]!, r.insn)).toBe("TBYTE PTR [rdi]");
    }
  });

  it("XOP fields: map, R/X/B only in 64-bit mode, W, vvvv, L, pp and the immediate's place", () => {
    const r = decode(bytesOf("8f 48 f0 c0 c1 05"), "long64");
    expect(r).toMatchObject({ ok: true, insn: { encoding: "xop", map: "xop8", immOffset: 5, immSize: 1, prefixes: { vex: { r: true, x: false, b: true, w: true, vvvv: 1, l: 0, pp: 0, mmmmm: 8 } } } });
    const s = decode(bytesOf("8f 48 f0 c0 c1 05"), "protected32");
    expect(s).toMatchObject({ ok: true, insn: { prefixes: { vex: { r: false, x: false, b: false } } } });
    expect(decode(bytesOf("8f ea 78 10 c1 01 00 00 00"), "long64")).toMatchObject({ ok: true, insn: { map: "xopa", immSize: 4, immOffset: 5 } });
    expect(decode(bytesOf("8f e9 78 80 c1"), "long64")).toMatchObject({ ok: true, insn: { map: "xop9", immSize: 0, immOffset: 0 } });
    expect(decode(bytesOf("8f eb 78 10 c1"), "long64")).toMatchObject({ ok: false, reason: "invalid" }); // map 11 reserved
  });
});
