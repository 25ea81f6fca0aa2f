import { TsvmmError } from "@tsvmm/abi";
import { type CliIo, parseCli, seconds, stopLine, UsageError, version } from "../cli.js";
import { VM_LIMITS } from "../config.js";
import { checkSnapshot, restoreChecked } from "../snapshot/restore.js";
import type { Vmm, VmmResult } from "../vmm.js";
import { ApiClient } from "./client.js";
import { ApiError } from "./errors.js";
import type { ApiOp } from "./protocol.js";
import { ApiServer } from "./server.js";

export const RESTORE_HELP = `usage: tsvmm restore DIR [options]

Restores the VM saved in snapshot directory DIR (tsvmm ctl PATH snapshot DIR, or Vmm.snapshot)
and runs it on from where it was paused: the guest console goes to stdout, one line on stderr
says how it stopped, and the exit status is the run's (see tsvmm run --help). A snapshot that is
truncated, damaged, of another format version, or from a host lacking what the guest relies on
is refused (exit 2) before any VM is made.

options:
      --memory MODE     map (default): guest memory maps DIR/memory.bin copy-on-write and
                        loads pages on first touch; copy: read the written pages in now
      --no-verify       skip the SHA-256 check of the memory file (the header and state are
                        always checked)
      --force           restore even if this host lacks CPU features or KVM capabilities the
                        guest relies on
      --api-sock PATH   serve the control socket at PATH (see tsvmm ctl --help)
      --timeout SECONDS stop the VM after this long (exit 124)
      --stall SECONDS   stop the VM when no vCPU exits for this long (124)
  -h, --help            this help
  -V, --version         the tsvmm version`;

export const CTL_HELP = `usage: tsvmm ctl PATH pause|resume|status|stop
       tsvmm ctl PATH snapshot DIR

Talks to the VMM serving the control socket PATH (tsvmm run --api-sock PATH): pause or resume
its vCPUs, print its status (one JSON line), stop it, or save a snapshot into the new directory
DIR (a running VM is paused for the save and resumed after it; progress on a terminal).

exit status: 0 done, 1 the VMM refused or is not there, 2 usage error

options:
  -h, --help     this help
  -V, --version  the tsvmm version`;

/** Run the VM, serving the control socket at `path` (when given) for as long as it runs. */
export async function runWithApi(vmm: Vmm, path: string | undefined): Promise<VmmResult> {
  const api = path === undefined ? undefined : await ApiServer.listen(path, vmm);
  try {
    return await vmm.run();
  } finally {
    await api?.close();
  }
}

export async function restoreCommand(args: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCli(
    args,
    {
      memory: { type: "string" },
      "no-verify": { type: "boolean" },
      force: { type: "boolean" },
      "api-sock": { type: "string" },
      timeout: { type: "string" },
      stall: { type: "string" },
      help: { type: "boolean", short: "h" },
      version: { type: "boolean", short: "V" },
    },
    "see tsvmm restore --help",
  );
  if (values.help) {
    io.stdout(`${RESTORE_HELP}\n`);
    return 0;
  }
  if (values.version) {
    io.stdout(`tsvmm ${version()}\n`);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError(`give one snapshot directory, got ${positionals.length}`);
  const memory = values.memory ?? "map";
  if (memory !== "map" && memory !== "copy") throw new UsageError(`--memory ${memory}: give map or copy`);
  const timeoutMs = seconds("--timeout", values.timeout, VM_LIMITS.timeoutMs.max);
  const stallMs = seconds("--stall", values.stall, VM_LIMITS.stallMs.max);
  const check = checkSnapshot(positionals[0]!, { verifyMemory: values["no-verify"] !== true, force: values.force === true });
  for (const p of check.hostProblems) io.stderr(`tsvmm: warning (--force): ${p}\n`);
  const vmm = restoreChecked(check, {
    memory,
    console: (b) => io.stdout(b),
    ...(timeoutMs !== undefined || stallMs !== undefined ? { watchdog: { timeoutMs, stallMs } } : {}),
  });
  io.onVmm?.(vmm);
  const result = await runWithApi(vmm, values["api-sock"]);
  io.stderr(`${stopLine(result)}\n`);
  return result.exitCode;
}

const OPS: readonly ApiOp[] = ["pause", "resume", "status", "stop", "snapshot"];

export async function ctlCommand(args: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCli(args, { help: { type: "boolean", short: "h" }, version: { type: "boolean", short: "V" } }, "see tsvmm ctl --help");
  if (values.help) {
    io.stdout(`${CTL_HELP}\n`);
    return 0;
  }
  if (values.version) {
    io.stdout(`tsvmm ${version()}\n`);
    return 0;
  }
  const [path, op, dir, ...extra] = positionals;
  if (path === undefined || op === undefined) throw new UsageError("give the socket PATH and an operation (see tsvmm ctl --help)");
  if (!OPS.includes(op as ApiOp)) throw new UsageError(`unknown operation ${JSON.stringify(op)}: give ${OPS.join(", ")}`);
  if (op === "snapshot" ? dir === undefined || extra.length > 0 : dir !== undefined) {
    throw new UsageError(op === "snapshot" ? "snapshot takes one directory: tsvmm ctl PATH snapshot DIR" : `${op} takes no argument`);
  }
  let client: ApiClient | undefined;
  try {
    client = await ApiClient.connect(path);
    let shown = false;
    const progress =
      io.isTTY === true
        ? (done: number, total: number) => {
            shown = true;
            const mib = (n: number) => (n / 2 ** 20).toFixed(1);
            io.stderr(`\rtsvmm: snapshot ${mib(done)} / ${mib(total)} MiB (${total === 0 ? 100 : Math.floor((done / total) * 100)}%)`);
          }
        : undefined;
    const r = await client.request(op as ApiOp, dir === undefined ? {} : { dir }, progress);
    if (shown) io.stderr("\n");
    const { id: _id, ...rest } = r;
    io.stdout(`${JSON.stringify(rest)}\n`);
    return 0;
  } catch (e) {
    if (e instanceof ApiError) {
      io.stderr(`tsvmm ctl: ${e.message}\n`);
      return 1;
    }
    if (e instanceof TsvmmError) throw e;
    throw e;
  } finally {
    client?.close();
  }
}
