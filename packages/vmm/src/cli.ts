import { readFileSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import { isatty } from "node:tty";
import { parseArgs } from "node:util";
import { KVM_CAP, TsvmmError } from "@tsvmm/abi";
import { Kvm } from "@tsvmm/kvm-backend";
import { bundledHelloPath, packageRoot, VmmBuilder } from "./builder.js";
import { loadVmConfig, parseVmConfig, VM_LIMITS, type VmConfig } from "./config.js";
import { GdbTargetError } from "./debug/errors.js";
import { VmmError } from "./errors.js";
import { describeOverrides, measureCpuidOverrides } from "./host.js";
import { EXIT_STATUS, type Vmm, type VmmResult } from "./vmm.js";


export interface CliIo {
  stdout: (s: string | Buffer) => void;
  stderr: (s: string) => void;
  /** Called with the VM once it is built, before it runs (the bin hooks signals here). */
  onVmm?: (vmm: Vmm) => void;
  /** True when stderr is a terminal: long steps show progress. */
  isTTY?: boolean;
}

/** The package version, as the bin reports it (read from this package's package.json). */
export function version(): string {
  try {
    return (JSON.parse(readFileSync(join(packageRoot(), "package.json"), "utf8")) as { version: string }).version;
  } catch {
    return "unknown";
  }
}

const L = VM_LIMITS;

const EXIT_TABLE = `exit status:
  N     the guest's own exit code (EXIT hypercall, or the debug-exit port: QEMU's (value << 1) | 1)
  0     the guest reset or powered off, or the VM was stopped on request
  2     bad input: a usage error, a config, kernel, initrd or template tsvmm refuses
  74    the VMM could not do its part (the trace could not be written)
  124   the watchdog stopped the VM (--timeout, --stall)
  125   triple fault
  126   the guest did something KVM could not carry out, or halted with interrupts off
  130   interrupted (SIGINT); 143: terminated (SIGTERM)
  141   stdout closed early (as cat does)`;

const RUN_HELP = `usage: tsvmm run [KERNEL] [options]

Boots KERNEL (default: the bundled hello guest); the guest console goes to stdout, and one line on
stderr says how the VM stopped. Formats: ELF (tsvmm note, PVH, plain), Multiboot, bzImage, flat.

options:
  -m, --mem MiB         guest RAM, ${L.memoryMiB.min}..${L.memoryMiB.max} MiB (default ${L.memoryMiB.default})       config: memoryMiB
      --vcpus N         vCPUs, ${L.vcpus.min}..${L.vcpus.max} (default ${L.vcpus.default}; --smp is the same)        config: vcpus
      --cmdline S       kernel command line, at most ${L.cmdlineBytes.max} bytes                config: cmdline
      --initrd FILE     initial ramdisk (a regular file)                       config: initrd
      --format F        auto|tsvmm|elf|pvh|multiboot|bzimage|flat (default auto) config: format
      --config FILE     a JSON VM config; options given here override it
      --trace FILE      record every device access as JSON lines             config: trace
      --timeout SECONDS stop the VM after this long (exit 124)               config: timeoutMs
      --stall SECONDS   stop the VM when no vCPU exits for this long (124)    config: stallMs
      --api-sock PATH   serve pause/resume/snapshot/stop/status on this Unix socket (tsvmm ctl)
      --disk FILE[,ro]  a virtio-blk disk over a raw image (repeatable)      config: disks
      --net tap=NAME    a virtio-net device over TAP interface NAME (repeat.) config: net
      --vsock CID,PATH  virtio-vsock: guest CID, host Unix socket PATH        config: vsock
      --console K       uart (default) or virtio (adds a virtio-console port) config: console
      --rng             a virtio-rng device                                   config: rng
      --no-acpi         no ACPI tables and no PM device                       config: acpi
      --no-mptable      no Intel MP table                                     config: mpTable
      --emulate         finish in tsvmm the instructions this host's KVM cannot
                        emulate (PVM hosts); adds what Linux needs there to
                        the command line and says so                          config: emulate
      --gdb ADDRESS     serve gdb's remote protocol: HOST:PORT (loopback only
                        unless --gdb-allow-remote) or unix:PATH; a debugger
                        connecting stops the VM (gdb KERNEL -ex 'target remote ADDRESS')
      --gdb-wait        no vCPU runs before the debugger lets it
      --gdb-allow-remote  let --gdb bind beyond loopback (no authentication!)
  -h, --help            this help
  -V, --version         the tsvmm version

A process group is the unit of a run: signal the group (as a shell's Ctrl-C does), not only
npx's process. SIGINT/SIGTERM stop the VM, flush the trace and print the stop line.

${EXIT_TABLE}`;

const INFO_HELP = `usage: tsvmm info [--json]

Prints the KVM API version, its capabilities, the supported CPUID table, and the CPUID registers
this host's KVM replaces after KVM_SET_CPUID2 (measured now).

options:
      --json     one JSON object instead of tables
  -h, --help     this help
  -V, --version  the tsvmm version`;

const USAGE = `usage: tsvmm run [KERNEL] [options]    boot a kernel (tsvmm run --help)
       tsvmm info [--json]              what this host's KVM offers (tsvmm info --help)
       tsvmm restore DIR [options]      run a VM on from its snapshot (tsvmm restore --help)
       tsvmm ctl PATH OP [DIR]          pause|resume|snapshot DIR|stop|status a VM (tsvmm ctl --help)
       tsvmm --version`;

/** A usage error: the message speaks in the user's flags; exit status 2. */
export class UsageError extends Error {}

/**
 * The CLI as a function: returns the exit status. Exit 2 is a usage or input error; nothing the
 * guest does makes it throw.
 */
export async function main(argv: readonly string[], io: CliIo = processIo()): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === "run") return await runCommand(rest, io);
    if (command === "info") return infoCommand(rest, io);
    // Loaded on demand: the control socket (node:net) is not on the path of a plain `tsvmm run`.
    if (command === "restore") return await (await import("./api/commands.js")).restoreCommand(rest, io);
    if (command === "ctl") return await (await import("./api/commands.js")).ctlCommand(rest, io);
    if (command === "--help" || command === "-h" || command === "help") {
      io.stdout(`${USAGE}\n`);
      return 0;
    }
    if (command === "--version" || command === "-V") {
      io.stdout(`tsvmm ${version()}\n`);
      return 0;
    }
    io.stderr(command === undefined ? `${USAGE}\n` : `tsvmm: unknown command ${JSON.stringify(command)}\n${USAGE}\n`);
    return 2;
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr(`tsvmm ${command}: ${e.message}\n`);
      return 2;
    }
    if (e instanceof TsvmmError) {
      io.stderr(`tsvmm: ${e.code}: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
}

/**
 * parseArgs with the conventions of the project's CLIs: negative numbers are values, not options
 * (`--mem -1`), and its errors become one line naming the option.
 */
export function parseCli<O extends Record<string, { type: "string" | "boolean"; short?: string; multiple?: boolean }>>(
  args: readonly string[],
  options: O,
  helpHint: string,
): ReturnType<typeof parseArgs<{ args: string[]; options: O; allowPositionals: true; strict: true }>> {
  const takesValue = new Set<string>();
  for (const [name, o] of Object.entries(options)) {
    if (o.type !== "string") continue;
    takesValue.add(`--${name}`);
    if (o.short !== undefined) takesValue.add(`-${o.short}`);
  }
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const next = args[i + 1];
    if (takesValue.has(a) && next !== undefined && /^-\d/.test(next)) {
      joined.push(a.startsWith("--") ? `${a}=${next}` : `${a}${next}`);
      i++;
    } else joined.push(a);
  }
  try {
    return parseArgs({ args: joined, options, allowPositionals: true, strict: true });
  } catch (e) {
    const code = (e as { code?: string }).code ?? "";
    if (!code.startsWith("ERR_PARSE_ARGS")) throw e;
    const m = /'([^']+)'/.exec((e as Error).message);
    const quoted = m?.[1] ?? "";
    // parseArgs quotes "-m, --mem <value>": name the long form.
    const opt = /--[\w-]+/.exec(quoted)?.[0] ?? quoted;
    if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") throw new UsageError(`unknown option ${opt} (${helpHint})`);
    if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") throw new UsageError(`${opt} needs a value (${helpHint})`);
    throw new UsageError(`${(e as Error).message.split("\n")[0]} (${helpHint})`);
  }
}

function int(flag: string, s: string | undefined, min: number, max: number, unit: string): number | undefined {
  if (s === undefined) return undefined;
  const n = /^[+-]?\d+$/.test(s.trim()) ? Number(s) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`${flag} ${s}: must be a whole number of ${unit} from ${min} to ${max}`);
  return n;
}

export function seconds(flag: string, s: string | undefined, maxMs: number): number | undefined {
  if (s === undefined) return undefined;
  const v = /^\s*[+]?(\d+(\.\d*)?|\.\d+)\s*$/.test(s) ? Number(s) : Number.NaN;
  if (!Number.isFinite(v) || v <= 0) throw new UsageError(`${flag} ${s}: must be a positive number of seconds`);
  const ms = Math.round(v * 1000);
  if (ms < 1) throw new UsageError(`${flag} ${s}: must be at least 0.001 seconds`);
  if (ms > maxMs) throw new UsageError(`${flag} ${s}: must be at most ${maxMs / 1000} seconds`);
  return ms;
}

const CONFIG_FLAGS: Record<string, string> = {
  disks: "--disk",
  net: "--net",
  vsock: "--vsock",
  rng: "--rng",
  emulate: "--emulate",
  console: "--console",
  memoryMiB: "--mem",
  vcpus: "--vcpus",
  cmdline: "--cmdline",
  initrd: "--initrd",
  format: "--format",
  trace: "--trace",
  timeoutMs: "--timeout",
  stallMs: "--stall",
  kernel: "KERNEL",
};

async function runCommand(args: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCli(
    args,
    {
      mem: { type: "string", short: "m" },
      vcpus: { type: "string" },
      smp: { type: "string" },
      cmdline: { type: "string" },
      initrd: { type: "string" },
      format: { type: "string" },
      config: { type: "string" },
      trace: { type: "string" },
      timeout: { type: "string" },
      stall: { type: "string" },
      disk: { type: "string", multiple: true },
      net: { type: "string", multiple: true },
      vsock: { type: "string" },
      console: { type: "string" },
      rng: { type: "boolean" },
      "no-acpi": { type: "boolean" },
      "no-mptable": { type: "boolean" },
      emulate: { type: "boolean" },
      "api-sock": { type: "string" },
      gdb: { type: "string" },
      "gdb-wait": { type: "boolean" },
      "gdb-allow-remote": { type: "boolean" },
      help: { type: "boolean", short: "h" },
      version: { type: "boolean", short: "V" },
    },
    "see tsvmm run --help",
  );
  if (values.help) {
    io.stdout(`${RUN_HELP}\n`);
    return 0;
  }
  if (values.version) {
    io.stdout(`tsvmm ${version()}\n`);
    return 0;
  }
  if (positionals.length > 1) throw new UsageError(`one kernel at most, got ${positionals.length}`);
  if (values.vcpus !== undefined && values.smp !== undefined) throw new UsageError("--vcpus and --smp are the same option: give one");
  // Command-line options override the config file; both go through the one schema.
  const base: Record<string, unknown> = values.config === undefined ? {} : { ...loadVmConfig(values.config) };
  const over: Record<string, unknown> = {
    kernel: positionals[0],
    memoryMiB: int("--mem", values.mem, L.memoryMiB.min, L.memoryMiB.max, "MiB"),
    vcpus: int(values.smp !== undefined ? "--smp" : "--vcpus", values.vcpus ?? values.smp, L.vcpus.min, L.vcpus.max, "vCPUs"),
    cmdline: values.cmdline,
    initrd: values.initrd,
    format: values.format,
    trace: values.trace,
    timeoutMs: seconds("--timeout", values.timeout, L.timeoutMs.max),
    stallMs: seconds("--stall", values.stall, L.stallMs.max),
    disks: values.disk?.map(diskArg),
    net: values.net?.map(netArg),
    vsock: values.vsock === undefined ? undefined : vsockArg(values.vsock),
    console: values.console,
    rng: values.rng,
    emulate: values.emulate,
    acpi: values["no-acpi"] === true ? false : undefined,
    mpTable: values["no-mptable"] === true ? false : undefined,
  };
  for (const [k, v] of Object.entries(over)) if (v !== undefined) base[k] = v;
  let config: VmConfig;
  try {
    config = parseVmConfig(base, values.config ?? "command line");
  } catch (e) {
    // Speak in the flags the user typed where a key came from the command line.
    if (e instanceof VmmError && values.config === undefined) {
      let msg = e.message.replace(/^command line: /, "");
      for (const [key, flag] of Object.entries(CONFIG_FLAGS)) msg = msg.replace(new RegExp(`(^|; )${key}:`, "g"), `$1${flag}:`);
      throw new UsageError(msg);
    }
    throw e;
  }
  const kernel = config.kernel ?? bundledHelloPath();
  // Size first: asking whether stderr is a terminal is the dearer question (bin: node:tty, node:net).
  const size = fileSize(kernel);
  if (size > 8 * 2 ** 20 && io.isTTY === true) io.stderr(`tsvmm: loading ${kernel} (${(size / 2 ** 20).toFixed(1)} MiB)…\n`);
  const builder = VmmBuilder.fromConfig({ ...config, kernel }).console((b) => io.stdout(b));
  gdbOptions(builder, values.gdb, values["gdb-wait"] === true, values["gdb-allow-remote"] === true, kernel, io);
  const vmm = builder.build();
  const note = builder.emulationNote();
  if (note !== undefined) io.stderr(`tsvmm: ${note}\n`);
  if (vmm.boot.format === "flat" && config.format === "auto") {
    io.stderr(`tsvmm: ${kernel} has no header tsvmm knows; booting it as a flat real-mode binary at 0x7c00 (--format flat says so and silences this)\n`);
  }
  io.onVmm?.(vmm);
  const apiSock = values["api-sock"];
  const result = apiSock === undefined ? await vmm.run() : await (await import("./api/commands.js")).runWithApi(vmm, apiSock);
  io.stderr(`${stopLine(result)}\n`);
  return result.exitCode;
}

function gdbOptions(builder: VmmBuilder, address: string | undefined, wait: boolean, allowRemote: boolean, kernel: string, io: CliIo): void {
  if (address === undefined) {
    if (wait || allowRemote) throw new UsageError(`${wait ? "--gdb-wait" : "--gdb-allow-remote"} goes with --gdb ADDRESS`);
    return;
  }
  const onListening = (a: { host: string; port: number } | { path: string }): void => {
    const where = "path" in a ? a.path : `${a.host.includes(":") ? `[${a.host}]` : a.host}:${a.port}`;
    io.stderr(`tsvmm: gdb stub on ${where}${wait ? ", vCPUs wait for the debugger" : ""}: gdb ${kernel} -ex 'target remote ${where}'\n`);
  };
  try {
    builder.gdb(address, { wait, allowRemote, onListening });
  } catch (e) {
    if (e instanceof GdbTargetError) throw new UsageError(`--gdb ${address}: ${e.message}`);
    throw e;
  }
}

function diskArg(s: string): { path: string; readOnly: boolean } {
  const m = /^(.+?)(,ro)?$/.exec(s);
  if (m === null || m[1] === undefined || m[1].length === 0) throw new UsageError(`--disk ${s}: give FILE or FILE,ro`);
  return { path: m[1], readOnly: m[2] !== undefined };
}

function netArg(s: string): { tap: string } {
  const m = /^tap=([^,\s]{1,15})$/.exec(s);
  if (m === null) throw new UsageError(`--net ${s}: give tap=NAME (an existing TAP interface, at most 15 characters)`);
  return { tap: m[1]! };
}

function vsockArg(s: string): { cid: number; uds: string } {
  const m = /^(\d+),(.+)$/.exec(s);
  const cid = m === null ? Number.NaN : Number(m[1]);
  if (m === null || !Number.isSafeInteger(cid) || cid < 3 || cid > 0xffffffff) throw new UsageError(`--vsock ${s}: give CID,UDS_PATH with a CID from 3 to 4294967295`);
  return { cid, uds: m[2]! };
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** The one line a run ends with. */
export function stopLine(result: VmmResult): string {
  const emulated = Object.entries(result.emulated ?? {});
  const shown = emulated.length === 0 ? "" : `, emulated: ${emulated.map(([m, n]) => `${m} ${n}`).join(", ")}`;
  return `tsvmm: ${result.message} [${result.reason}, exit ${result.exitCode}, ${result.exits} exits, ${(result.durationMs / 1000).toFixed(3)} s${shown}]`;
}

function infoCommand(args: readonly string[], io: CliIo): number {
  const { values, positionals } = parseCli(
    args,
    { json: { type: "boolean" }, help: { type: "boolean", short: "h" }, version: { type: "boolean", short: "V" } },
    "see tsvmm info --help",
  );
  if (values.help) {
    io.stdout(`${INFO_HELP}\n`);
    return 0;
  }
  if (values.version) {
    io.stdout(`tsvmm ${version()}\n`);
    return 0;
  }
  if (positionals.length > 0) throw new UsageError(`takes no arguments, got ${JSON.stringify(positionals[0])}`);
  const kvm = Kvm.open();
  try {
    const caps = kvm.capabilities();
    const cpuid = kvm.supportedCpuid();
    const overrides = measureCpuidOverrides(kvm);
    const info = { apiVersion: kvm.apiVersion(), vcpuMmapSize: kvm.vcpuMmapSize, capabilities: caps, supportedCpuid: cpuid, cpuidOverrides: overrides };
    if (values.json) {
      io.stdout(`${JSON.stringify(info, (_k, v) => (typeof v === "bigint" ? v.toString() : v), 2)}\n`);
      return 0;
    }
    const hex = (n: number) => `0x${(n >>> 0).toString(16).padStart(8, "0")}`;
    const lines = [`KVM API version ${info.apiVersion}, vCPU mmap size ${info.vcpuMmapSize}`, "", "capability                     value"];
    for (const k of Object.keys(KVM_CAP) as (keyof typeof KVM_CAP)[]) lines.push(`${k.padEnd(30)} ${caps[k]}`);
    lines.push("", "leaf       index  eax        ebx        ecx        edx");
    for (const e of cpuid) lines.push(`${hex(e.function)} ${String(e.index).padStart(5)}  ${hex(e.eax)} ${hex(e.ebx)} ${hex(e.ecx)} ${hex(e.edx)}`);
    lines.push("", `CPUID registers this host's KVM replaces after KVM_SET_CPUID2 (set -> held; the guest sees held): ${overrides.length === 0 ? "none" : ""}`);
    for (const l of describeOverrides(overrides)) lines.push(`  ${l}`);
    io.stdout(`${lines.join("\n")}\n`);
    return 0;
  } finally {
    kvm.close();
  }
}

function processIo(): CliIo {
  return {
    stdout: (s) => process.stdout.write(s),
    stderr: (s) => process.stderr.write(s),
    isTTY: process.stderr.isTTY === true,
  };
}

const SIGNAL_STATUS = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 } as const;

/**
 * A writer for fd 1 or 2 that writes synchronously, as process.stdout already does for files, TTYs
 * and (on Linux) pipes, but without creating the stream: for a pipe that is a net.Socket, and
 * making it cost ~3 ms of every `tsvmm run` (bench tsvmm-run-hello). A non-blocking fd (shared
 * with a process that set O_NONBLOCK) hands what is left to the stream from its first EAGAIN on.
 * EPIPE calls `onEpipe`; any other error is thrown as the stream's unhandled 'error' would be.
 */
function fdWriter(fd: 1 | 2, onEpipe: () => void): (s: string | Buffer) => void {
  let stream: NodeJS.WriteStream | undefined;
  const failed = (e: NodeJS.ErrnoException): void => {
    if (e.code === "EPIPE") onEpipe();
    else
      process.nextTick(() => {
        throw e;
      });
  };
  return (s) => {
    if (stream !== undefined) {
      stream.write(s);
      return;
    }
    let b = typeof s === "string" ? Buffer.from(s) : s;
    try {
      while (b.length > 0) b = b.subarray(writeSync(fd, b));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EAGAIN") return failed(e as NodeJS.ErrnoException);
      stream = fd === 1 ? process.stdout : process.stderr;
      stream.on("error", failed);
      stream.write(b);
    }
  };
}

/**
 * Entry point of the `tsvmm` bin: signals stop the VM (trace flushed, stop line printed, the
 * conventional status), and a closed stdout ends the run quietly as it ends `cat`.
 */
export function run(): void {
  let vmm: Vmm | undefined;
  let signalled: keyof typeof SIGNAL_STATUS | undefined;
  let pipeClosed = false;
  const stdout = fdWriter(1, () => {
    pipeClosed = true;
    vmm?.kill("stdout was closed", "stopped");
  });
  // Nobody is left to tell that stderr is gone.
  const stderr = fdWriter(2, () => {});
  const io: CliIo = {
    stdout: (s) => {
      if (!pipeClosed) stdout(s);
    },
    stderr,
    get isTTY() {
      return isatty(2);
    },
    onVmm: (v) => {
      vmm = v;
    },
  };
  for (const sig of Object.keys(SIGNAL_STATUS) as (keyof typeof SIGNAL_STATUS)[]) {
    process.on(sig, () => {
      if (signalled !== undefined || vmm === undefined) process.exit(SIGNAL_STATUS[sig]);
      signalled = sig;
      vmm.kill(`stopped by ${sig}`, "stopped");
    });
  }
  main(process.argv.slice(2), io).then(
    (code) => {
      process.exitCode = pipeClosed ? 141 : signalled !== undefined ? SIGNAL_STATUS[signalled] : code;
    },
    (e: unknown) => {
      stderr(`tsvmm: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
      process.exitCode = 70;
    },
  );
}

export { EXIT_STATUS };
