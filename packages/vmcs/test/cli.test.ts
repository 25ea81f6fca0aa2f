import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { getProfile, validVmcsTemplate } from "@tsvmm/vmcs";
import { beforeAll, describe, expect, it } from "vitest";
import { HELP, main, readInputFile } from "../src/cli.js";

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
  const code = main(argv, { readFile: readInputFile, stdout: (l) => out.push(l), stderr: (l) => err.push(l) });
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
  it("--help / -h: usage, options and the exit-status table on stdout, exit 0", () => {
    for (const flag of ["--help", "-h"]) {
      const r = run([flag]);
      expect(r.code).toBe(0);
      expect(r.err).toEqual([]);
      const text = r.out.join("\n");
      expect(text).toBe(HELP);
      expect(text).toMatch(/^usage: vmcs-check STATE\.json/);
      for (const o of ["-c, --caps", "-h, --help", "-V, --version"]) expect(text).toContain(o);
      expect(text).toMatch(/exit status:\n\s+0 .*\n\s+1 .*\n\s+2 /);
      for (const p of ["intel-core-i7-5600u", "full-featured"]) expect(text).toContain(p);
    }
    // Help wins wherever it appears, as with tsvmm.
    expect(run([validPath, "--help"]).code).toBe(0);
  });
  it("--version / -V: the package version, exit 0 (not read as a file name)", () => {
    const version = JSON.parse(readFileSync(join(pkg, "package.json"), "utf8")).version as string;
    for (const flag of ["--version", "-V"]) expect(run([flag])).toEqual({ code: 0, out: [`vmcs-check ${version}`], err: [] });
  });
  it("unknown options and misuse: one clear line on stderr, exit 2, nothing on stdout", () => {
    const cases: [string[], RegExp][] = [
      [["--nope", validPath], /^vmcs-check: unknown option --nope \(see vmcs-check --help\)$/],
      [["-x"], /^vmcs-check: unknown option -x /],
      [[validPath, "--caps"], /^vmcs-check: option --caps needs a value/],
      [[validPath, "--caps", "--help"], /^vmcs-check: option --caps needs a value/],
      [["--version=2"], /^vmcs-check: option --version takes no value/],
      [[], /^vmcs-check: missing STATE\.json/],
      [[validPath, badPath], /^vmcs-check: one STATE\.json at a time, got 2/],
      [[validPath, "--caps", "no-such-profile"], /^vmcs-check: --caps no-such-profile: not a built-in profile \(.*full-featured\) and not a readable file/],
      [[validPath, "--caps", "toString"], /^vmcs-check: --caps toString: not a built-in profile/],
    ];
    for (const [argv, msg] of cases) {
      const r = run(argv);
      expect(r.code, argv.join(" ")).toBe(2);
      expect(r.out).toEqual([]);
      expect(r.err).toHaveLength(1);
      expect(r.err[0]).toMatch(msg);
    }
  });
  it("--caps=VALUE and -c VALUE work like --caps VALUE; -- ends the options", () => {
    expect(run([validPath, "--caps=intel-core-i7-5600u"]).code).toBe(0);
    expect(run(["-c", "intel-core-i7-5600u", validPath]).code).toBe(0);
    expect(run(["-c", "intel-core-i7-5600u", "--", validPath]).code).toBe(0);
  });
  it("a caps file with an unknown key is refused with the key named, exit 2", () => {
    const r = run([validPath, "--caps", write("typo.json", JSON.stringify({ base: "intel-core-i7-5600u", maxphyaddr: 46 }))]);
    expect(r.code).toBe(2);
    expect(r.err[0]).toMatch(/^vmcs-check: VMCS_INVALID_CAPS: unknown key "maxphyaddr"/);
  });
  it("reads regular files only, with a size cap (a FIFO or /dev/zero would block or fill memory)", () => {
    expect(() => readInputFile("/dev/zero")).toThrow(/is a character device: give a regular file/);
    expect(run(["/dev/zero"]).err[0]).toMatch(/^vmcs-check: cannot read \/dev\/zero: .*is a character device/);
    // Opening a FIFO with no writer must not block: it is refused at once.
    const fifo = join(dir, "fifo");
    execFileSync("mkfifo", [fifo]);
    expect(run([fifo]).err[0]).toMatch(/is a FIFO: give a regular file/);
    expect(run([validPath, "--caps", fifo]).err[0]).toMatch(/--caps .*is a FIFO/);
    expect(() => readInputFile(dir)).toThrow();
    expect(readInputFile(validPath)).toBe(readFileSync(validPath, "utf8"));
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
    const version = spawnSync(process.execPath, [bin, "--version"], { encoding: "utf8" });
    expect(version.status).toBe(0);
    expect(version.stdout).toMatch(/^vmcs-check \d+\.\d+\.\d+\n$/);
    const unknown = spawnSync(process.execPath, [bin, "--frobnicate"], { encoding: "utf8" });
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toBe("vmcs-check: unknown option --frobnicate (see vmcs-check --help)\n");
    expect(spawnSync(process.execPath, [bin, "-h"], { encoding: "utf8" }).stdout).toMatch(/exit status:/);
  });
  it("a closed stdout pipe ends it quietly (no EPIPE stack trace)", () => {
    const bin = join(pkg, "bin/vmcs-check.cjs");
    // The reader (true) is gone long before node has started, so the first violation line hits EPIPE.
    const r = spawnSync("sh", ["-c", `"${process.execPath}" "${bin}" "${badPath}" --caps intel-core-i7-5600u | true`], { encoding: "utf8" });
    expect(r.status).toBe(0);
    expect(r.stderr).toBe("");
  });
});
