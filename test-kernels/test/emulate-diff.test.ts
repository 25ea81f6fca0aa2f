import { defineStruct, GuestMemoryMap, type StructLayout, u64 } from "@tsvmm/abi";
import { Emulator, SimpleCpu } from "@tsvmm/x86";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { buildGuests, runGuest } from "../harness/guest.js";

// Differential test on KVM: each instruction runs natively at CPL3 inside a guest (CPL3 runs on the
// processor here) and in @tsvmm/x86's Emulator over a SimpleCpu, from the same registers, flags and
// memory; results must agree on every register, every flag the SDM defines for that instruction and
// input, and the memory operand. The guest (test-kernels/tests/cpl3-diff.c) takes its cases from a
// block the test writes; 4 fast-check input sets per instruction in `npm test`, 40 under TSVMM_FUZZ.

const BLOCK = 0x400000;
const STUBS = BLOCK + 0x100000;
const CODE = 0x1000;
const MEM = 0x2000;
const MAGIC = 0x4646494433435044n;
const CF = 0x1n;
const AF = 0x10n;
const OF = 0x800n;
const STATUS = 0x8d5n;

interface DiffCase {
  inRax: bigint;
  inRbx: bigint;
  inRcx: bigint;
  inRdx: bigint;
  inRdi: bigint;
  inFlags: bigint;
  outRax: bigint;
  outRbx: bigint;
  outRcx: bigint;
  outRdx: bigint;
  outRsi: bigint;
  outRdi: bigint;
  outFlags: bigint;
  mem0: bigint;
  mem1: bigint;
  pad: bigint;
}
/** struct diff_case of cpl3-diff.c (its _Static_asserts pin size 0x80, out_rax 0x30, mem 0x68). */
const DiffCaseLayout: StructLayout<DiffCase> = defineStruct(
  "struct diff_case",
  ["inRax", "inRbx", "inRcx", "inRdx", "inRdi", "inFlags", "outRax", "outRbx", "outRcx", "outRdx", "outRsi", "outRdi", "outFlags", "mem0", "mem1", "pad"].map((n) => u64(n)),
);

type Mask = (rcx: bigint) => bigint;
const all: Mask = () => STATUS;
const logic: Mask = () => STATUS & ~AF;
/** SHL/SHR/SAR by CL: nothing changes for count 0; AF undefined otherwise, OF beyond 1, CF of SHL/SHR at or past the width. */
const shiftCl =
  (width: number, cfUndefinedPastWidth: boolean): Mask =>
  (rcx) => {
    const n = Number(rcx & (width === 64 ? 63n : 31n));
    if (n === 0) return STATUS;
    let m = STATUS & ~AF;
    if (n > 1) m &= ~OF;
    if (cfUndefinedPastWidth && n >= width) m &= ~CF;
    return m;
  };
const rotateCl =
  (width: number): Mask =>
  (rcx) => {
    const n = Number(rcx & (width === 64 ? 63n : 31n));
    return n > 1 ? STATUS & ~OF : STATUS;
  };

const hex = (s: string) => Uint8Array.from(s.split(" ").map((b) => Number.parseInt(b, 16)));
const INSNS: ReadonlyArray<{ text: string; bytes: Uint8Array; mask: Mask }> = [
  ["add rax, rbx", "48 01 d8", all], ["adc rax, rbx", "48 11 d8", all], ["sbb rax, rbx", "48 19 d8", all], ["sub rax, rbx", "48 29 d8", all],
  ["and rax, rbx", "48 21 d8", logic], ["or rax, rbx", "48 09 d8", logic], ["xor rax, rbx", "48 31 d8", logic], ["cmp rax, rbx", "48 39 d8", all],
  ["test rax, rbx", "48 85 d8", logic], ["add eax, ebx", "01 d8", all], ["sub ax, bx", "66 29 d8", all], ["add al, bl", "00 d8", all],
  ["add ah, bh", "00 fc", all], ["add [rsi], rax", "48 01 06", all], ["sub rax, [rsi]", "48 2b 06", all], ["and [rsi], ebx", "21 1e", logic],
  ["or byte [rsi], bl", "08 1e", logic], ["xor word [rsi], bx", "66 31 1e", logic], ["cmp qword [rsi], rbx", "48 39 1e", all],
  ["test [rsi], eax", "85 06", logic], ["add dword [rsi], 0x7f", "83 06 7f", all], ["sub qword [rsi], 0x12345678", "48 81 2e 78 56 34 12", all],
  ["adc byte [rsi], 0x80", "80 16 80", all], ["sbb [rsi], rcx", "48 19 0e", all], ["inc qword [rsi]", "48 ff 06", all], ["dec dword [rsi]", "ff 0e", all],
  ["neg byte [rsi]", "f6 1e", all], ["not qword [rsi]", "48 f7 16", all], ["neg rax", "48 f7 d8", all], ["inc eax", "ff c0", all],
  ["shl rax, cl", "48 d3 e0", shiftCl(64, true)], ["shr rax, cl", "48 d3 e8", shiftCl(64, true)], ["sar rax, cl", "48 d3 f8", shiftCl(64, false)],
  ["rol rax, cl", "48 d3 c0", rotateCl(64)], ["ror rax, cl", "48 d3 c8", rotateCl(64)], ["rcl rax, cl", "48 d3 d0", rotateCl(64)],
  ["rcr rax, cl", "48 d3 d8", rotateCl(64)], ["shl dword [rsi], cl", "d3 26", shiftCl(32, true)], ["sar byte [rsi], cl", "d2 3e", shiftCl(8, false)],
  ["shr word [rsi], cl", "66 d3 2e", shiftCl(16, true)], ["shl rax, 1", "48 d1 e0", () => STATUS & ~AF], ["sar eax, 1", "d1 f8", () => STATUS & ~AF],
  ["shr rax, 5", "48 c1 e8 05", () => STATUS & ~AF & ~OF], ["rol ebx, 3", "c1 c3 03", () => STATUS & ~OF],
  ["movzx eax, byte [rsi]", "0f b6 06", all], ["movzx ebx, word [rsi]", "0f b7 1e", all], ["movsx rax, byte [rsi]", "48 0f be 06", all],
  ["movsx ecx, word [rsi]", "0f bf 0e", all], ["movsxd rdx, dword [rsi]", "48 63 16", all], ["mov [rsi], rax", "48 89 06", all],
  ["mov ebx, [rsi]", "8b 1e", all], ["mov byte [rsi], 0x5a", "c6 06 5a", all], ["mov al, [rsi]", "8a 06", all],
  ["popcnt rax, rbx", "f3 48 0f b8 c3", all], ["popcnt eax, [rsi]", "f3 0f b8 06", all], ["popcnt ax, bx", "66 f3 0f b8 c3", all],
  ["cmpxchg8b [rsi]", "0f c7 0e", all],
].map(([text, bytes, mask]) => ({ text: text as string, bytes: hex(bytes as string), mask: mask as Mask }));

const word = fc.oneof(
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  fc.constantFrom(0n, 1n, 2n ** 64n - 1n, 2n ** 63n, 2n ** 63n - 1n, 0x80n, 0xffn, 0x7fffn, 0xffffffffn),
  fc.bigInt({ min: 0n, max: 70n }),
);
const input = fc.record({
  rax: word,
  rbx: word,
  rcx: word,
  rdx: word,
  rdi: word,
  flags: fc.bigInt({ min: 0n, max: STATUS }).map((f) => (f & STATUS) | 0x202n),
  mem: fc.tuple(word, word),
});
type Input = typeof input extends fc.Arbitrary<infer T> ? T : never;

const PER_INSN = process.env.TSVMM_FUZZ ? 40 : 4;

beforeAll(() => buildGuests());

function emulate(bytes: Uint8Array, i: Input): { regs: bigint[]; flags: bigint; mem: [bigint, bigint] } {
  const memory = GuestMemoryMap.allocate([{ base: 0, size: 0x4000 }]);
  memory.write(CODE, bytes);
  memory.writeU64(MEM, i.mem[0]);
  memory.writeU64(MEM + 8, i.mem[1]);
  const cpu = new SimpleCpu({ memory });
  cpu.rip = BigInt(CODE);
  cpu.rflags = i.flags;
  [cpu.gpr[0], cpu.gpr[3], cpu.gpr[1], cpu.gpr[2], cpu.gpr[6], cpu.gpr[7]] = [i.rax, i.rbx, i.rcx, i.rdx, BigInt(MEM), i.rdi];
  const out = new Emulator(cpu).step();
  expect(out.kind, JSON.stringify(out, (_k, v) => (typeof v === "bigint" ? v.toString(16) : v))).toBe("executed");
  return { regs: [cpu.gpr[0]!, cpu.gpr[3]!, cpu.gpr[1]!, cpu.gpr[2]!, cpu.gpr[7]!], flags: cpu.rflags, mem: [memory.readU64(MEM), memory.readU64(MEM + 8)] };
}

describe("emulator against the processor at CPL3 (KVM)", () => {
  it(`${INSNS.length} ALU/MMIO-subset instructions and POPCNT/CMPXCHG8B, ${PER_INSN} input sets each`, async () => {
    const inputs = fc.sample(input, { numRuns: INSNS.length * PER_INSN, seed: Number(process.env.TSVMM_SEED ?? 0x5eed) });
    const cases = inputs.map((i, k) => ({ insn: INSNS[k % INSNS.length]!, input: i }));
    const results: DiffCase[] = [];
    const r = await runGuest({
      name: "cpl3-diff",
      timeoutMs: 30_000,
      prepare: ({ memory }) => {
        memory.writeU64(BLOCK, MAGIC);
        memory.writeU64(BLOCK + 8, BigInt(cases.length));
        cases.forEach(({ insn, input: i }, k) => {
          const c: DiffCase = {
            inRax: i.rax, inRbx: i.rbx, inRcx: i.rcx, inRdx: i.rdx, inRdi: i.rdi, inFlags: i.flags,
            outRax: 0n, outRbx: 0n, outRcx: 0n, outRdx: 0n, outRsi: 0n, outRdi: 0n, outFlags: 0n, mem0: i.mem[0], mem1: i.mem[1], pad: 0n,
          };
          memory.writeObj(DiffCaseLayout, BLOCK + 0x100 + k * DiffCaseLayout.size, c);
          memory.write(STUBS + 32 * k, Uint8Array.from([...insn.bytes, 0xc3]));
        });
        return undefined;
      },
      inspect: ({ vm }) => {
        for (let k = 0; k < cases.length; k++) results.push(vm.memory.readObj(DiffCaseLayout, BLOCK + 0x100 + k * DiffCaseLayout.size));
      },
    });
    expect(r.end).toEqual({ kind: "exit" });
    expect(r.value("fault")).toBe(2n ** 64n - 1n);
    expect(r.value("cases")).toBe(BigInt(cases.length));
    const mismatches: string[] = [];
    cases.forEach(({ insn, input: i }, k) => {
      const hw = results[k]!;
      const em = emulate(insn.bytes, i);
      const mask = insn.mask(i.rcx);
      const hwRegs = [hw.outRax, hw.outRbx, hw.outRcx, hw.outRdx, hw.outRdi];
      const same = hwRegs.every((v, n) => v === em.regs[n]) && (hw.outFlags & mask) === (em.flags & mask) && hw.mem0 === em.mem[0] && hw.mem1 === em.mem[1];
      if (!same) {
        const h = (v: bigint) => v.toString(16);
        mismatches.push(
          `${insn.text} in rax=${h(i.rax)} rbx=${h(i.rbx)} rcx=${h(i.rcx)} rdx=${h(i.rdx)} flags=${h(i.flags)} mem=${h(i.mem[0])},${h(i.mem[1])}: ` +
            `cpu regs ${hwRegs.map(h)} flags ${h(hw.outFlags & mask)} mem ${h(hw.mem0)},${h(hw.mem1)}; emulator regs ${em.regs.map(h)} flags ${h(em.flags & mask)} mem ${h(em.mem[0])},${h(em.mem[1])}`,
        );
      }
    });
    expect(mismatches).toEqual([]);
  }, 60_000);
});
