// The XSAVE legacy region and header layouts against Linux's <asm/sigcontext.h> (struct _fpstate_64,
// struct _header), compiled at test time, and the compacted-format rule against the host CPU's CPUID.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { compactedOffsets, FxsaveLegacyLayout, XsaveHeaderLayout } from "@tsvmm/x86";
import { afterAll, describe, expect, it } from "vitest";

const dir = mkdtempSync(join(tmpdir(), "x86-xsave-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function runC(src: string): string {
  writeFileSync(join(dir, "p.c"), src);
  execFileSync("gcc", ["-O0", join(dir, "p.c"), "-o", join(dir, "p")]);
  return execFileSync(join(dir, "p"), { encoding: "utf8" });
}

describe("XSAVE area layouts", () => {
  it("legacy region and header: size and every offset as the kernel header declares them", () => {
    const lines: string[] = [];
    for (const s of [FxsaveLegacyLayout, XsaveHeaderLayout]) {
      lines.push(`printf("%s %zu\\n", "sizeof ${s.cType}", sizeof(${s.cType}));`);
      for (const f of s.fields()) lines.push(`printf("%s %zu\\n", "${s.cType}.${f.path}", offsetof(${s.cType}, ${f.c}));`);
    }
    const out = runC(`#include <stdio.h>\n#include <stddef.h>\n#include <asm/sigcontext.h>\nint main(void){${lines.join("\n")}return 0;}\n`);
    const fromC = new Map(out.trim().split("\n").map((l) => [l.slice(0, l.lastIndexOf(" ")), Number(l.slice(l.lastIndexOf(" ") + 1))]));
    for (const s of [FxsaveLegacyLayout, XsaveHeaderLayout]) {
      expect(fromC.get(`sizeof ${s.cType}`)).toBe(s.size);
      for (const f of s.fields()) expect([f.path, fromC.get(`${s.cType}.${f.path}`)]).toEqual([f.path, f.offset]);
    }
    expect(FxsaveLegacyLayout.size).toBe(512);
    expect(XsaveHeaderLayout.size).toBe(64);
  });

  it("compacted offsets follow the SDM rule over this CPU's CPUID 0xD components (sizes, 64-byte alignment)", () => {
    const out = runC(`#include <stdio.h>
#include <cpuid.h>
int main(void){
  unsigned a,b,c,d; __cpuid_count(0xd,0,a,b,c,d); unsigned long long xcr0 = ((unsigned long long)d<<32)|a;
  for (int i = 2; i < 19; i++) { if (!(xcr0 >> i & 1)) continue; __cpuid_count(0xd,i,a,b,c,d); printf("%d %u %u %u\\n", i, a, b, c & 2 ? 1 : 0); }
  return 0; }
`);
    const comps = out
      .trim()
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => l.split(" ").map(Number))
      .map(([index, size, offset, align]) => ({ index: index!, size: size!, offset: offset!, align64: align === 1 }));
    expect(comps.length).toBeGreaterThan(0);
    const xcomp = comps.reduce((m, c) => m | (1n << BigInt(c.index)), 0n);
    const offs = compactedOffsets(xcomp, { supportedXcr0: xcomp | 3n, supportedXss: 0n, components: comps });
    // Independent statement of the SDM rule (vol. 1 13.4.3): running sum from 576, aligned up to 64 when ECX[1].
    let expected = 576;
    for (const c of [...comps].sort((x, y) => x.index - y.index)) {
      if (c.align64) expected = Math.ceil(expected / 64) * 64;
      expect([c.index, offs.get(c.index)]).toEqual([c.index, expected]);
      expected += c.size;
    }
    // AVX (component 2) starts right after the header in both formats.
    if (comps.some((c) => c.index === 2)) expect(offs.get(2)).toBe(576);
  });
});
