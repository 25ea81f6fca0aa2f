import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type CLayoutCheck, CR0, CR3, CR4, CR8_TPR_MASK, cCheckSources, DR6, DR6_INIT, DR6_MBZ, DR7, DR7_INIT, DR7_LEN, DR7_LEN_SHIFT, DR7_MBZ, DR7_RW, DR7_RW_SHIFT, EFER, EXCEPTION_VECTOR, MSR, RFLAGS, RFLAGS_IOPL_SHIFT, RFLAGS_RESERVED } from "@tsvmm/abi";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// abi's architectural register bits against this machine's <asm/processor-flags.h> and
// <asm/debugreg.h>, through a C program compiled here. The preprocessor also lists every X86_CR0_*,
// X86_CR4_* and X86_EFLAGS_* macro the header has, so a bit the header knows and abi does not
// is found, and must be named below as one vendor's own.

const HEADERS = ["<asm/processor-flags.h>", "<asm/debugreg.h>"];

/** CR4 bits in the kernel header that only Intel defines (SDM Vol. 3A §2.5); the vmcs package declares them. */
const CR4_INTEL_ONLY = new Set(["VMXE", "SMXE", "KL", "PKS", "UINTR", "LASS", "LAM_SUP", "FRED"]);

type Check64 = { key: string; expr: string; value: bigint };
const checks: Check64[] = [];
const add = (key: string, expr: string, value: bigint | number): void => {
  checks.push({ key, expr, value: BigInt(value) });
};
for (const [k, v] of Object.entries(CR0)) add(`CR0.${k}`, `X86_CR0_${k}`, v);
for (const [k, v] of Object.entries(CR4)) add(`CR4.${k}`, `X86_CR4_${k}`, v);
add("CR3.PWT", "X86_CR3_PWT", CR3.PWT);
add("CR3.PCD", "X86_CR3_PCD", CR3.PCD);
add("CR3.PCID_MASK", "X86_CR3_PCID_MASK", CR3.PCID_MASK);
add("CR3.PCID_NOFLUSH", "X86_CR3_PCID_NOFLUSH", CR3.PCID_NOFLUSH);
add("CR8_TPR_MASK", "X86_CR8_TPR", CR8_TPR_MASK);
const EFLAGS_NAME: Record<string, string> = { FIXED1: "FIXED", IOPL_MASK: "IOPL" };
for (const [k, v] of Object.entries(RFLAGS)) add(`RFLAGS.${k}`, `X86_EFLAGS_${EFLAGS_NAME[k] ?? k}`, v);
add("RFLAGS_IOPL_SHIFT", "X86_EFLAGS_IOPL_BIT", RFLAGS_IOPL_SHIFT);
add("DR6_INIT", "DR6_RESERVED", DR6_INIT);
for (const n of [0, 1, 2, 3] as const) add(`DR6.B${n}`, `DR_TRAP${n}`, DR6[`B${n}`]);
add("DR6.B_MASK", "DR_TRAP_BITS", DR6.B_MASK);
add("DR6.BS", "DR_STEP", DR6.BS);
add("DR6.BT", "DR_SWITCH", DR6.BT);
add("DR7.L0", "DR_LOCAL_ENABLE", DR7.L0);
add("DR7.G0", "DR_GLOBAL_ENABLE", DR7.G0);
add("DR7.L1 shift", "DR_LOCAL_ENABLE << DR_ENABLE_SIZE", DR7.L1);
add("DR7.G3 shift", "DR_GLOBAL_ENABLE << (3 * DR_ENABLE_SIZE)", DR7.G3);
add("DR7.L*", "DR_LOCAL_ENABLE_MASK", DR7.L0 | DR7.L1 | DR7.L2 | DR7.L3);
add("DR7.G*", "DR_GLOBAL_ENABLE_MASK", DR7.G0 | DR7.G1 | DR7.G2 | DR7.G3);
add("DR7.LE", "DR_LOCAL_SLOWDOWN", DR7.LE);
add("DR7.GE", "DR_GLOBAL_SLOWDOWN", DR7.GE);
add("DR7_RW_SHIFT", "DR_CONTROL_SHIFT", DR7_RW_SHIFT);
add("DR7 field size", "DR_CONTROL_SIZE", 4);
add("DR7_RW.EXECUTE", "DR_RW_EXECUTE", DR7_RW.EXECUTE);
add("DR7_RW.WRITE", "DR_RW_WRITE", DR7_RW.WRITE);
add("DR7_RW.READ_WRITE", "DR_RW_READ", DR7_RW.READ_WRITE);
// The header's DR_LEN_* sit in the same 4-bit field as R/W, above it: LENn is 2 bits higher.
const lenInField = (len: number): bigint => BigInt(len) << (DR7_LEN_SHIFT - DR7_RW_SHIFT);
add("DR7_LEN.BYTES_1", "DR_LEN_1", lenInField(DR7_LEN.BYTES_1));
add("DR7_LEN.BYTES_2", "DR_LEN_2", lenInField(DR7_LEN.BYTES_2));
add("DR7_LEN.BYTES_4", "DR_LEN_4", lenInField(DR7_LEN.BYTES_4));
add("DR7_LEN.BYTES_8", "DR_LEN_8", lenInField(DR7_LEN.BYTES_8));
// Linux refuses DR7's reserved bits through ptrace; the architectural MBZ half must be among them.
add("DR7_MBZ within DR_CONTROL_RESERVED", "(DR_CONTROL_RESERVED & 0xffffffff00000000ULL)", DR7_MBZ);

let dir = "";
const fromC = new Map<string, bigint>();
let macros: string[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "tsvmm-x86-"));
  const src = cCheckSources(HEADERS, checks.map((c): CLayoutCheck => ({ key: c.key, expr: c.expr, value: 0 })));
  writeFileSync(join(dir, "values.c"), src.values);
  writeFileSync(join(dir, "main.c"), src.main);
  execFileSync("cc", ["-std=gnu11", "-o", join(dir, "x86"), join(dir, "values.c"), join(dir, "main.c")], { stdio: "pipe" });
  for (const line of execFileSync(join(dir, "x86"), { encoding: "utf8" }).trim().split("\n")) {
    const [k, v] = line.split("\t") as [string, string];
    fromC.set(k, BigInt.asUintN(64, BigInt(v)));
  }
  macros = execFileSync("cc", ["-dM", "-E", join(dir, "values.c")], { encoding: "utf8" })
    .split("\n")
    .map((l) => /^#define (\w+)/.exec(l)?.[1])
    .filter((m): m is string => m !== undefined);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const named = (prefix: string): string[] => macros.filter((m) => m.startsWith(prefix) && !m.endsWith("_BIT")).map((m) => m.slice(prefix.length));

describe("abi's x86 register bits against <asm/processor-flags.h> and <asm/debugreg.h>", () => {
  it("every value matches the C compiler's", () => {
    expect(fromC.size).toBe(checks.length);
    const bad = checks.filter((c) => fromC.get(c.key) !== c.value).map((c) => `${c.key} (${c.expr}): ts=0x${c.value.toString(16)} c=0x${fromC.get(c.key)?.toString(16)}`);
    expect(bad).toEqual([]);
  });

  it("every CR0 and EFLAGS bit the header names is declared", () => {
    expect(named("X86_CR0_").filter((k) => !(k in CR0))).toEqual([]);
    const rflagsC = new Set(Object.keys(RFLAGS).map((k) => EFLAGS_NAME[k] ?? k));
    expect(named("X86_EFLAGS_").filter((k) => !rflagsC.has(k))).toEqual([]);
  });

  it("every CR4 bit the header names is declared here or is Intel's own", () => {
    const cr4C = named("X86_CR4_");
    expect(cr4C.length).toBeGreaterThanOrEqual(Object.keys(CR4).length);
    expect(cr4C.filter((k) => !(k in CR4) && !CR4_INTEL_ONLY.has(k))).toEqual([]);
  });
});

// No installed header has EFER or the MSR numbers (<asm/msr-index.h> is kernel-internal), DR6.BD,
// the must-be-zero halves or the exception vectors: these are the SDM's and APM's tables, written out again here.
describe("abi's x86 facts against the manuals' tables", () => {
  it("EFER: SCE 0, LME 8, LMA 10, NXE 11 (SDM Vol. 3A Table 2-1, APM Vol. 2 Figure 3-9)", () => {
    expect(Object.entries(EFER).map(([k, v]) => [k, v.toString(2).length - 1])).toEqual([["SCE", 0], ["LME", 8], ["LMA", 10], ["NXE", 11]]);
  });
  it("DR6.BD is bit 13, DR7.GD bit 13, DR7 bit 10 reads 1; DR6/DR7 bits 63:32 are must-be-zero", () => {
    expect(DR6.BD).toBe(0x2000n);
    expect(DR7.GD).toBe(0x2000n);
    expect(DR7_INIT).toBe(DR7.FIXED1);
    expect(DR6_MBZ).toBe(DR7_MBZ);
    expect(DR6_MBZ.toString(16)).toBe("ffffffff00000000");
    expect(DR6_INIT & DR6_MBZ).toBe(0n);
  });
  it("RFLAGS reserved bits are 63:22, 15, 5, 3 and exclude every named flag and bit 1", () => {
    const named = Object.values(RFLAGS).reduce((m, v) => m | v, 0n);
    expect(RFLAGS_RESERVED & named).toBe(0n);
    expect(RFLAGS_RESERVED | named).toBe(0xffff_ffff_ffff_ffffn);
    expect([3n, 5n, 15n, 22n, 63n].every((b) => (RFLAGS_RESERVED >> b) & 1n)).toBe(true);
  });
  it("MSR numbers (SDM Vol. 4 Table 2-2, APM Vol. 2 appendix A)", () => {
    expect(MSR).toEqual({
      IA32_SYSENTER_CS: 0x174, IA32_SYSENTER_ESP: 0x175, IA32_SYSENTER_EIP: 0x176, IA32_DEBUGCTL: 0x1d9, IA32_PAT: 0x277, IA32_XSS: 0xda0,
      EFER: 0xc0000080, STAR: 0xc0000081, LSTAR: 0xc0000082, CSTAR: 0xc0000083, SFMASK: 0xc0000084,
      FS_BASE: 0xc0000100, GS_BASE: 0xc0000101, KERNEL_GS_BASE: 0xc0000102, TSC_AUX: 0xc0000103,
    });
  });
  it("exception vectors (SDM Vol. 3A Table 6-1, APM Vol. 2 Table 8-1)", () => {
    expect(EXCEPTION_VECTOR).toEqual({ DE: 0, DB: 1, NMI: 2, BP: 3, OF: 4, BR: 5, UD: 6, NM: 7, DF: 8, TS: 10, NP: 11, SS: 12, GP: 13, PF: 14, MF: 16, AC: 17, MC: 18, XM: 19, CP: 21 });
  });
});
