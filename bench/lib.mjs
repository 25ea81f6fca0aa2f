// Shared helpers for benchmarks. Each topic lives in bench/<topic>/ with an index.mjs whose
// default export is `async (ctx) => BenchResult[]`; C baselines sit beside it and are compiled here
// at bench time with the machine's cc, so the comparison is always made in the same run.
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const benchRoot = dirname(fileURLToPath(import.meta.url));
export const outDir = join(benchRoot, "out");

/** Compile a C file with -O2 into bench/out and return the executable's path. */
export function compileC(src, extraFlags = []) {
  mkdirSync(outDir, { recursive: true });
  // Named after its topic too: every topic's baseline is called baseline.c.
  const exe = join(outDir, `${basename(dirname(src))}-${basename(src).replace(/\.c$/, "")}`);
  execFileSync("cc", ["-O2", "-Wall", "-o", exe, src, ...extraFlags], { stdio: "inherit" });
  return exe;
}

/** Run an executable and parse its stdout as JSON (baselines print one JSON object). */
export function runJson(exe, args = [], options = {}) {
  const out = execFileSync(exe, args, { encoding: "utf8", maxBuffer: 1 << 24, ...options });
  return JSON.parse(out);
}

/** The q-quantile (0..1) of a list of numbers, nearest rank. */
export function quantile(xs, q) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

/** Median of a list of numbers. */
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Build a result row. `ratio` is value / c, so "lower is better" units read directly as a slowdown. */
export function result(name, value, unit, c, extra = {}) {
  const ratio = c === undefined || c === null ? null : value / c;
  return { name, value, unit, c: c ?? null, ratio, ...extra };
}
