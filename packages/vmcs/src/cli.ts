import { readFileSync } from "node:fs";
import { capsFromJSON, getProfile, isProfileName, PROFILES, type VmxCaps } from "./caps.js";
import { checkVmEntry } from "./checks/index.js";
import { VmcsError } from "./errors.js";
import { VmcsState } from "./state.js";

export interface CliIo {
  readFile(path: string): string;
  stdout(line: string): void;
  stderr(line: string): void;
}

const defaultIo: CliIo = {
  readFile: (p) => readFileSync(p, "utf8"),
  stdout: (l) => process.stdout.write(`${l}\n`),
  stderr: (l) => process.stderr.write(`${l}\n`),
};

const USAGE = `usage: vmcs-check state.json [--caps caps.json|profile]
profiles: ${Object.keys(PROFILES).join(", ")} (default full-featured)`;

/**
 * `vmcs-check state.json [--caps caps.json|profile]`: prints `ID<TAB>SDM-section<TAB>message` per
 * violation. Returns 0 when VM entry would succeed, 1 when it would fail, 2 on unreadable input.
 */
export function main(argv: readonly string[], io: CliIo = defaultIo): number {
  let statePath: string | undefined;
  let capsArg = "full-featured";
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--caps") {
      const v = argv[++i];
      if (v === undefined) {
        io.stderr(USAGE);
        return 2;
      }
      capsArg = v;
    } else if (a === "-h" || a === "--help") {
      io.stdout(USAGE);
      return 0;
    } else if (statePath === undefined) statePath = a;
    else {
      io.stderr(USAGE);
      return 2;
    }
  }
  if (statePath === undefined) {
    io.stderr(USAGE);
    return 2;
  }
  let state: VmcsState;
  let caps: VmxCaps;
  try {
    caps = isProfileName(capsArg) ? getProfile(capsArg) : capsFromJSON(io.readFile(capsArg));
    state = VmcsState.fromJSON(io.readFile(statePath));
  } catch (e) {
    const msg = e instanceof VmcsError ? `${e.code}: ${e.message}` : `cannot read input: ${(e as Error)?.message ?? String(e)}`;
    io.stderr(`vmcs-check: ${msg}`);
    return 2;
  }
  const violations = checkVmEntry(state, caps);
  for (const v of violations) io.stdout(`${v.id}\t${v.sdm}\t${v.message}`);
  return violations.length === 0 ? 0 : 1;
}
