import { closeSync, fstatSync, openSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { capsFromJSON, getProfile, isProfileName, PROFILES, type VmxCaps } from "./caps.js";
import { checkVmEntry } from "./checks/index.js";
import { VmcsError } from "./errors.js";
import { VmcsState } from "./state.js";

export interface CliIo {
  readFile(path: string): string;
  stdout(line: string): void;
  stderr(line: string): void;
}

/** Largest state or caps file read: a real one is a few KiB; /dev/zero must not fill memory. */
export const MAX_INPUT_BYTES = 16 * 1024 * 1024;

/** Read a regular file of at most MAX_INPUT_BYTES; a FIFO or device would block or never end. */
export function readInputFile(path: string): string {
  const fd = openSync(path, "r");
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error("not a regular file");
    if (st.size > MAX_INPUT_BYTES) throw new Error(`${st.size} bytes, more than the ${MAX_INPUT_BYTES} accepted`);
    return readFileSync(fd, "utf8");
  } finally {
    closeSync(fd);
  }
}

const defaultIo: CliIo = {
  readFile: readInputFile,
  stdout: (l) => process.stdout.write(`${l}\n`),
  stderr: (l) => process.stderr.write(`${l}\n`),
};

/** Exit statuses, also listed in --help. */
export const EXIT_STATUS = { OK: 0, VIOLATIONS: 1, USAGE: 2 } as const;

/** The package's version, read from the package.json one level above src/ (tests) or dist/ (bin). */
export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(join(dirname(fileURLToPath(import.meta.url)), "..", "package.json"), "utf8")) as { version?: unknown };
  return typeof pkg.version === "string" ? pkg.version : "unknown";
}

export const HELP = `usage: vmcs-check STATE.json [--caps PROFILE|CAPS.json]
       vmcs-check --help | --version

Checks a VMCS state against every VM-entry check of the Intel SDM ("VM Entries"), as the CPU the
capabilities describe would, and prints one line per violation: ID<TAB>SDM-section<TAB>message.
STATE.json is {"fields": {"GUEST_CR0": "0x80000031", ...}} (field names or encodings as keys).

options:
  -c, --caps PROFILE|FILE  capabilities: a built-in profile, or a JSON file
                           {"base": PROFILE, "msrs": {...}, "cpu": {...}} (default: full-featured)
                           profiles: ${Object.keys(PROFILES).join(", ")}
  -h, --help               print this help and exit
  -V, --version            print the version and exit

exit status:
  0  VM entry would succeed: no violation
  1  VM entry would fail: the violations are on stdout
  2  usage error or unusable input: one line on stderr`;

const OPTIONS = {
  caps: { type: "string", short: "c" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
} as const;

class UsageError extends Error {}

/** Options and positionals, with one-line messages of our own (parseArgs' are long and quote unevenly). */
function parse(argv: readonly string[]): { caps: string | undefined; help: boolean; version: boolean; files: string[] } {
  const { tokens } = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: false, tokens: true });
  let caps: string | undefined;
  let help = false;
  let version = false;
  const files: string[] = [];
  for (const t of tokens) {
    if (t.kind === "positional") files.push(t.value);
    else if (t.kind === "option") {
      const shown = t.rawName;
      if (!Object.hasOwn(OPTIONS, t.name)) throw new UsageError(`unknown option ${shown}`);
      if (t.name === "caps") {
        if (t.value === undefined || (t.inlineValue !== true && t.value.startsWith("-") && t.value !== "-")) {
          throw new UsageError(`option ${shown} needs a value: a profile name or a caps JSON file`);
        }
        caps = t.value;
      } else if (t.value !== undefined) throw new UsageError(`option ${shown} takes no value`);
      else if (t.name === "help") help = true;
      else version = true;
    }
  }
  return { caps, help, version, files };
}

function loadCaps(arg: string, io: CliIo): VmxCaps {
  if (isProfileName(arg)) return getProfile(arg);
  let text: string;
  try {
    text = io.readFile(arg);
  } catch (e) {
    const why = (e as Error)?.message ?? String(e);
    throw new UsageError(`--caps ${arg}: not a built-in profile (${Object.keys(PROFILES).join(", ")}) and not a readable file: ${why}`);
  }
  return capsFromJSON(text);
}

/**
 * `vmcs-check STATE.json [--caps PROFILE|CAPS.json]`: prints `ID<TAB>SDM-section<TAB>message` per
 * violation. Returns 0 when VM entry would succeed, 1 when it would fail, 2 on a usage error or
 * unusable input (one line on stderr).
 */
export function main(argv: readonly string[], io: CliIo = defaultIo): number {
  let state: VmcsState;
  let caps: VmxCaps;
  try {
    const a = parse(argv);
    if (a.help) {
      io.stdout(HELP);
      return EXIT_STATUS.OK;
    }
    if (a.version) {
      io.stdout(`vmcs-check ${packageVersion()}`);
      return EXIT_STATUS.OK;
    }
    if (a.files.length !== 1) throw new UsageError(a.files.length === 0 ? "missing STATE.json" : `one STATE.json at a time, got ${a.files.length}`);
    caps = loadCaps(a.caps ?? "full-featured", io);
    const path = a.files[0]!;
    let text: string;
    try {
      text = io.readFile(path);
    } catch (e) {
      throw new UsageError(`cannot read ${path}: ${(e as Error)?.message ?? String(e)}`);
    }
    state = VmcsState.fromJSON(text);
  } catch (e) {
    if (e instanceof UsageError) io.stderr(`vmcs-check: ${e.message} (see vmcs-check --help)`);
    else if (e instanceof VmcsError) io.stderr(`vmcs-check: ${e.code}: ${e.message}`);
    else io.stderr(`vmcs-check: ${(e as Error)?.message ?? String(e)}`);
    return EXIT_STATUS.USAGE;
  }
  const violations = checkVmEntry(state, caps);
  for (const v of violations) io.stdout(`${v.id}\t${v.sdm}\t${v.message}`);
  return violations.length === 0 ? EXIT_STATUS.OK : EXIT_STATUS.VIOLATIONS;
}
