// The package as users get it: built with tsup into a staging folder (never the shared dist/, which
// other tests read concurrently), `npm pack`ed, unpacked outside the repository and used from both
// module systems. The property tests run there, so a second copy of VmcsState in one of the
// bundles (the CJS bug: 3000 of 3000 validVmcs samples rejected as "not a VmcsState") fails here.
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const pkgDir = fileURLToPath(new URL("..", import.meta.url));
const root = join(pkgDir, "..", "..");
let work = "";
let consumer = "";

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "vmcs-pack-"));
  const stage = join(work, "stage");
  mkdirSync(stage);
  // Everything the manifest ships except dist/, which is built fresh below.
  const files = (JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8")) as { files: string[] }).files.filter((f) => f !== "dist");
  for (const f of ["package.json", ...files]) if (existsSync(join(pkgDir, f))) cpSync(join(pkgDir, f), join(stage, f), { recursive: true });
  execFileSync(join(root, "node_modules", ".bin", "tsup"), ["--out-dir", join(stage, "dist")], { cwd: pkgDir, stdio: "pipe" });
  const tgz = execFileSync("npm", ["pack", "--silent", "--pack-destination", work], { cwd: stage, encoding: "utf8" }).trim().split("\n").pop()!;
  consumer = join(work, "consumer");
  const dest = join(consumer, "node_modules", "@tsvmm", "vmcs");
  mkdirSync(dest, { recursive: true });
  execFileSync("tar", ["xzf", join(work, tgz), "-C", dest, "--strip-components=1"]);
  writeFileSync(join(consumer, "package.json"), JSON.stringify({ name: "consumer", private: true }));
  // The dependency and the peer come from the workspace (from the registry in real life); their
  // real paths are inside the repository, so their own dependencies resolve there.
  symlinkSync(join(root, "node_modules", "@tsvmm", "abi"), join(consumer, "node_modules", "@tsvmm", "abi"));
  symlinkSync(join(root, "node_modules", "fast-check"), join(consumer, "node_modules", "fast-check"));
}, 180_000);
afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

const node = (args: string[]): string => execFileSync(process.execPath, args, { cwd: consumer, encoding: "utf8" }).trim();

/**
 * The property test, written once; `load` is a CJS or ESM preamble binding fc, v (index) and
 * a (arbitraries). Prints a JSON summary; fc.assert throws (non-zero exit) on a counterexample.
 */
const PROPERTY = `
const caps = v.getProfile("full-featured");
let valid = 0;
fc.assert(fc.property(a.validVmcs(caps), (s) => { valid++; return v.checkVmEntry(s, caps).length === 0; }), { numRuns: 200, seed: 7 });
for (const [name, c] of Object.entries(v.PROFILES)) {
  fc.assert(fc.property(a.validVmcs(c), (s) => v.checkVmEntry(s, c).length === 0), { numRuns: 20 });
}
let broken = 0;
const ids = v.CHECKS.map((c) => c.id);
for (const id of ids) {
  fc.assert(fc.property(a.brokenVmcs(id), (b) => {
    broken++;
    const got = [...new Set(v.checkVmEntry(b.state, b.caps, b.env).map((x) => x.id))].sort();
    const want = [...b.expected].sort();
    if (b.id !== id || want[0] === undefined || !want.includes(id)) return false;
    return JSON.stringify(got) === JSON.stringify(want);
  }), { numRuns: 3, seed: 11 });
}
console.log(JSON.stringify({ valid, broken, checks: ids.length }));
`;

const CJS = `const fc = require("fast-check"); const v = require("@tsvmm/vmcs"); const a = require("@tsvmm/vmcs/arbitraries");`;
const ESM = `import fc from "fast-check"; import * as v from "@tsvmm/vmcs"; import * as a from "@tsvmm/vmcs/arbitraries";`;

describe("packed @tsvmm/vmcs outside the repository", () => {
  it("ships ESM, CJS and shared chunks for both, no sources or tests", () => {
    const top = readdirSync(join(consumer, "node_modules", "@tsvmm", "vmcs"));
    expect(top).not.toContain("src");
    expect(top).not.toContain("test");
    const dist = readdirSync(join(consumer, "node_modules", "@tsvmm", "vmcs", "dist"));
    for (const f of ["index.js", "index.cjs", "arbitraries.js", "arbitraries.cjs", "cli.cjs", "index.d.ts", "index.d.cts"]) expect(dist).toContain(f);
    expect(dist.some((f) => /^chunk-.*\.cjs$/.test(f))).toBe(true);
  });

  it("require(): 200 validVmcs samples pass checkVmEntry; brokenVmcs(id) fails with exactly that id, for every id", () => {
    const r = JSON.parse(node(["-e", `${CJS}\n${PROPERTY}`]));
    expect(r.valid).toBe(200);
    expect(r.checks).toBeGreaterThanOrEqual(180);
    expect(r.broken).toBe(3 * r.checks);
  }, 120_000);

  it("import: the same property test", () => {
    const r = JSON.parse(node(["--input-type=module", "-e", `${ESM}\n${PROPERTY}`]));
    expect(r.valid).toBe(200);
    expect(r.broken).toBe(3 * r.checks);
  }, 120_000);

  it("states made by the ESM copy are accepted by the CJS copy (the dual-package case)", () => {
    const script = `
import { createRequire } from "node:module";
import fc from "fast-check";
import * as a from "@tsvmm/vmcs/arbitraries";
const v = createRequire(process.cwd() + "/")("@tsvmm/vmcs");
const caps = v.getProfile("intel-core-i7-5600u");
const s = fc.sample(a.validVmcs(caps), 50);
console.log(JSON.stringify({ rejected: s.filter((x) => v.checkVmEntry(x, caps).length > 0).length, instance: s.every((x) => x instanceof v.VmcsState) }));
`;
    expect(JSON.parse(node(["--input-type=module", "-e", script]))).toEqual({ rejected: 0, instance: true });
  }, 60_000);

  it("the vmcs-check bin runs from the unpacked package: --version, --help, a check", () => {
    const bin = join(consumer, "node_modules", "@tsvmm", "vmcs", "bin", "vmcs-check.cjs");
    const version = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8")).version as string;
    expect(node([bin, "--version"])).toBe(`vmcs-check ${version}`);
    expect(node([bin, "-h"])).toMatch(/exit status:/);
    const state = join(work, "state.json");
    writeFileSync(state, node(["-e", `const v = require("@tsvmm/vmcs"); console.log(JSON.stringify(v.validVmcsTemplate(v.getProfile("intel-core-i7-5600u"), "long").toJSON()))`]));
    expect(node([bin, state, "--caps", "intel-core-i7-5600u"])).toBe("");
  });

  it("a look-alike object without the brand is still refused", () => {
    const out = node(["-e", `const v = require("@tsvmm/vmcs"); console.log(v.checkVmEntry({ getSlot: () => 0n }, v.getProfile("full-featured"))[0].id)`]);
    expect(out).toBe("INPUT.INVALID_STATE");
  });
});
