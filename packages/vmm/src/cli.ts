import { parseArgs } from "node:util";
import { KVM_CAP, TsvmmError } from "@tsvmm/abi";
import { Kvm } from "@tsvmm/kvm-backend";
import { bundledHelloPath, VmmBuilder } from "./builder.js";
import { loadVmConfig, parseVmConfig, type VmConfig } from "./config.js";
import { describeOverrides, measureCpuidOverrides } from "./host.js";

export interface CliIo {
  stdout: (s: string | Buffer) => void;
  stderr: (s: string) => void;
}

const USAGE = `usage: tsvmm run [kernel] [--mem MiB] [--vcpus N] [--cmdline S] [--initrd FILE]
                  [--format auto|tsvmm|elf|pvh|multiboot|bzimage|flat] [--config vm.json]
                  [--trace out.jsonl] [--timeout SECONDS]
       tsvmm info [--json]

run   boots a kernel (default: the bundled hello guest); the guest console goes to stdout, the
      VM's exit status becomes this process's and is explained in one line on stderr.
info  prints the KVM API version, capabilities and supported CPUID.`;

const processIo: CliIo = {
  stdout: (s) => process.stdout.write(s),
  stderr: (s) => process.stderr.write(s),
};

/** The CLI as a function: returns the exit status. Exit 2 is a usage or input error. */
export async function main(argv: readonly string[], io: CliIo = processIo): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === "run") return await runCommand(rest, io);
    if (command === "info") return infoCommand(rest, io);
    if (command === "--help" || command === "-h" || command === "help") {
      io.stdout(`${USAGE}\n`);
      return 0;
    }
    io.stderr(`${USAGE}\n`);
    return 2;
  } catch (e) {
    if (e instanceof TsvmmError) {
      io.stderr(`tsvmm: ${e.code}: ${e.message}\n`);
      return 2;
    }
    if (e instanceof TypeError && "code" in e && String((e as { code: unknown }).code).startsWith("ERR_PARSE_ARGS")) {
      io.stderr(`tsvmm: ${e.message}\n${USAGE}\n`);
      return 2;
    }
    throw e;
  }
}

async function runCommand(args: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...args],
    allowPositionals: true,
    options: {
      mem: { type: "string", short: "m" },
      vcpus: { type: "string" },
      smp: { type: "string" },
      cmdline: { type: "string" },
      initrd: { type: "string" },
      format: { type: "string" },
      config: { type: "string" },
      trace: { type: "string" },
      timeout: { type: "string" },
    },
  });
  if (positionals.length > 1) {
    io.stderr(`tsvmm run: one kernel at most, got ${positionals.length}\n`);
    return 2;
  }
  // Command-line options override the config file; both go through the one schema.
  const base: Record<string, unknown> = values.config === undefined ? {} : { ...loadVmConfig(values.config) };
  const num = (s: string | undefined) => (s === undefined ? undefined : Number(s));
  const over: Record<string, unknown> = {
    kernel: positionals[0],
    memoryMiB: num(values.mem),
    vcpus: num(values.vcpus ?? values.smp),
    cmdline: values.cmdline,
    initrd: values.initrd,
    format: values.format,
    trace: values.trace,
    timeoutMs: values.timeout === undefined ? undefined : Math.round(Number(values.timeout) * 1000),
  };
  for (const [k, v] of Object.entries(over)) if (v !== undefined) base[k] = v;
  const config: VmConfig = parseVmConfig(base, "command line");
  const kernel = config.kernel ?? bundledHelloPath();
  const result = await VmmBuilder.fromConfig({ ...config, kernel })
    .console((b) => io.stdout(b))
    .run();
  io.stderr(`tsvmm: ${result.message} [${result.reason}, exit ${result.exitCode}, ${result.exits} exits, ${(result.durationMs / 1000).toFixed(3)} s]\n`);
  return result.exitCode;
}

function infoCommand(args: readonly string[], io: CliIo): number {
  const { values } = parseArgs({ args: [...args], options: { json: { type: "boolean" } } });
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

/** Entry point of the `tsvmm` bin. */
export function run(): void {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`tsvmm: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
      process.exitCode = 70;
    },
  );
}
