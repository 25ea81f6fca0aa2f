// The real gdb in batch mode against a VM's gdb stub, and what the tests need around it.
import { execFileSync, spawn } from "node:child_process";
import { join } from "node:path";
import type { GdbListenAddress } from "@tsvmm/gdbstub";
import { VmmBuilder, type VmmResult } from "@tsvmm/vmm";

export const root = join(__dirname, "..", "..", "..");
export const guest = (name: string): string => join(root, "test-kernels", "out", `${name}.elf`);

export interface GdbRun {
  readonly output: string;
  readonly code: number | null;
}

/**
 * `gdb -batch -nx ELF -ex 'target remote …' -ex …`. `interruptWhen`: SIGINT to gdb (which sends
 * Ctrl-C, 0x03, to the stub) once it turns true (polled every 20 ms).
 */
export function runGdb(elf: string | undefined, target: string, commands: readonly string[], o: { interruptWhen?: () => boolean; timeoutMs?: number; before?: readonly string[] } = {}): Promise<GdbRun> {
  const args = ["-batch", "-nx", "-ex", "set pagination off", "-ex", "set confirm off"];
  for (const c of o.before ?? []) args.push("-ex", c);
  args.push("-ex", `target remote ${target}`);
  for (const c of commands) args.push("-ex", c);
  if (elf !== undefined) args.push(elf);
  return new Promise((resolve, reject) => {
    const p = spawn("gdb", args, { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    const poll = o.interruptWhen
      ? setInterval(() => {
          if (o.interruptWhen?.()) {
            clearInterval(poll);
            p.kill("SIGINT");
          }
        }, 20)
      : undefined;
    const timer = setTimeout(() => {
      clearInterval(poll);
      p.kill("SIGKILL");
      reject(new Error(`gdb timed out; output so far:\n${output}`));
    }, o.timeoutMs ?? 20_000);
    const take = (d: Buffer): void => {
      output += d.toString();
    };
    p.stdout.on("data", take);
    p.stderr.on("data", take);
    p.on("error", reject);
    p.on("close", (code) => {
      if (process.env.GDB_DEBUG) console.log(output);
      clearTimeout(timer);
      clearInterval(poll);
      resolve({ output, code });
    });
  });
}

/** The value gdb printed for the n-th value-history entry ("$n = value"). */
export function printed(output: string, n: number): string | undefined {
  return new RegExp(`^\\$${n} = (.*)$`, "m").exec(output)?.[1];
}

/** Every "$n = value" gdb printed, in order. */
export function allPrinted(output: string): string[] {
  return [...output.matchAll(/^\$\d+ = (.*)$/gm)].map((m) => m[1]!);
}

/** `nm`'s address of a symbol in an ELF. */
export function nmAddress(elf: string, symbol: string): bigint {
  const out = execFileSync("nm", [elf], { encoding: "utf8" });
  const m = new RegExp(`^([0-9a-f]+) \\w ${symbol}$`, "m").exec(out);
  if (!m) throw new Error(`${symbol} not in ${elf}`);
  return BigInt(`0x${m[1]}`);
}

export interface DebuggedVm {
  /** "127.0.0.1:PORT" for gdb's `target remote`. */
  readonly target: string;
  readonly result: Promise<VmmResult>;
  readonly values: Map<string, bigint[]>;
  readonly console: () => string;
}

/** Build and run `name` with a gdb stub on a free loopback port; resolves once it listens. */
export async function debugVm(name: string, o: { wait?: boolean; vcpus?: number; address?: string; configure?: (b: VmmBuilder) => void } = {}): Promise<DebuggedVm> {
  const values = new Map<string, bigint[]>();
  let text = "";
  let listening: (a: GdbListenAddress) => void = () => {};
  const bound = new Promise<GdbListenAddress>((r) => {
    listening = r;
  });
  const b = new VmmBuilder()
    .kernelFile(guest(name))
    .memoryMiB(16)
    .vcpus(o.vcpus ?? 1)
    .console((bytes) => {
      text += bytes.toString();
    })
    .onValue((n, v) => values.set(n, [...(values.get(n) ?? []), v]))
    .watchdog({ timeoutMs: 25_000 })
    .gdb(o.address ?? "127.0.0.1:0", { wait: o.wait ?? true, onListening: (a) => listening(a) });
  o.configure?.(b);
  const result = b.run();
  const addr = await Promise.race([bound, result.then((r) => Promise.reject(new Error(`VM ended before listening: ${r.message}`)))]);
  return { target: "port" in addr ? `127.0.0.1:${addr.port}` : addr.path, result, values, console: () => text };
}
