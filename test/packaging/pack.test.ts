import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// `npm pack` a package as users would get it, unpack it into a folder outside the repository and
// load it from there with both module systems. Needs the packages built (npm test builds first).

const root = join(__dirname, "..", "..");
let dir = "";

function install(pkg: string, scope: "@tsvmm" | "@solana" = "@tsvmm"): void {
  const tgzDir = join(dir, "tgz");
  mkdirSync(tgzDir, { recursive: true });
  const out = execFileSync("npm", ["pack", "--silent", "--pack-destination", tgzDir], { cwd: join(root, "packages", pkg), encoding: "utf8" }).trim().split("\n").pop()!;
  const dest = join(dir, "node_modules", scope, pkg);
  mkdirSync(dest, { recursive: true });
  execFileSync("tar", ["xzf", join(tgzDir, out), "-C", dest, "--strip-components=1"]);
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "tsvmm-consumer-"));
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "consumer", private: true }));
  install("abi");
  install("vmcs");
  // Third-party dependencies come from the registry in real life; link the ones already here.
  mkdirSync(join(dir, "node_modules", "@solana"), { recursive: true });
  symlinkSync(join(root, "node_modules", "@solana", "buffer-layout"), join(dir, "node_modules", "@solana", "buffer-layout"));
  symlinkSync(join(root, "node_modules", "buffer"), join(dir, "node_modules", "buffer"));
  symlinkSync(join(root, "node_modules", "fast-check"), join(dir, "node_modules", "fast-check"));
  symlinkSync(join(root, "node_modules", "pure-rand"), join(dir, "node_modules", "pure-rand"));
}, 120_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const node = (args: string[]) => execFileSync(process.execPath, args, { cwd: dir, encoding: "utf8" }).trim();

describe("packed packages outside the repository", () => {
  it("ship dist with ESM, CJS and both kinds of type declarations, and no sources or tests", () => {
    const files = readdirSync(join(dir, "node_modules", "@tsvmm", "abi", "dist"));
    for (const f of ["index.js", "index.cjs", "index.d.ts", "index.d.cts"]) expect(files).toContain(f);
    expect(readdirSync(join(dir, "node_modules", "@tsvmm", "abi"))).not.toContain("test");
    expect(readdirSync(join(dir, "node_modules", "@tsvmm", "abi"))).not.toContain("src");
  });
  it("@tsvmm/abi loads with require()", () => {
    expect(node(["-e", "const a = require('@tsvmm/abi'); console.log(a.KVM_IOCTLS.KVM_RUN, a.KvmRegsLayout.size)"])).toBe(`${0xae80} 144`);
  });
  it("@tsvmm/abi loads with import", () => {
    expect(node(["--input-type=module", "-e", "import { KVM_IOCTLS, GuestMemoryMap } from '@tsvmm/abi'; const m = GuestMemoryMap.allocate([{ base: 0, size: 4096 }]); m.writeU32(8, 7); console.log(KVM_IOCTLS.KVM_RUN, m.readU32(8))"])).toBe(`${0xae80} 7`);
  });
  it("@tsvmm/vmcs and its ./arbitraries subpath load both ways", () => {
    expect(node(["-e", "const v = require('@tsvmm/vmcs'); const a = require('@tsvmm/vmcs/arbitraries'); console.log(typeof v.checkVmEntry, typeof a.validVmcs)"])).toBe("function function");
    expect(node(["--input-type=module", "-e", "import { checkVmEntry, validVmcsTemplate, PROFILES } from '@tsvmm/vmcs'; const c = PROFILES['intel-core-i7-5600u']; console.log(checkVmEntry(validVmcsTemplate(c, 'long'), c).length)"])).toBe("0");
  });
});
