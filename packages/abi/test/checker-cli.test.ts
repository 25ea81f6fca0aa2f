import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CHECKER_EXIT_STATUS, CHECKER_MAX_INPUT_BYTES, type CheckerCli, type CliIo, InputFileError, readCheckerInput, runCheckerCli, TsvmmError } from "@tsvmm/abi";
import { afterAll, describe, expect, it } from "vitest";

// runCheckerCli is the whole command line of vmcs-check and vmcb-check; here it runs a small
// checker of its own ("value must not exceed max") so every path of the runner is seen with
// its exit status and its one line of stderr.

class ToyError extends TsvmmError<"TOY_BAD_INPUT"> {}
interface State {
  value: number;
}
interface Caps {
  max: number;
}
const PROFILES: Record<string, Caps> = { small: { max: 10 }, big: { max: 1000 } };
const toy: CheckerCli<State, Caps> = {
  name: "toy-check",
  help: "usage: toy-check STATE.json [--caps small|big|CAPS.json]",
  version: () => "1.2.3",
  inputName: "STATE.json",
  profileNames: Object.keys(PROFILES),
  defaultProfile: "small",
  isProfileName: (a) => Object.hasOwn(PROFILES, a),
  getProfile: (n) => PROFILES[n]!,
  capsFromJSON: (text) => {
    const c = JSON.parse(text) as Caps;
    if (typeof c.max !== "number") throw new Error("caps: max must be a number");
    return c;
  },
  parseInput: (text) => {
    const s = JSON.parse(text) as State;
    if (typeof s.value !== "number") throw new ToyError("TOY_BAD_INPUT", "value must be a number");
    return s;
  },
  check: (s, c) => (s.value > c.max ? [`TOY-1\t1.1\tvalue ${s.value} exceeds max ${c.max}`] : []),
};

/** Run with an in-memory file system; returns status and what went to each stream. */
function run(argv: string[], files: Record<string, string | (() => never)> = {}): { status: number; out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = {
    readFile: (p) => {
      const f = files[p];
      if (f === undefined) throw new Error(`ENOENT: ${p}`);
      return typeof f === "string" ? f : f();
    },
    stdout: (l) => out.push(l),
    stderr: (l) => err.push(l),
  };
  return { status: runCheckerCli(toy, argv, io), out, err };
}
const files = { "ok.json": '{"value": 5}', "high.json": '{"value": 50}', "caps.json": '{"max": 100}', "bad.json": '{"value": "x"}' };

describe("runCheckerCli: results", () => {
  it("0 and no output when the state passes; 1 and a line per violation when it does not", () => {
    expect(run(["ok.json"], files)).toEqual({ status: CHECKER_EXIT_STATUS.OK, out: [], err: [] });
    expect(run(["high.json"], files)).toEqual({ status: CHECKER_EXIT_STATUS.VIOLATIONS, out: ["TOY-1\t1.1\tvalue 50 exceeds max 10"], err: [] });
  });
  it("--caps takes a profile name (long, short, inline) or a caps file; the default profile otherwise", () => {
    expect(run(["high.json", "--caps", "big"], files).status).toBe(0);
    expect(run(["-c", "big", "high.json"], files).status).toBe(0);
    expect(run(["--caps=big", "high.json"], files).status).toBe(0);
    expect(run(["high.json", "--caps", "caps.json"], files).status).toBe(0);
    expect(run(["high.json", "--caps", "small"], files).status).toBe(1);
  });
  it("after --, an argument starting with '-' is the input file, not an option", () => {
    expect(run(["--caps", "big", "--", "-high.json"], { "-high.json": '{"value": 50}' })).toEqual({ status: 0, out: [], err: [] });
    expect(run(["--", "--help"], { "--help": '{"value": 11}' }).out).toEqual(["TOY-1\t1.1\tvalue 11 exceeds max 10"]);
  });
  it("--help and --version print to stdout and exit 0, before any file is read", () => {
    expect(run(["--help"])).toEqual({ status: 0, out: [toy.help], err: [] });
    expect(run(["-h", "missing.json"])).toEqual({ status: 0, out: [toy.help], err: [] });
    expect(run(["-V"])).toEqual({ status: 0, out: ["toy-check 1.2.3"], err: [] });
    expect(run(["--version"]).out).toEqual(["toy-check 1.2.3"]);
  });
});

describe("runCheckerCli: usage errors exit 2 with one line on stderr", () => {
  const usage = (argv: string[]): string => {
    const r = run(argv, files);
    expect(r.status).toBe(CHECKER_EXIT_STATUS.USAGE);
    expect(r.out).toEqual([]);
    expect(r.err).toHaveLength(1);
    return r.err[0]!;
  };
  it("no input, or more than one", () => {
    expect(usage([])).toBe("toy-check: missing STATE.json (see toy-check --help)");
    expect(usage(["ok.json", "high.json"])).toBe("toy-check: one STATE.json at a time, got 2 (see toy-check --help)");
  });
  it("an unknown option, a flag given a value, --caps without a value", () => {
    expect(usage(["ok.json", "--bogus"])).toBe("toy-check: unknown option --bogus (see toy-check --help)");
    expect(usage(["ok.json", "-x"])).toBe("toy-check: unknown option -x (see toy-check --help)");
    expect(usage(["--help=yes"])).toBe("toy-check: option --help takes no value (see toy-check --help)");
    expect(usage(["--version=1"])).toMatch(/option --version takes no value/);
    expect(usage(["ok.json", "--caps"])).toMatch(/^toy-check: option --caps needs a value: a profile name or a caps JSON file/);
    expect(usage(["--caps", "--help", "ok.json"])).toMatch(/option --caps needs a value/);
  });
  it("a --caps value starting with '-' is a value only when written inline (or is '-' itself)", () => {
    expect(usage(["ok.json", "--caps=-odd"])).toMatch(/^toy-check: --caps -odd: not a built-in profile \(small, big\) and not a readable file: ENOENT: -odd/);
    expect(run(["ok.json", "--caps", "-"], { ...files, "-": '{"max": 1}' })).toMatchObject({ status: 1 });
  });
  it("a caps argument that is neither a profile nor a readable file names the profiles", () => {
    expect(usage(["ok.json", "--caps", "huge"])).toBe("toy-check: --caps huge: not a built-in profile (small, big) and not a readable file: ENOENT: huge (see toy-check --help)");
  });
  it("an unreadable input says which file and why", () => {
    expect(usage(["missing.json"])).toBe("toy-check: cannot read missing.json: ENOENT: missing.json (see toy-check --help)");
    // A reader that throws something that is not an Error is still one line.
    const r = run(["odd.json"], {
      "odd.json": () => {
        throw "disk on fire";
      },
    });
    expect([r.status, r.err]).toEqual([2, ["toy-check: cannot read odd.json: disk on fire (see toy-check --help)"]]);
  });
  it("input the checker refuses: a typed error by its code, any other error by its message", () => {
    expect(usage(["bad.json"])).toBe("toy-check: TOY_BAD_INPUT: value must be a number");
    expect(usage(["ok.json", "--caps", "ok.json"])).toBe("toy-check: caps: max must be a number");
    expect(run(["t.json"], { "t.json": "{not json" }).err[0]).toMatch(/^toy-check: .*JSON/);
  });
});

describe("readCheckerInput (the real CLIs' reader)", () => {
  const dir = mkdtempSync(join(tmpdir(), "abi-checker-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  it("reads a regular file as UTF-8 text and refuses what readRegularFile refuses", () => {
    const p = join(dir, "state.json");
    writeFileSync(p, '{"value": "é"}');
    expect(readCheckerInput(p)).toBe('{"value": "é"}');
    const fifo = join(dir, "fifo");
    execFileSync("mkfifo", [fifo]);
    expect(() => readCheckerInput(fifo)).toThrowError(InputFileError);
    expect(CHECKER_MAX_INPUT_BYTES).toBe(16 * 1024 * 1024);
  });
});
