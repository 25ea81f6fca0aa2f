import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  abridgedTagWord,
  decodeGPacket,
  decodeRegister,
  encodeGPacket,
  encodeRegister,
  fullTagWord,
  type GdbArchitecture,
  registerLayout,
  resetRegisters,
  targetDescriptionXml,
  type X86IntRegister,
  type X86Registers,
} from "@tsvmm/gdbstub";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";

const dir = mkdtempSync(join(tmpdir(), "gdbstub-tdesc-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** gdb's own reading of our target description: name → [remote number, g offset, size]. */
function gdbRegisters(arch: GdbArchitecture): { arch: string; regs: Map<string, [number, number, number]> } {
  const file = join(dir, `${arch.replace(/[^a-z0-9]/gi, "_")}.xml`);
  writeFileSync(file, targetDescriptionXml(arch));
  const out = execFileSync("gdb", ["-batch", "-nx", "-ex", `set tdesc filename ${file}`, "-ex", "show architecture", "-ex", "maint print remote-registers"], { encoding: "utf8" });
  expect(out).not.toMatch(/warning|error/i);
  const regs = new Map<string, [number, number, number]>();
  for (const line of out.split("\n")) {
    // " Name Nr Rel Offset Size Type RmtNr g/G-Offset"
    const m = /^ (\w+)\s+\d+\s+\d+\s+\d+\s+(\d+)\s+\S+\s+(\d+)\s+(\d+)\s*$/.exec(line);
    if (m) regs.set(m[1]!, [Number(m[3]), Number(m[4]), Number(m[2])]);
  }
  return { arch: /currently "([^"]+)"/.exec(out)?.[1] ?? "", regs };
}

describe("register layouts as the real gdb reads our target descriptions", () => {
  for (const arch of ["i386:x86-64", "i386", "i8086"] as const) {
    it(`${arch}: every register has gdb's remote number, g offset and size`, () => {
      const layout = registerLayout(arch);
      const seen = gdbRegisters(arch);
      expect(seen.arch).toBe(arch);
      expect(seen.regs.size).toBe(layout.registers.length);
      for (const r of layout.registers) expect([r.name, ...(seen.regs.get(r.name) ?? [])]).toEqual([r.name, r.regnum, r.offset, r.bits / 8]);
    });
  }

  it("x86-64 keeps gdb's amd64 order for the first 57 registers and adds segment bases and control registers after", () => {
    const names = registerLayout("i386:x86-64").registers.map((r) => r.name);
    expect(names.slice(0, 18)).toEqual(["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "eflags"]);
    expect(names.slice(56)).toEqual(["mxcsr", "fs_base", "gs_base", "k_gs_base", "cr0", "cr2", "cr3", "cr4", "cr8", "efer"]);
    expect(registerLayout("i386:x86-64").gPacketBytes).toBe(536 + 9 * 8);
    expect(registerLayout("i386").registers.slice(0, 9).map((r) => r.name)).toEqual(["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip"]);
  });
});

const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const bytes = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });
const INT_NAMES: X86IntRegister[] = ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "fsBase", "gsBase", "kernelGsBase", "cr0", "cr2", "cr3", "cr4", "cr8", "efer"];
const SEGMENTS = ["cs", "ss", "ds", "es", "fs", "gs"] as const;
const regsArb: fc.Arbitrary<X86Registers> = fc
  .record({
    ints: fc.array(u64, { minLength: INT_NAMES.length, maxLength: INT_NAMES.length }),
    rflags: fc.bigInt({ min: 0n, max: 0xffffffffn }),
    segs: fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 6, maxLength: 6 }),
    st: fc.array(bytes(10), { minLength: 8, maxLength: 8 }),
    x87: fc.array(fc.nat(0xffff), { minLength: 8, maxLength: 8 }),
    xmm: fc.array(bytes(16), { minLength: 16, maxLength: 16 }),
    mxcsr: fc.nat(0xffff),
  })
  .map(({ ints, rflags, segs, st, x87, xmm, mxcsr }) => {
    const [fctrl, fstat, ftag, fiseg, fioff, foseg, fooff, fop] = x87 as [number, number, number, number, number, number, number, number];
    const r: X86Registers = {
      ...resetRegisters(),
      ...Object.fromEntries(INT_NAMES.map((n, i) => [n, ints[i]!])),
      ...Object.fromEntries(SEGMENTS.map((n, i) => [n, segs[i]!])),
      rflags,
      fpu: { st, fctrl, fstat, ftag, fiseg, fioff, foseg, fooff, fop },
      sse: { xmm, mxcsr },
    };
    return r;
  });

const norm = (r: X86Registers) => JSON.parse(JSON.stringify(r, (_k, v) => (typeof v === "bigint" ? v.toString(16) : v instanceof Uint8Array ? [...v] : v)));

describe("g/G and p/P encodings", () => {
  it("x86-64: G of g is the identity; every register is little-endian at its offset", () => {
    fc.assert(
      fc.property(regsArb, (regs) => {
        const g = encodeGPacket("i386:x86-64", regs);
        expect(norm(decodeGPacket("i386:x86-64", g, resetRegisters()))).toEqual(norm(regs));
        const b = Buffer.from(g, "hex");
        const at = (name: string) => registerLayout("i386:x86-64").registers.find((r) => r.name === name)!.offset;
        expect(b.readBigUInt64LE(at("rbx"))).toBe(regs.rbx);
        expect(b.readBigUInt64LE(at("k_gs_base"))).toBe(regs.kernelGsBase);
        expect(b.readUInt32LE(at("gs"))).toBe(regs.gs);
        expect([...b.subarray(at("st3"), at("st3") + 10)]).toEqual([...regs.fpu!.st[3]!]);
        expect([...b.subarray(at("xmm15"), at("xmm15") + 16)]).toEqual([...regs.sse!.xmm[15]!]);
      }),
      { numRuns: 200 },
    );
  });

  it("i386: sends low halves and a write keeps the high halves of the 64-bit registers", () => {
    fc.assert(
      fc.property(regsArb, regsArb, (regs, base) => {
        const g = encodeGPacket("i386", regs);
        const back = decodeGPacket("i386", g, base);
        expect(back.rax).toBe((base.rax & 0xffffffff00000000n) | (regs.rax & 0xffffffffn));
        expect(back.rsp).toBe((base.rsp & 0xffffffff00000000n) | (regs.rsp & 0xffffffffn));
        expect(back.rip).toBe((base.rip & 0xffffffff00000000n) | (regs.rip & 0xffffffffn));
        expect(back.efer).toBe(regs.efer);
        expect(back.r8).toBe(base.r8);
        expect(back.kernelGsBase).toBe(base.kernelGsBase);
        expect(back.sse!.xmm.slice(0, 8).map((x) => [...x])).toEqual(regs.sse!.xmm.slice(0, 8).map((x) => [...x]));
        expect(back.sse!.xmm.slice(8).map((x) => [...x])).toEqual(base.sse!.xmm.slice(8).map((x) => [...x]));
      }),
      { numRuns: 200 },
    );
  });

  it("p/P address one register by number; missing FPU/SSE state reads as unavailable (x)", () => {
    const regs = { ...resetRegisters(), rip: 0x1122334455667788n };
    expect(encodeRegister("i386:x86-64", regs, 16)).toBe("8877665544332211");
    expect(encodeRegister("i386", regs, 8)).toBe("88776655");
    expect(encodeRegister("i386:x86-64", regs, 24)).toBe("xx".repeat(10));
    expect(encodeRegister("i386:x86-64", regs, 66)).toBeUndefined();
    expect(decodeRegister("i386:x86-64", regs, 62, "0010000000000000").cr3).toBe(0x1000n);
    const withXmm = decodeRegister("i386:x86-64", regs, 40, "0f".repeat(16));
    expect([...withXmm.sse!.xmm[0]!]).toEqual(new Array(16).fill(15));
    expect(withXmm.sse!.mxcsr).toBe(0x1f80);
    expect(() => decodeRegister("i386:x86-64", regs, 16, "00")).toThrow(expect.objectContaining({ code: "GDBSTUB_MALFORMED_PACKET" }));
    // A G packet that stops at a register boundary leaves the rest; one that cuts a register is refused.
    expect(decodeGPacket("i386:x86-64", "01".repeat(8), regs).rip).toBe(regs.rip);
    expect(() => decodeGPacket("i386:x86-64", "01".repeat(9), regs)).toThrow();
    // 'x' digits in a G packet leave that register alone.
    expect(decodeGPacket("i386:x86-64", "xx".repeat(8) + "02".repeat(8), regs).rax).toBe(0n);
  });
});

describe("x87 tag word", () => {
  const ext = (hexLE: string) => Buffer.from(hexLE, "hex");
  const ONE = ext("00000000000000803fff"); // 1.0: exponent 0x3fff, integer bit set
  const ZERO = ext("00000000000000000000");
  const INF = ext("0000000000000080ff7f");
  const DENORMAL = ext("01000000000000000000");

  it("derives valid/zero/special/empty from the abridged tag and the contents (SDM Vol. 1 10.5.1.1)", () => {
    // TOP = 0: ST(i) is physical register i.
    expect(fullTagWord(0b1111, 0, [ONE, ZERO, INF, DENORMAL, ONE, ONE, ONE, ONE])).toBe(0b11111111_10100100);
    // TOP = 6: ST(0) is physical 6, ST(1) is physical 7, ST(2) is physical 0.
    expect(fullTagWord(0b11000001, 6 << 11, [ZERO, ONE, INF, ONE, ONE, ONE, ONE, ONE])).toBe(0b00_01_11_11_11_11_11_10);
    expect(fullTagWord(0, 0, [])).toBe(0xffff);
  });

  it("abridging a full tag keeps which registers are in use", () => {
    fc.assert(
      fc.property(fc.nat(0xff), fc.nat(7), fc.array(bytes(10), { minLength: 8, maxLength: 8 }), (abr, top, st) => {
        expect(abridgedTagWord(fullTagWord(abr, top << 11, st))).toBe(abr);
      }),
      { numRuns: 300 },
    );
  });
});
