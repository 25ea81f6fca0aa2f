// Runs the real gdb in batch mode against a listening GdbServer.
import { spawn } from "node:child_process";

export interface GdbRun {
  output: string;
  code: number | null;
}

/**
 * `gdb -batch -nx -ex 'set architecture …' -ex 'target remote …' -ex …`. `interruptWhen`: send
 * SIGINT to gdb (which then sends Ctrl-C, 0x03, to the stub) once this turns true (polled).
 */
export function runGdb(target: string, commands: string[], o: { architecture?: string; interruptWhen?: () => boolean; timeoutMs?: number } = {}): Promise<GdbRun> {
  const args = ["-batch", "-nx", "-ex", "set pagination off", "-ex", "set confirm off"];
  if (o.architecture) args.push("-ex", `set architecture ${o.architecture}`);
  args.push("-ex", `target remote ${target}`);
  for (const c of commands) args.push("-ex", c);
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
