import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type CLayoutCheck, cCheckSources } from "@tsvmm/abi";

/** Compile the checks against `includes` with this machine's C compiler; return what C says for each key. */
export function evaluateInC(includes: readonly string[], checks: readonly CLayoutCheck[], ccFlags: readonly string[] = []): Map<string, number> {
  const dir = mkdtempSync(join(tmpdir(), "elf-loader-c-"));
  try {
    const src = cCheckSources(includes, checks);
    writeFileSync(join(dir, "values.c"), src.values);
    writeFileSync(join(dir, "main.c"), src.main);
    try {
      execFileSync("cc", ["-std=gnu11", ...ccFlags, "-o", join(dir, "checks"), join(dir, "values.c"), join(dir, "main.c")], { stdio: "pipe" });
    } catch (e) {
      throw new Error(`cc failed: ${String((e as { stderr?: Buffer }).stderr)}`);
    }
    const out = execFileSync(join(dir, "checks"), { encoding: "utf8" });
    return new Map(
      out
        .trim()
        .split("\n")
        .map((l) => l.split("\t") as [string, string])
        .map(([k, v]) => [k, Number(v)]),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The checks C disagrees with, as readable lines (empty when all agree). */
export function mismatches(checks: readonly CLayoutCheck[], fromC: Map<string, number>): string[] {
  return checks.filter((c) => fromC.get(c.key) !== c.value).map((c) => `${c.key}: ts=${c.value} c=${fromC.get(c.key)}`);
}
