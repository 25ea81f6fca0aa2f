import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { CHECKER_EXIT_STATUS, CHECKER_MAX_INPUT_BYTES, type CheckerCli, type CliIo, defaultCliIo, readCheckerInput, runCheckerCli } from "@tsvmm/abi";
import { capsFromJSON, getProfile, isProfileName, PROFILES, type VmxCaps } from "./caps.js";
import { checkVmEntry } from "./checks/index.js";
import { VmcsState } from "./state.js";

export type { CliIo };

/** Largest state or caps file read: a real one is a few KiB; /dev/zero must not fill memory. */
export const MAX_INPUT_BYTES = CHECKER_MAX_INPUT_BYTES;

/** Read a regular file of at most MAX_INPUT_BYTES; a FIFO or device would block or never end. */
export const readInputFile: (path: string) => string = readCheckerInput;

/** Exit statuses, also listed in --help. */
export const EXIT_STATUS = CHECKER_EXIT_STATUS;

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

const CLI: CheckerCli<VmcsState, VmxCaps> = {
  name: "vmcs-check",
  help: HELP,
  version: () => packageVersion(),
  inputName: "STATE.json",
  profileNames: Object.keys(PROFILES),
  defaultProfile: "full-featured",
  isProfileName,
  getProfile,
  capsFromJSON,
  parseInput: (text) => VmcsState.fromJSON(text),
  check: (state, caps) => checkVmEntry(state, caps).map((v) => `${v.id}\t${v.sdm}\t${v.message}`),
};

/**
 * `vmcs-check STATE.json [--caps PROFILE|CAPS.json]`: prints `ID<TAB>section<TAB>message` per violation.
 * Returns 0 when the state would be entered, 1 when it would not, 2 on a usage error or unusable
 * input (one line on stderr).
 */
export function main(argv: readonly string[], io: CliIo = defaultCliIo): number {
  return runCheckerCli(CLI, argv, io);
}
