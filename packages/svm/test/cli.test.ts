import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { getProfile, VERSION, validVmcbTemplate } from "@tsvmm/svm";
import { beforeAll, describe, expect, it } from "vitest";
import { HELP, main, readInputFile } from "../src/cli.js";

const pkg = fileURLToPath(new URL("..", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "vmcb-cli-"));
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

const valid = validVmcbTemplate(getProfile("amd-ryzen-7-1800x"), "long");
const validPath = write("valid.json", JSON.stringify(valid.toJSON()));
const bad = valid.clone().set("control.guestAsid", 0).set("save.dr7", (1n << 40n) | 0x400n);
const badPath = write("bad.json", JSON.stringify(bad.toJSON()));

describe("vmcb-check main()", () => {
  it("exit 0 and no output for a valid VMCB", () => {
    expect(run([validPath, "--caps", "amd-ryzen-7-1800x"])).toEqual({ code: 0, out: [], err: [] });
    expect(run(["-c", "amd-fx-8150", validPath]).code).toBe(0);
    expect(run([`--caps=amd-phenom-ii-x6-1100t`, validPath]).code).toBe(0);
  });
  it("exit 1 with ID<TAB>APM<TAB>message lines", () => {
    const r = run([badPath, "--caps", "amd-ryzen-7-1800x"]);
    expect(r.code).toBe(1);
    expect(r.out).toEqual([
      expect.stringMatching(/^svm\.ctrl\.asid-zero\t15\.5\.1\tcontrol\.guestAsid=0x0: /),
      expect.stringMatching(/^svm\.save\.dr7-high\t15\.5\.1\tsave\.dr7=0x10000000400: /),
    ]);
  });
  it("capabilities decide: a CPU with MAXPHYADDR 32 rejects an MSRPM at 4 GiB", () => {
    const high = write("high.json", JSON.stringify(valid.clone().set("control.msrpmBasePa", 0xffff_f000n).toJSON()));
    expect(run([high, "--caps", "amd-ryzen-7-1800x"]).code).toBe(0);
    const caps = write("caps32.json", JSON.stringify({ base: "amd-ryzen-7-1800x", cpu: { maxPhysAddr: 32 } }));
    const r = run([high, "--caps", caps]);
    expect(r.code).toBe(1);
    expect(r.out[0]).toMatch(/^svm\.ctrl\.msrpm-base\t/);
  });
  it("--help and --version exit 0", () => {
    expect(run(["--help"])).toEqual({ code: 0, out: [HELP], err: [] });
    expect(run(["-h"]).code).toBe(0);
    expect(run(["--version"])).toEqual({ code: 0, out: [`vmcb-check ${VERSION}`], err: [] });
    expect(run(["-V"]).out).toEqual([`vmcb-check ${VERSION}`]);
    expect(HELP).toMatch(/exit status:\n {2}0 .*\n {2}1 .*\n {2}2 /);
  });
  it("VERSION is the package.json version", () => {
    expect(VERSION).toBe(JSON.parse(readFileSync(join(pkg, "package.json"), "utf8")).version);
  });
  it("exit 2 with one stderr line on usage errors and unusable input", () => {
    const cases = [
      [],
      [validPath, validPath],
      [validPath, "--caps"],
      [validPath, "--caps", "--help"],
      [validPath, "--nope"],
      [validPath, "--help=yes"],
      [join(dir, "missing.json")],
      [write("garbage.json", "{not json")],
      [write("unknown.json", '{"fields":{"save.nope":"0x1"}}')],
      [write("wide.json", '{"fields":{"control.guestAsid":"0x100000000"}}')],
      [validPath, "--caps", write("badcaps.json", '{"svm":{"bogus":1}}')],
      [validPath, "--caps", "toString"],
    ];
    for (const argv of cases) {
      const r = run(argv);
      expect(r.code, argv.join(" ")).toBe(2);
      expect(r.out, argv.join(" ")).toEqual([]);
      expect(r.err.length, argv.join(" ")).toBe(1);
      expect(r.err[0], argv.join(" ")).toMatch(/^vmcb-check: /);
    }
  });
});

// `npm test` builds every package before the tests run; this checks the bin users get.
describe("vmcb-check built bin", () => {
  beforeAll(() => {
    if (!existsSync(join(pkg, "dist/cli.cjs"))) throw new Error("packages/svm/dist is missing: run `npm run build` first");
  });
  it("reads regular files only (a FIFO is refused at once, /dev/zero by kind)", () => {
    const fifo = join(dir, "fifo");
    execFileSync("mkfifo", [fifo]);
    const withRealFiles = (argv: string[]) => {
      const err: string[] = [];
      const code = main(argv, { readFile: readInputFile, stdout: () => {}, stderr: (l) => err.push(l) });
      return { code, err };
    };
    expect(withRealFiles([fifo])).toEqual({ code: 2, err: [expect.stringMatching(/^vmcb-check: cannot read .*fifo: .*is a FIFO: give a regular file/)] });
    expect(withRealFiles(["/dev/zero"]).err[0]).toMatch(/is a character device/);
    expect(withRealFiles([validPath, "--caps", fifo]).err[0]).toMatch(/--caps .*is a FIFO/);
    expect(withRealFiles([validPath]).code).toBe(0);
  });
  it("runs as a process with the documented exit codes", () => {
    const bin = join(pkg, "bin/vmcb-check.cjs");
    const ok = spawnSync(process.execPath, [bin, validPath, "--caps", "amd-ryzen-7-1800x"], { encoding: "utf8" });
    expect(ok.status).toBe(0);
    const fail = spawnSync(process.execPath, [bin, badPath, "--caps", "amd-ryzen-7-1800x"], { encoding: "utf8" });
    expect(fail.status).toBe(1);
    expect(fail.stdout.split("\n")[0]).toMatch(/^svm\.ctrl\.asid-zero\t15\.5\.1\t/);
    expect(spawnSync(process.execPath, [bin, join(dir, "missing.json")]).status).toBe(2);
    expect(spawnSync(process.execPath, [bin, "--version"], { encoding: "utf8" }).stdout.trim()).toBe(`vmcb-check ${VERSION}`);
  });
});
