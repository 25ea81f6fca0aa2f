// The bin's V8 code cache (bin/tsvmm.cjs): an optimisation only. It is written on a first run under
// XDG_CACHE_HOME, used unchanged after, and whatever happens to it (damaged, unwritable, turned off)
// `tsvmm run` still boots the hello guest with the same output and status.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const root = join(__dirname, "..", "..", "..");
const bin = join(root, "packages", "vmm", "bin", "tsvmm.cjs");
const HELLO = "Hello from a tsvmm guest (uart)";
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function run(env: Record<string, string>) {
  const r = spawnSync(process.execPath, [bin, "run"], { encoding: "utf8", timeout: 60_000, env: { ...process.env, ...env } });
  // The stop line's exit count and seconds vary from run to run.
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.replace(/, \d+ exits, [\d.]+ s\]/g, "]") };
}

/** Every cache file below `top`, path -> bytes. */
function caches(top: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith(".v8")) out.set(p, readFileSync(p));
    }
  };
  walk(top);
  return out;
}

describe("tsvmm bin code cache", () => {
  const top = mkdtempSync(join(tmpdir(), "tsvmm-cc-"));
  dirs.push(top);
  const env = { XDG_CACHE_HOME: top, TSVMM_NO_CODE_CACHE: "" };
  let reference: ReturnType<typeof run>;

  it("a first run writes it (the bundle and the packages it requires at load), a second uses it unchanged", () => {
    reference = run(env);
    expect(reference.status).toBe(0);
    expect(reference.stdout).toContain(HELLO);
    const first = caches(top);
    expect([...first.keys()].some((p) => /tsvmm-bin\.cjs-[0-9a-f]{8}-\d+\.v8$/.test(p))).toBe(true);
    expect(first.size).toBeGreaterThanOrEqual(2);
    const mtimes = new Map([...first.keys()].map((p) => [p, statSync(p).mtimeMs]));
    const again = run(env);
    expect(again).toEqual(reference);
    for (const [p, m] of mtimes) expect(statSync(p).mtimeMs).toBe(m);
  });

  it("a damaged cache is never given to V8: same output, and it is written again", () => {
    for (const [p, bytes] of caches(top)) {
      const bad = Buffer.from(bytes);
      const at = bad.length >> 1;
      bad[at] = (bad[at] ?? 0) ^ 0x5a;
      writeFileSync(p, bad);
    }
    const damaged = caches(top);
    const r = run(env);
    expect(r).toEqual(reference);
    for (const [p, bytes] of caches(top)) expect(bytes.equals(damaged.get(p)!)).toBe(false);
    for (const p of caches(top).keys()) writeFileSync(p, Buffer.alloc(0));
    expect(run(env)).toEqual(reference);
  });

  it("an unwritable place or TSVMM_NO_CODE_CACHE=1: the run is the same and nothing is written", () => {
    expect(run({ XDG_CACHE_HOME: "/proc" })).toEqual(reference);
    const off = mkdtempSync(join(tmpdir(), "tsvmm-cc-off-"));
    dirs.push(off);
    expect(run({ XDG_CACHE_HOME: off, TSVMM_NO_CODE_CACHE: "1" })).toEqual(reference);
    expect(caches(off).size).toBe(0);
  });
});
