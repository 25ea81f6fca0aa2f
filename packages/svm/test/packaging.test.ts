import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// `npm pack` @tsvmm/abi and @tsvmm/svm as users get them, unpack them outside the repository and
// run property tests from the built dist through require() and import. The arbitraries subpath
// must hand back VmcbState objects the main entry accepts, in both module systems. Needs the
// packages built (npm test builds first).

const root = fileURLToPath(new URL("../../..", import.meta.url));
let dir = "";

function install(pkg: string): void {
  const tgzDir = join(dir, "tgz");
  mkdirSync(tgzDir, { recursive: true });
  const out = execFileSync("npm", ["pack", "--silent", "--pack-destination", tgzDir], { cwd: join(root, "packages", pkg), encoding: "utf8" }).trim().split("\n").pop()!;
  const dest = join(dir, "node_modules", "@tsvmm", pkg);
  mkdirSync(dest, { recursive: true });
  execFileSync("tar", ["xzf", join(tgzDir, out), "-C", dest, "--strip-components=1"]);
}

beforeAll(() => {
  for (const p of ["abi", "svm"]) {
    if (!existsSync(join(root, "packages", p, "dist", "index.cjs"))) throw new Error(`packages/${p}/dist is missing: run \`npm run build\` first`);
  }
  dir = mkdtempSync(join(tmpdir(), "tsvmm-svm-consumer-"));
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "consumer", private: true }));
  install("abi");
  install("svm");
  // Third-party packages come from the registry in real life; link the ones already here.
  mkdirSync(join(dir, "node_modules", "@solana"), { recursive: true });
  symlinkSync(join(root, "node_modules", "@solana", "buffer-layout"), join(dir, "node_modules", "@solana", "buffer-layout"));
  for (const m of ["buffer", "fast-check", "pure-rand"]) {
    if (existsSync(join(root, "node_modules", m))) symlinkSync(join(root, "node_modules", m), join(dir, "node_modules", m));
  }
}, 120_000);
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const node = (args: string[]) => execFileSync(process.execPath, args, { cwd: dir, encoding: "utf8" }).trim();

const PROPERTY = `
  const caps = svm.PROFILES["amd-ryzen-7-1800x"];
  let n = 0;
  fc.assert(fc.property(arb.validVmcb(caps), (s) => { n++; return s instanceof svm.VmcbState && svm.checkVmrun(s, caps).length === 0; }), { numRuns: 50 });
  fc.assert(fc.property(arb.anyBrokenVmcb(), (b) => { n++; const got = [...new Set(svm.checkVmrun(b.vmcb, b.caps, b.env).map((v) => v.id))].sort(); return b.vmcb instanceof svm.VmcbState && JSON.stringify(got) === JSON.stringify([...b.expected].sort()); }), { numRuns: 100 });
  console.log(n);
`;

describe("@tsvmm/svm packed, outside the repository", () => {
  it("ships dist (ESM, CJS, both declaration kinds), the bin and the README, no sources or tests", () => {
    const top = readdirSync(join(dir, "node_modules", "@tsvmm", "svm"));
    expect(top).toEqual(expect.arrayContaining(["dist", "bin", "README.md", "package.json"]));
    expect(top).not.toContain("src");
    expect(top).not.toContain("test");
    const files = readdirSync(join(dir, "node_modules", "@tsvmm", "svm", "dist"));
    for (const e of ["index", "arbitraries", "cli"]) for (const x of [".js", ".cjs", ".d.ts", ".d.cts"]) expect(files).toContain(`${e}${x}`);
  });
  it("fast-check is not bundled: the arbitraries use the consumer's copy", () => {
    const r = node(["-e", "const fc = require('fast-check'); const a = require('@tsvmm/svm/arbitraries'); console.log(a.validVmcb(require('@tsvmm/svm').PROFILES['amd-fx-8150']) instanceof fc.Arbitrary)"]);
    expect(r).toBe("true");
  });
  it("property tests pass from CommonJS (require of the main entry and ./arbitraries)", () => {
    expect(node(["-e", `const fc = require('fast-check'); const svm = require('@tsvmm/svm'); const arb = require('@tsvmm/svm/arbitraries'); ${PROPERTY}`])).toBe("150");
  });
  it("property tests pass from ESM (import of the main entry and ./arbitraries)", () => {
    expect(node(["--input-type=module", "-e", `import fc from 'fast-check'; import * as svm from '@tsvmm/svm'; import * as arb from '@tsvmm/svm/arbitraries'; ${PROPERTY}`])).toBe("150");
  });
  it("states cross the module systems: ESM checks accept states made by the CJS arbitraries", () => {
    const src = `import { createRequire } from 'node:module'; import fc from 'fast-check'; import { checkVmrun, PROFILES, VmcbState } from '@tsvmm/svm';
      const arb = createRequire(import.meta.url)('@tsvmm/svm/arbitraries'); const caps = PROFILES['amd-phenom-ii-x6-1100t'];
      const [s] = fc.sample(arb.validVmcb(caps, 'long'), { numRuns: 1, seed: 1 });
      console.log(s instanceof VmcbState, VmcbState.isVmcbState(s), checkVmrun(s, caps).length);`;
    // Two copies of the class (ESM and CJS builds) are the dual-package hazard: instanceof fails,
    // the registered-symbol brand does not.
    expect(node(["--input-type=module", "-e", src])).toBe("false true 0");
  });
  it("the bin runs from the installed package", () => {
    const out = execFileSync(process.execPath, [join(dir, "node_modules", "@tsvmm", "svm", "bin", "vmcb-check.cjs"), "--version"], { encoding: "utf8" });
    expect(out.trim()).toMatch(/^vmcb-check \d+\.\d+\.\d+$/);
  });
});
