// Hand-checked decodings (SDM vol. 2 chapter 2 and appendix A) of the forms the emulator depends on.
import { decode, type Instruction, MAX_INSN_LENGTH } from "@tsvmm/x86";
import { describe, expect, it } from "vitest";

const h = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/ /g, ""), "hex"));
function ok(bytes: string, mode: Parameters<typeof decode>[1] = "long64"): Instruction {
  const r = decode(h(bytes), mode);
  if (!r.ok) throw new Error(`${bytes}: ${r.reason} ${r.detail}`);
  return r.insn;
}

describe("decoder", () => {
  it("lock cmpxchg16b with a GS override: REX.W selects the 16-byte form, operand is m128", () => {
    const i = ok("65 f0 48 0f c7 0f");
    expect(i.length).toBe(6);
    expect(i.mnemonic).toBe("cmpxchg16b");
    expect(i.prefixes.lock).toBe(true);
    expect(i.operands[0]).toMatchObject({ kind: "mem", bits: 128, segment: "gs", base: { name: "rdi" } });
    expect(ok("f0 0f c7 0f").mnemonic).toBe("cmpxchg8b");
  });

  it("RIP-relative: mod=00 rm=101 in 64-bit mode, disp32 relative to the next instruction", () => {
    const i = ok("8b 05 78 56 34 12");
    expect(i.operands[1]).toMatchObject({ kind: "mem", ripRelative: true, disp: 0x12345678n, base: undefined });
    // In 32-bit mode the same bytes are an absolute disp32.
    const j = ok("8b 05 78 56 34 12", "protected32");
    expect(j.operands[1]).toMatchObject({ ripRelative: false, base: undefined, disp: 0x12345678n });
  });

  it("SIB with no base (mod=00, base=101) takes a disp32; index 100 means none", () => {
    const i = ok("8b 04 8d 10 00 00 00");
    expect(i.operands[1]).toMatchObject({ base: undefined, index: { name: "rcx" }, scale: 4, disp: 16n });
    const k = ok("8b 04 24");
    expect(k.operands[1]).toMatchObject({ base: { name: "rsp" }, index: undefined, segment: "ss" });
  });

  it("16-bit addressing: [bp+si+disp8] defaults to SS; 67 switches 32-bit code to it", () => {
    const i = ok("8b 42 fe", "real");
    expect(i.operands[1]).toMatchObject({ base: { name: "bp" }, index: { name: "si" }, disp: -2n, segment: "ss", addressBits: 16 });
    expect(ok("67 8b 07", "protected32").operands[1]).toMatchObject({ base: { name: "bx" }, addressBits: 16 });
  });

  it("operand size: 66 gives 16, REX.W gives 64 and wins over 66; byte registers with REX are SPL..DIL", () => {
    expect(ok("66 48 89 c8").operandSize).toBe(64);
    expect(ok("66 89 c8").operands[0]).toMatchObject({ reg: { name: "ax" } });
    expect(ok("40 88 e0").operands).toMatchObject([{ reg: { name: "al" } }, { reg: { name: "spl" } }]);
    expect(ok("88 e0").operands[1]).toMatchObject({ reg: { name: "ah", index: 0, high8: true } });
  });

  it("immediates: Iz is 4 bytes sign-extended under REX.W, Iv is 8 bytes for B8+r, moffs follows the address size", () => {
    expect(ok("48 c7 00 ff ff ff ff").operands[1]).toMatchObject({ kind: "imm", value: 0xffffffffffffffffn, bits: 64 });
    expect(ok("48 b8 01 02 03 04 05 06 07 08").length).toBe(10);
    expect(ok("a1 01 02 03 04 05 06 07 08").length).toBe(9);
    expect(ok("67 a1 01 02 03 04").length).toBe(6);
    expect(ok("a1 01 02 03 04", "protected32").length).toBe(5);
    expect(ok("a1 01 02", "real").length).toBe(3);
  });

  it("VEX: C5 and C4 fields, vmovdqu ymm; C4/C5 are LES/LDS in 32-bit mode unless ModRM.mod is 11", () => {
    const v = ok("c5 fe 6f 07");
    expect(v.mnemonic).toBe("vmovdqu");
    expect(v.prefixes.vex).toMatchObject({ size: 2, l: 1, pp: 2, vvvv: 0 });
    expect(v.operands[0]).toMatchObject({ reg: { name: "ymm0" } });
    const w = ok("c4 c1 7a 6f 08");
    expect(w.prefixes.vex).toMatchObject({ size: 3, r: false, b: true, l: 0 });
    expect(w.operands).toMatchObject([{ reg: { name: "xmm1" } }, { base: { name: "r8" } }]);
    expect(ok("c5 06", "protected32").mnemonic).toBe("lds");
  });

  it("EVEX is measured: 4-byte prefix, ModRM, disp8 (compressed), immediate for map 3", () => {
    expect(ok("62 f1 fe 48 6f 40 01").length).toBe(7);
    expect(ok("62 f3 75 48 25 c2 96").length).toBe(7);
  });

  it("invalid encodings are typed results, never exceptions", () => {
    expect(decode(h("0f 0b"), "long64")).toMatchObject({ ok: true });
    expect(decode(h("06"), "long64")).toMatchObject({ ok: false, reason: "invalid", vector: 6 });
    expect(decode(h("f0 89 c8"), "long64")).toMatchObject({ ok: false, reason: "invalid", vector: 6 });
    expect(decode(h("f0 8b 00"), "long64")).toMatchObject({ ok: false, reason: "invalid" });
    expect(decode(h("0f c7 c8"), "long64")).toMatchObject({ ok: false, reason: "invalid" });
    expect(decode(h("66 c5 fe 6f 07"), "long64")).toMatchObject({ ok: false, reason: "invalid" });
    expect(decode(h("8c f8"), "long64")).toMatchObject({ ok: false, reason: "invalid" });
  });

  it("15-byte limit: 14 prefixes + a 2-byte instruction is #GP, 15 bytes is fine; short input is `truncated`", () => {
    expect(decode(h(`${"66 ".repeat(13)}89 c8`), "long64")).toMatchObject({ ok: true, insn: { length: 15 } });
    expect(decode(h(`${"66 ".repeat(14)}89 c8`), "long64")).toMatchObject({ ok: false, reason: "too-long", vector: 13 });
    expect(MAX_INSN_LENGTH).toBe(15);
    expect(decode(h("48 8b 05 00"), "long64")).toMatchObject({ ok: false, reason: "truncated", vector: undefined });
    expect(decode(h(""), "long64")).toMatchObject({ ok: false, reason: "truncated" });
  });

  it("REX before a legacy prefix is ignored; 64-bit mode ignores a DS override after FS", () => {
    const i = ok("48 66 89 c8");
    expect(i.prefixes.rex).toBeUndefined();
    expect(i.operandSize).toBe(16);
    expect(ok("64 3e 8b 00").operands[1]).toMatchObject({ segment: "fs" });
    expect(ok("64 3e 8b 00", "protected32").operands[1]).toMatchObject({ segment: "ds" });
  });

  it("mandatory prefixes: F3 0F B8 is popcnt (66 there is still operand size), F3 0F C7 /7 is rdpid", () => {
    expect(ok("66 f3 0f b8 c1")).toMatchObject({ mnemonic: "popcnt", operandSize: 16 });
    expect(ok("f3 0f c7 f8")).toMatchObject({ mnemonic: "rdpid", operands: [{ reg: { name: "rax" } }] });
    expect(ok("66 0f c7 f0")).toMatchObject({ mnemonic: "rdrand", operandSize: 16 });
    expect(decode(h("0f b8 c1"), "long64")).toMatchObject({ ok: false, reason: "invalid" });
  });
});
