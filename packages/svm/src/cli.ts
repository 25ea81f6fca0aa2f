import { CHECKER_EXIT_STATUS, CHECKER_MAX_INPUT_BYTES, type CheckerCli, type CliIo, defaultCliIo, readCheckerInput, runCheckerCli } from "@tsvmm/abi";
import { capsFromJSON, getProfile, isProfileName, PROFILES, type SvmCaps } from "./caps.js";
import { checkVmrun } from "./checks.js";
import { VmcbState } from "./state.js";
import { VERSION } from "./version.js";

export type { CliIo };

/** Largest state or caps file read: a real one is a few KiB; /dev/zero must not fill memory. */
export const MAX_INPUT_BYTES = CHECKER_MAX_INPUT_BYTES;

/** Read a regular file of at most MAX_INPUT_BYTES; a FIFO or device would block or never end. */
export const readInputFile: (path: string) => string = readCheckerInput;

/** Exit statuses, also listed in --help. */
export const EXIT_STATUS = CHECKER_EXIT_STATUS;

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

const CLI: CheckerCli<VmcbState, SvmCaps> = {
  name: "vmcb-check",
  help: HELP,
  version: () => VERSION,
  inputName: "VMCB.json",
  profileNames: Object.keys(PROFILES),
  defaultProfile: "full-featured",
  isProfileName,
  getProfile,
  capsFromJSON,
  parseInput: (text) => VmcbState.fromJSON(text),
  check: (state, caps) => checkVmrun(state, caps).map((v) => `${v.id}\t${v.apm}\t${v.message}`),
};

/**
 * `vmcb-check VMCB.json [--caps PROFILE|CAPS.json]`: prints `ID<TAB>section<TAB>message` per violation.
 * Returns 0 when the state would be entered, 1 when it would not, 2 on a usage error or unusable
 * input (one line on stderr).
 */
export function main(argv: readonly string[], io: CliIo = defaultCliIo): number {
  return runCheckerCli(CLI, argv, io);
}
