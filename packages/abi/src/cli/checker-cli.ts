import { parseArgs } from "node:util";
import { TsvmmError } from "../errors.js";
import { readRegularFile } from "./input-file.js";

/** Where a checker CLI reads its files and writes its lines (tests give their own). */
export interface CliIo {
  readFile(path: string): string;
  stdout(line: string): void;
  stderr(line: string): void;
}

/** Largest state or caps file a checker reads: a real one is a few KiB; /dev/zero must not fill memory. */
export const CHECKER_MAX_INPUT_BYTES = 16 * 1024 * 1024;

/** Exit statuses of the state checkers (vmcs-check, vmcb-check), listed in their --help. */
export const CHECKER_EXIT_STATUS = { OK: 0, VIOLATIONS: 1, USAGE: 2 } as const;

/** Read a checker's input: a regular file of at most CHECKER_MAX_INPUT_BYTES, as text. */
export function readCheckerInput(path: string): string {
  return readRegularFile(path, CHECKER_MAX_INPUT_BYTES).toString("utf8");
}

export const defaultCliIo: CliIo = {
  readFile: readCheckerInput,
  stdout: (l) => process.stdout.write(`${l}\n`),
  stderr: (l) => process.stderr.write(`${l}\n`),
};

/**
 * What one checker CLI is made of: `NAME INPUT.json [--caps PROFILE|CAPS.json]` checks one state
 * against the capabilities of a built-in profile or a caps file and prints a line per violation.
 */
export interface CheckerCli<S, C> {
  /** The program's name, at the start of every message: "vmcs-check". */
  readonly name: string;
  readonly help: string;
  readonly version: () => string;
  /** What the one positional argument is called in messages: "STATE.json". */
  readonly inputName: string;
  readonly profileNames: readonly string[];
  readonly defaultProfile: string;
  isProfileName(arg: string): boolean;
  getProfile(name: string): C;
  capsFromJSON(text: string): C;
  parseInput(text: string): S;
  /** The violation lines (`ID<TAB>section<TAB>message`); none means the state would be entered. */
  check(state: S, caps: C): readonly string[];
}

class UsageError extends Error {}

const OPTIONS = {
  caps: { type: "string", short: "c" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
} as const;

interface Args {
  caps: string | undefined;
  help: boolean;
  version: boolean;
  files: string[];
}

/** Options and positionals, with one-line messages of our own (parseArgs' are long and quote unevenly). */
function parse(argv: readonly string[]): Args {
  const { tokens } = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: false, tokens: true });
  const a: Args = { caps: undefined, help: false, version: false, files: [] };
  for (const t of tokens) {
    if (t.kind === "positional") a.files.push(t.value);
    else if (t.kind === "option") {
      if (!Object.hasOwn(OPTIONS, t.name)) throw new UsageError(`unknown option ${t.rawName}`);
      if (t.name === "caps") {
        if (t.value === undefined || (t.inlineValue !== true && t.value.startsWith("-") && t.value !== "-")) {
          throw new UsageError(`option ${t.rawName} needs a value: a profile name or a caps JSON file`);
        }
        a.caps = t.value;
      } else if (t.value !== undefined) throw new UsageError(`option ${t.rawName} takes no value`);
      else if (t.name === "help") a.help = true;
      else a.version = true;
    }
  }
  return a;
}

function readOrUsage(io: CliIo, path: string, what: (why: string) => string): string {
  try {
    return io.readFile(path);
  } catch (e) {
    throw new UsageError(what((e as Error)?.message ?? String(e)));
  }
}

/**
 * Run a checker CLI: 0 when the state would be entered, 1 when it would not (the violations on
 * stdout), 2 on a usage error or unusable input (one line on stderr, typed errors by their code).
 */
export function runCheckerCli<S, C>(cli: CheckerCli<S, C>, argv: readonly string[], io: CliIo = defaultCliIo): number {
  let state: S;
  let caps: C;
  try {
    const a = parse(argv);
    if (a.help) {
      io.stdout(cli.help);
      return CHECKER_EXIT_STATUS.OK;
    }
    if (a.version) {
      io.stdout(`${cli.name} ${cli.version()}`);
      return CHECKER_EXIT_STATUS.OK;
    }
    if (a.files.length !== 1) throw new UsageError(a.files.length === 0 ? `missing ${cli.inputName}` : `one ${cli.inputName} at a time, got ${a.files.length}`);
    const capsArg = a.caps ?? cli.defaultProfile;
    caps = cli.isProfileName(capsArg)
      ? cli.getProfile(capsArg)
      : cli.capsFromJSON(readOrUsage(io, capsArg, (why) => `--caps ${capsArg}: not a built-in profile (${cli.profileNames.join(", ")}) and not a readable file: ${why}`));
    const path = a.files[0]!;
    state = cli.parseInput(readOrUsage(io, path, (why) => `cannot read ${path}: ${why}`));
  } catch (e) {
    if (e instanceof UsageError) io.stderr(`${cli.name}: ${e.message} (see ${cli.name} --help)`);
    else if (e instanceof TsvmmError) io.stderr(`${cli.name}: ${e.code}: ${e.message}`);
    else io.stderr(`${cli.name}: ${(e as Error)?.message ?? String(e)}`);
    return CHECKER_EXIT_STATUS.USAGE;
  }
  const lines = cli.check(state, caps);
  for (const l of lines) io.stdout(l);
  return lines.length === 0 ? CHECKER_EXIT_STATUS.OK : CHECKER_EXIT_STATUS.VIOLATIONS;
}
