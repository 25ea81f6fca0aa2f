import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { getProfile, validVmcsTemplate } from "@tsvmm/vmcs";
import { beforeAll, describe, expect, it } from "vitest";
import { main } from "../src/cli.js";

const pkg = fileURLToPath(new URL("..", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "vmcs-cli-"));
const write = (name: string, data: string): string => {
  const p = join(dir, name);
  writeFileSync(p, data);
  return p;
};
const run = (argv: string[]) => {
  const out: string[] = [];
  const err: string[] = [];
  const code = main(argv, { readFile: (p) => readFileSync(p, "utf8"), stdout: (l) => out.push(l), stderr: (l) => err.push(l) });
  return { code, out, err };
};

const valid = validVmcsTemplate(getProfile("intel-core-i7-5600u"), "long");
const validPath = write("valid.json", JSON.stringify(valid.toJSON()));
const bad = valid.clone().set("GUEST_RFLAGS", 0n).set("HOST_CS_SELECTOR", 0);
const badPath = write("bad.json", JSON.stringify(bad.toJSON()));

describe("vmcs-check main()", () => {
  it("exit 0 and no output for a valid state", () => {
    expect(run([validPath, "--caps", "intel-core-i7-5600u"])).toEqual({ code: 0, out: [], err: [] });
  });
  it("exit 1 with ID<TAB>SDM<TAB>message lines", () => {
    const r = run([badPath, "--caps", "intel-core-i7-5600u"]);
    expect(r.code).toBe(1);
    expect(r.out).toEqual([
      expect.stringMatching(/^HOST\.SEL\.CS_NONZERO\t26\.2\.3\tHOST_CS_SELECTOR=0x0: /),
      expect.stringMatching(/^GUEST\.RFLAGS\.RESERVED\t26\.3\.1\.4\tGUEST_RFLAGS=0x0: /),
    ]);
  });
  it("accepts a caps JSON file", () => {
    const caps = write("caps.json", JSON.stringify({ base: "intel-core-i7-5600u", cpu: { maxPhysAddr: 36 } }));
    expect(run([validPath, "--caps", caps]).code).toBe(0);
  });
  it("exit 2 on unreadable input", () => {
    expect(run([join(dir, "missing.json")]).code).toBe(2);
    expect(run([write("garbage.json", "{not json")]).code).toBe(2);
    expect(run([write("unknown.json", '{"fields":{"NOPE":"0x1"}}')]).code).toBe(2);
    expect(run([validPath, "--caps", write("badcaps.json", '{"msrs":{"IA32_NOPE":"1"}}')]).code).toBe(2);
    expect(run([]).code).toBe(2);
    expect(run([validPath, "--caps"]).code).toBe(2);
  });
});

// `npm test` builds every package before the tests run; this checks the bin users get.
describe("vmcs-check built bin", () => {
  beforeAll(() => {
    if (!existsSync(join(pkg, "dist/cli.cjs"))) throw new Error("packages/vmcs/dist is missing: run `npm run build` first");
  });
  it("runs as a process with the documented exit codes", () => {
    const bin = join(pkg, "bin/vmcs-check.cjs");
    const ok = spawnSync(process.execPath, [bin, validPath, "--caps", "intel-core-i7-5600u"], { encoding: "utf8" });
    expect(ok.status).toBe(0);
    const fail = spawnSync(process.execPath, [bin, badPath, "--caps", "intel-core-i7-5600u"], { encoding: "utf8" });
    expect(fail.status).toBe(1);
    expect(fail.stdout.split("\n")[0]).toMatch(/^HOST\.SEL\.CS_NONZERO\t26\.2\.3\t/);
    expect(spawnSync(process.execPath, [bin, join(dir, "missing.json")]).status).toBe(2);
  });
});
