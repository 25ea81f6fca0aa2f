// Runs the real gdb in batch mode against a listening GdbServer.
import { spawn } from "node:child_process";

export interface GdbRun {
  output: string;
  code: number | null;
}

export interface GdbRunOptions {
  architecture?: string;
  /** Commands run before `target remote`. */
  before?: readonly string[];
  /** The ELF gdb reads symbols from. */
  elf?: string;
  /** SIGINT to gdb (which then sends Ctrl-C, 0x03, to the stub) once this turns true (polled every 20 ms). */
  interruptWhen?: () => boolean;
  timeoutMs?: number;
}

/** `gdb -batch -nx [ELF] -ex 'set architecture …' -ex 'target remote …' -ex …`. */
export function runGdb(target: string, commands: readonly string[], o: GdbRunOptions = {}): Promise<GdbRun> {
  const args = ["-batch", "-nx", "-ex", "set pagination off", "-ex", "set confirm off"];
  if (o.architecture) args.push("-ex", `set architecture ${o.architecture}`);
  for (const c of o.before ?? []) args.push("-ex", c);
  args.push("-ex", `target remote ${target}`);
  for (const c of commands) args.push("-ex", c);
  if (o.elf !== undefined) args.push(o.elf);
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

/** The value gdb printed for the n-th `p` command ("$n = value"). */
export function printed(output: string, n: number): string | undefined {
  return new RegExp(`^\\$${n} = (.*)$`, "m").exec(output)?.[1];
}
