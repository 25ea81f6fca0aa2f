// The real gdb in batch mode against a VM's gdb stub, and what the tests need around it.
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import type { GdbListenAddress } from "@tsvmm/gdbstub";
import { VmmBuilder, type VmmResult } from "@tsvmm/vmm";
import { type GdbRun, printed, runGdb as runGdbBatch } from "../../gdbstub/test/helpers/gdb.js";

export const root = join(__dirname, "..", "..", "..");
export const guest = (name: string): string => join(root, "test-kernels", "out", `${name}.elf`);

export type { GdbRun };
export { printed };

/** `gdb -batch -nx ELF -ex 'target remote …' -ex …` (the gdbstub package's runner, with the guest's symbols). */
export function runGdb(elf: string | undefined, target: string, commands: readonly string[], o: { interruptWhen?: () => boolean; timeoutMs?: number; before?: readonly string[] } = {}): Promise<GdbRun> {
  return runGdbBatch(target, commands, { ...o, ...(elf === undefined ? {} : { elf }) });
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
