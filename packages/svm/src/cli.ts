import { closeSync, fstatSync, openSync, readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { capsFromJSON, getProfile, isProfileName, PROFILES, type SvmCaps } from "./caps.js";
import { checkVmrun } from "./checks.js";
import { SvmError } from "./errors.js";
import { VmcbState } from "./state.js";
import { VERSION } from "./version.js";

export interface CliIo {
  readFile(path: string): string;
  stdout(line: string): void;
  stderr(line: string): void;
}

/** Largest VMCB or caps file read: a real one is a few KiB; /dev/zero must not fill memory. */
export const MAX_INPUT_BYTES = 16 * 1024 * 1024;

/** Read a regular file of at most MAX_INPUT_BYTES (a FIFO or device could block or never end). */
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

/** Exit statuses, also listed in --help (the same as vmcs-check's). */
export const EXIT_STATUS = { OK: 0, VIOLATIONS: 1, USAGE: 2 } as const;

export const HELP = `usage: vmcb-check VMCB.json [--caps PROFILE|CAPS.json]
       vmcb-check --help | --version

Checks a VMCB against every VMRUN consistency check of the AMD64 APM vol. 2 (15.5.1 and the
sections it refers to), as the CPU the capabilities describe would, and prints one line per
violation: ID<TAB>APM-section<TAB>message. VMCB.json is {"fields": {"save.cr0": "0x80010031", ...}}.

options:
  -c, --caps PROFILE|FILE  capabilities: a built-in profile, or a JSON file
                           {"base": PROFILE, "svm": {...}, "cpu": {...}} (default: full-featured)
                           profiles: ${Object.keys(PROFILES).join(", ")}
  -h, --help               print this help and exit
  -V, --version            print the version and exit

exit status:
  0  VMRUN would enter the guest: no violation
  1  VMRUN would #VMEXIT with VMEXIT_INVALID: the violations are on stdout
  2  usage error or unusable input: one line on stderr`;

const OPTIONS = {
  caps: { type: "string", short: "c" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
} as const;

class UsageError extends Error {}

function parse(argv: readonly string[]): { caps: string | undefined; help: boolean; version: boolean; files: string[] } {
  // strict: false and our own messages: parseArgs' errors are long and quote unevenly.
  const { tokens } = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: false, tokens: true });
  let caps: string | undefined;
  let help = false;
  let version = false;
  const files: string[] = [];
  for (const t of tokens) {
    if (t.kind === "positional") files.push(t.value);
    else if (t.kind === "option") {
      if (!Object.hasOwn(OPTIONS, t.name)) throw new UsageError(`unknown option ${t.rawName}`);
      if (t.name === "caps") {
        if (t.value === undefined || (t.inlineValue !== true && t.value.startsWith("-") && t.value !== "-")) {
          throw new UsageError(`option ${t.rawName} needs a value: a profile name or a caps JSON file`);
        }
        caps = t.value;
      } else if (t.value !== undefined) throw new UsageError(`option ${t.rawName} takes no value`);
      else if (t.name === "help") help = true;
      else version = true;
    }
  }
  return { caps, help, version, files };
}

function loadCaps(arg: string, io: CliIo): SvmCaps {
  if (isProfileName(arg)) return getProfile(arg);
  let text: string;
  try {
    text = io.readFile(arg);
  } catch (e) {
    throw new UsageError(`--caps ${arg}: not a built-in profile (${Object.keys(PROFILES).join(", ")}) and not a readable file: ${(e as Error)?.message ?? String(e)}`);
  }
  return capsFromJSON(text);
}

/**
 * `vmcb-check VMCB.json [--caps PROFILE|CAPS.json]`: prints `ID<TAB>APM-section<TAB>message` per
 * violation. Returns 0 when VMRUN would enter the guest, 1 when it would fail with
 * VMEXIT_INVALID, 2 on a usage error or unusable input (one line on stderr).
 */
export function main(argv: readonly string[], io: CliIo = defaultIo): number {
  let vmcb: VmcbState;
  let caps: SvmCaps;
  try {
    const a = parse(argv);
    if (a.help) {
      io.stdout(HELP);
      return EXIT_STATUS.OK;
    }
    if (a.version) {
      io.stdout(`vmcb-check ${VERSION}`);
      return EXIT_STATUS.OK;
    }
    if (a.files.length !== 1) throw new UsageError(a.files.length === 0 ? "missing VMCB.json" : `one VMCB.json at a time, got ${a.files.length}`);
    caps = loadCaps(a.caps ?? "full-featured", io);
    const path = a.files[0]!;
    let text: string;
    try {
      text = io.readFile(path);
    } catch (e) {
      throw new UsageError(`cannot read ${path}: ${(e as Error)?.message ?? String(e)}`);
    }
    vmcb = VmcbState.fromJSON(text);
  } catch (e) {
    if (e instanceof UsageError) io.stderr(`vmcb-check: ${e.message} (see vmcb-check --help)`);
    else if (e instanceof SvmError) io.stderr(`vmcb-check: ${e.code}: ${e.message}`);
    else io.stderr(`vmcb-check: ${(e as Error)?.message ?? String(e)}`);
    return EXIT_STATUS.USAGE;
  }
  const violations = checkVmrun(vmcb, caps);
  for (const v of violations) io.stdout(`${v.id}\t${v.apm}\t${v.message}`);
  return violations.length === 0 ? EXIT_STATUS.OK : EXIT_STATUS.VIOLATIONS;
}
