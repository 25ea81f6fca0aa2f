import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeExitInfo, decodeIoioInfo, encodeIoioInfo, exitCodeName, NPF, VMEXIT } from "@tsvmm/svm";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// The exit codes are checked against this machine's <asm/svm.h> (linux-libc-dev): every
// SVM_EXIT_* macro the header defines is listed with `gcc -dM -E`, then a compiled program prints
// each value; each must be in VMEXIT under the APM's name with the same code.

/** Header names that differ from the APM names used by VMEXIT. */
function apmName(linux: string): string | undefined {
  const m = /^(READ|WRITE)_(CR|DR)(\d+)$/.exec(linux);
  if (m) return `${m[2]}${m[3]}_${m[1]}`;
  const special: Record<string, string | undefined> = {
    EXCP_BASE: "EXCP0",
    LAST_EXCP: "EXCP31",
    ERR: "INVALID",
    MWAIT_COND: "MWAIT_CONDITIONAL",
    AVIC_UNACCELERATED_ACCESS: "AVIC_NOACCEL",
    SW: undefined, // F000_0000h: reserved for software, not a hardware exit code
    REASONS: undefined, // the name table macro
  };
  return linux in special ? special[linux] : linux;
}

let dir = "";
let header: Map<string, bigint>;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "svm-exits-"));
  const names = execFileSync("gcc", ["-dM", "-E", "-include", "asm/svm.h", "-x", "c", "/dev/null"], { encoding: "utf8" })
    .split("\n")
    .map((l) => /^#define (SVM_EXIT_[A-Z0-9_]+)\s/.exec(l)?.[1])
    .filter((n): n is string => n !== undefined && n !== "SVM_EXIT_REASONS");
  const src = `#include <stdio.h>\n#include <asm/svm.h>\nint main(void) {\n${names.map((n) => `  printf("%s %lld\\n", "${n}", (long long)(${n}));`).join("\n")}\n  return 0;\n}\n`;
  writeFileSync(join(dir, "p.c"), src);
  execFileSync("gcc", ["-o", join(dir, "p"), join(dir, "p.c")]);
  header = new Map(
    execFileSync(join(dir, "p"), { encoding: "utf8" })
      .trim()
      .split("\n")
      .map((l) => l.split(" "))
      .map(([n, v]) => [n!.slice("SVM_EXIT_".length), BigInt.asUintN(64, BigInt(v!))]),
  );
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("VMEXIT codes (APM appendix C) against <asm/svm.h>", () => {
  it("every SVM_EXIT_* code the header defines (99 in Linux 6.1) is in VMEXIT with its value", () => {
    expect(header.size).toBeGreaterThanOrEqual(90);
    for (const [linux, v] of header) {
      const name = apmName(linux);
      if (name === undefined) continue;
      expect(VMEXIT[name], `SVM_EXIT_${linux} → ${name}`).toBe(v);
    }
  });
  it("names round-trip and reserved codes have none", () => {
    for (const [name, code] of Object.entries(VMEXIT)) expect(exitCodeName(code)).toBe(name);
    expect(exitCodeName(0x0a7n)).toBeUndefined();
    expect(exitCodeName(0x404n)).toBeUndefined();
    expect(exitCodeName(-1n)).toBe("INVALID");
    expect(() => decodeExitInfo(0x3ffn, 0n, 0n)).toThrow(expect.objectContaining({ code: "SVM_UNKNOWN_EXIT_CODE" }));
  });
});

describe("EXITINFO decoding", () => {
  it("IOIO: EXITINFO1 encodes and decodes port/size/direction/string/rep/address size/segment", () => {
    fc.assert(
      fc.property(
        fc.record({
          port: fc.integer({ min: 0, max: 0xffff }),
          size: fc.constantFrom(1 as const, 2 as const, 4 as const),
          direction: fc.constantFrom("in" as const, "out" as const),
          string: fc.boolean(),
          rep: fc.boolean(),
          addressSize: fc.constantFrom(16 as const, 32 as const, 64 as const),
          segment: fc.integer({ min: 0, max: 5 }),
        }),
        fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        (io, rip) => {
          const info1 = encodeIoioInfo(io);
          expect(decodeIoioInfo(info1)).toEqual(io);
          expect(decodeExitInfo(VMEXIT.IOIO!, info1, rip)).toEqual({ kind: "ioio", io, nextRip: rip });
        },
      ),
      { numRuns: 300 },
    );
  });
  it("IOIO: figure 15-2 bit positions (OUT DX, AL to 3F8h from 32-bit code; REP INSW from 16-bit code)", () => {
    expect(encodeIoioInfo({ port: 0x3f8, size: 1, direction: "out", string: false, rep: false, addressSize: 32, segment: 0 })).toBe(0x03f8_0110n);
    expect(encodeIoioInfo({ port: 0x60, size: 2, direction: "in", string: true, rep: true, addressSize: 16, segment: 0 })).toBe(0x0060_00adn);
    expect(() => encodeIoioInfo({ port: 0x10000, size: 1, direction: "in", string: false, rep: false, addressSize: 16, segment: 0 })).toThrow();
  });
  it("NPF: error code bits and the faulting GPA", () => {
    const e = decodeExitInfo(VMEXIT.NPF!, NPF.P | NPF.RW | NPF.GUEST_FINAL, 0xa0010n);
    expect(e).toEqual({ kind: "npf", errorCode: 0x1_0000_0003n, npf: { present: true, write: true, user: false, reservedBit: false, fetch: false, finalTranslation: true, pageTableWalk: false, gpa: 0xa0010n } });
    expect(decodeExitInfo(VMEXIT.NPF!, NPF.ID | NPF.US | NPF.GUEST_PAGE_TABLE, 0n)).toMatchObject({ npf: { fetch: true, user: true, pageTableWalk: true, present: false } });
  });
  it("CR/DR accesses (decode assists: MOV bit 63, GPR in bits 3:0)", () => {
    expect(decodeExitInfo(VMEXIT.CR3_WRITE!, (1n << 63n) | 5n, 0n)).toEqual({ kind: "cr-access", cr: 3, write: true, mov: true, gpr: 5 });
    expect(decodeExitInfo(VMEXIT.CR0_READ!, 0n, 0n)).toEqual({ kind: "cr-access", cr: 0, write: false, mov: false, gpr: 0 });
    expect(decodeExitInfo(VMEXIT.DR7_WRITE!, 2n, 0n)).toEqual({ kind: "dr-access", dr: 7, write: true, gpr: 2 });
  });
  it("exceptions: error code in EXITINFO1, #PF address in EXITINFO2", () => {
    expect(decodeExitInfo(VMEXIT.EXCP14!, 0x6n, 0xdead_b000n)).toEqual({ kind: "exception", vector: 14, errorCode: 6, faultAddress: 0xdead_b000n });
    expect(decodeExitInfo(VMEXIT.EXCP13!, 0x18n, 0n)).toEqual({ kind: "exception", vector: 13, errorCode: 0x18 });
  });
  it("MSR, task switch, INVLPG, INTn, AVIC, and codes without EXITINFO", () => {
    expect(decodeExitInfo(VMEXIT.MSR!, 1n, 0n)).toEqual({ kind: "msr", write: true });
    expect(decodeExitInfo(VMEXIT.TASK_SWITCH!, 0x28n, (1n << 44n) | (1n << 38n) | 0x10n)).toEqual({ kind: "task-switch", selector: 0x28, reason: "jmp", rf: false, errorCode: 0x10 });
    expect(decodeExitInfo(VMEXIT.INVLPG!, 0xffff_8000_0000_0000n, 0n)).toEqual({ kind: "invlpg", address: 0xffff_8000_0000_0000n });
    expect(decodeExitInfo(VMEXIT.SWINT!, 0x80n, 0n)).toEqual({ kind: "swint", vector: 0x80 });
    expect(decodeExitInfo(VMEXIT.AVIC_NOACCEL!, (1n << 32n) | 0x300n, 0n)).toEqual({ kind: "avic-noaccel", offset: 0x300, write: true, vector: 0 });
    expect(decodeExitInfo(VMEXIT.HLT!, 0n, 0n)).toEqual({ kind: "none" });
    expect(decodeExitInfo(VMEXIT.INVALID!, 0n, 0n)).toEqual({ kind: "invalid" });
  });
});
