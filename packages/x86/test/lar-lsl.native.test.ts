// LAR and LSL against the host processor. A C program compiled at test time installs random LDT
// entries with modify_ldt(2), reads the LDT back raw, and runs LAR/LSL (16/32/64-bit destinations,
// ZF preset either way) natively at CPL3 on LDT selectors of every RPL, selectors past the LDT's
// end, and null selectors. The emulator runs the same encodings at CPL3 over a SimpleCpu whose LDT
// holds the raw bytes the kernel installed, and must agree on ZF and the destination.
//
// Why not a KVM guest: on this PVM host guest CPL3 code runs on the host's GDT/LDT (LSL of the
// guest's TSS selector returns the host's USER_DS limit), so a guest cannot check descriptors it
// wrote itself; CPL0 runs through KVM's emulator, which stops on LSL. Linux LDT entries are always
// DPL 3 code/data (conforming code only when not present): the DPL/CPL rules and system types are
// checked from the SDM in emulator.lar-lsl.test.ts.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GuestMemoryMap } from "@tsvmm/abi";
import { Emulator, SimpleCpu, ZF } from "@tsvmm/x86";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const SCALE = Number(process.env.TSVMM_FUZZ_SCALE ?? "1");
const LDT_BASE = 0x4000n;
const CODE = 0x1000n;
const RAX = 0, RCX = 1;

// [mnemonic, bits, encoding with RAX as destination and CX as the selector]
const FORMS: readonly [string, 16 | 32 | 64, string][] = [
  ["lar", 16, "66 0f 02 c1"], ["lar", 32, "0f 02 c1"], ["lar", 64, "48 0f 02 c1"],
  ["lsl", 16, "66 0f 03 c1"], ["lsl", 32, "0f 03 c1"], ["lsl", 64, "48 0f 03 c1"],
];

const PROGRAM = `#include <asm/ldt.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(void) {
  unsigned n;
  if (scanf("%u", &n) != 1) return 2;
  for (unsigned i = 0; i < n; i++) {
    struct user_desc d;
    unsigned e, lim, s32, cont, ro, lip, np, use, lm; unsigned long base;
    memset(&d, 0, sizeof d);
    if (scanf("%u %lx %x %u %u %u %u %u %u %u", &e, &base, &lim, &s32, &cont, &ro, &lip, &np, &use, &lm) != 10) return 3;
    d.entry_number = e; d.base_addr = (unsigned)base; d.limit = lim; d.seg_32bit = s32; d.contents = cont;
    d.read_exec_only = ro; d.limit_in_pages = lip; d.seg_not_present = np; d.useable = use; d.lm = lm;
    syscall(SYS_modify_ldt, 0x11, &d, sizeof d); /* refused entries just stay as they were */
  }
  static uint64_t ldt[64];
  long got = syscall(SYS_modify_ldt, 0, ldt, sizeof ldt);
  if (got < 0) return 4;
  for (int i = 0; i < 64; i++) printf("%llx\\n", (unsigned long long)ldt[i]);
  unsigned form; unsigned sel; unsigned long long dest, zf;
  while (scanf("%u %x %llx %llx", &form, &sel, &dest, &zf) == 4) {
    uint64_t f = zf ? 0x246 : 0x206, a = dest, c = sel;
    switch (form) {
${FORMS.map(([, , enc], k) => `    case ${k}: __asm__ volatile("push %[f]\\n popfq\\n .byte ${enc.split(" ").map((b) => `0x${b}`).join(",")}\\n pushfq\\n pop %[f]\\n" : [f] "+r"(f), "+a"(a) : "c"(c) : "cc", "memory"); break;`).join("\n")}
    default: return 5;
    }
    printf("%llx %llx\\n", (unsigned long long)a, (unsigned long long)(f & 0x40 ? 1 : 0));
  }
  return 0;
}
`;

let dir = "";
let exe = "";
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "x86-larlsl-"));
  writeFileSync(join(dir, "larlsl.c"), PROGRAM);
  exe = join(dir, "larlsl");
  execFileSync("gcc", ["-O1", join(dir, "larlsl.c"), "-o", exe]);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const entry = fc.record({
  index: fc.integer({ min: 0, max: 15 }),
  base: fc.integer({ min: 0, max: 0xffffffff }),
  limit: fc.oneof(fc.integer({ min: 0, max: 0xfffff }), fc.constantFrom(0, 0xfffff, 0xfff)),
  seg32: fc.boolean(),
  contents: fc.integer({ min: 0, max: 3 }),
  readExecOnly: fc.boolean(),
  limitInPages: fc.boolean(),
  notPresent: fc.boolean(),
  useable: fc.boolean(),
  lm: fc.boolean(),
});
const probe = fc.record({
  form: fc.integer({ min: 0, max: FORMS.length - 1 }),
  // LDT selectors of every RPL (up to 4 entries past the table), and null selectors.
  selector: fc.oneof(
    fc.tuple(fc.integer({ min: 0, max: 19 }), fc.integer({ min: 0, max: 3 })).map(([i, rpl]) => (i << 3) | 4 | rpl),
    fc.integer({ min: 0, max: 3 }),
  ),
  dest: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  zf: fc.boolean(),
});

describe("LAR/LSL against the host processor (modify_ldt entries, CPL3)", () => {
  it("ZF and the destination agree for every form, selector and preset", () => {
    const runs = 40 * SCALE;
    const outcomes = new Set<string>();
    fc.assert(
      fc.property(fc.array(entry, { minLength: 1, maxLength: 10 }), fc.array(probe, { minLength: 30, maxLength: 30 }), (entries, probes) => {
        const flag = (b: boolean) => (b ? 1 : 0);
        const lines = [String(entries.length)];
        for (const e of entries) {
          lines.push([e.index, e.base.toString(16), e.limit.toString(16), flag(e.seg32), e.contents, flag(e.readExecOnly), flag(e.limitInPages), flag(e.notPresent), flag(e.useable), flag(e.lm)].join(" "));
        }
        for (const p of probes) lines.push(`${p.form} ${p.selector.toString(16)} ${p.dest.toString(16)} ${flag(p.zf)}`);
        const out = execFileSync(exe, { input: `${lines.join("\n")}\n` }).toString().trim().split("\n");
        const ldt = out.slice(0, 64).map((l) => BigInt(`0x${l}`));
        const native = out.slice(64).map((l) => l.split(" ").map((x) => BigInt(`0x${x}`)));
        // The LDT holds entries up to the highest index written, whether or not the kernel took it.
        const count = Math.max(...entries.map((e) => e.index)) + 1;
        const memory = GuestMemoryMap.allocate([{ base: 0, size: 0x10000 }]);
        for (const [k, d] of ldt.entries()) memory.writeU64(Number(LDT_BASE) + k * 8, d);
        probes.forEach((p, k) => {
          const [mn, bits, enc] = FORMS[p.form]!;
          memory.write(Number(CODE), Buffer.from(enc.replace(/ /g, ""), "hex"));
          const cpu = new SimpleCpu({ memory });
          cpu.segments.cs = { ...cpu.segments.cs, dpl: 3, selector: 0x33 };
          cpu.segments.ss = { ...cpu.segments.ss, dpl: 3, selector: 0x2b };
          cpu.ldtr = { base: LDT_BASE, limit: count * 8 - 1 };
          cpu.rip = CODE;
          cpu.gpr[RAX] = p.dest;
          cpu.gpr[RCX] = BigInt(p.selector);
          cpu.rflags = p.zf ? 0x246n : 0x206n;
          const r = new Emulator(cpu).step();
          expect(r.kind).toBe("executed");
          const got = [cpu.gpr[RAX]!, (cpu.rflags & ZF) !== 0n ? 1n : 0n];
          // Bits 19:16 of LAR's 32/64-bit result are undefined (SDM: "00FxFF00H").
          const mask = mn === "lar" && bits !== 16 && got[1] === 1n ? ~0xf0000n : ~0n;
          const ctx = `${mn} ${bits}-bit selector 0x${p.selector.toString(16)} descriptor 0x${(ldt[p.selector >> 3] ?? 0n).toString(16)}`;
          expect([got[0]! & mask, got[1]], ctx).toEqual([native[k]![0]! & mask, native[k]![1]]);
          outcomes.add(`${mn}${bits} ZF=${got[1]}`);
        });
      }),
      { numRuns: runs },
    );
    // Every form both loaded something and refused something.
    expect(outcomes.size).toBe(FORMS.length * 2);
  });
});
