// uart-output: a guest printing 1 MiB through the 16550 UART (one OUT per byte), as bytes per second
// reaching stdout of a whole `tsvmm run` process, against a minimal C VMM (baseline.c) that runs the
// same flat guest and writes the same bytes line by line. Both are spawned with stdout on a pipe
// read here; each side's time runs from spawn to its exit. Runs alternate; figures are medians.
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { benchRoot, compileC, median, outDir, result } from "../lib.mjs";

const LINES = Number(process.env.TSVMM_BENCH_UART_LINES ?? 16384); // 64 bytes each: 1 MiB
const ROUNDS = Number(process.env.TSVMM_BENCH_UART_ROUNDS ?? 2);
const cli = join(benchRoot, "..", "packages", "vmm", "bin", "tsvmm.cjs");

function buildGuest() {
  mkdirSync(outDir, { recursive: true });
  const o = join(outDir, "uart-flood.o");
  const bin = join(outDir, "uart-flood.bin");
  execFileSync("as", ["--64", `--defsym`, `LINES=${LINES}`, "-o", o, join(benchRoot, "uart-output", "guest.S")]);
  execFileSync("ld", ["-m", "elf_x86_64", "-Ttext", "0x7c00", "--oformat", "binary", "-e", "_start", "-o", bin, o]);
  return bin;
}

/** Spawn, count stdout bytes; resolves with bytes per second from spawn to exit. */
function bytesPerSecond(cmd, args, expected) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    let bytes = 0;
    let err = "";
    child.stdout.on("data", (b) => {
      bytes += b.length;
    });
    child.stderr.on("data", (b) => {
      err += b;
    });
    child.on("error", reject);
    child.on("close", (status) => {
      const s = Number(process.hrtime.bigint() - t0) / 1e9;
      if (status !== 1 || bytes !== expected) reject(new Error(`${cmd} ${args.join(" ")}: status ${status}, ${bytes} of ${expected} bytes\n${err.slice(-800)}`));
      else resolve(bytes / s);
    });
  });
}

export default async function uartOutput() {
  const guest = buildGuest();
  const exe = compileC(join(benchRoot, "uart-output", "baseline.c"));
  const expected = LINES * 64;
  const ours = [];
  const c = [];
  const load = [loadavg()[0]];
  for (let i = 0; i < ROUNDS; i++) {
    c.push(await bytesPerSecond(exe, [guest], expected));
    ours.push(await bytesPerSecond(process.execPath, [cli, "run", guest, "--format", "flat"], expected));
    load.push(loadavg()[0]);
  }
  return [
    result("uart-output", median(ours), "B/s", median(c), {
      goal: "ratio >= 0.8 (B/s: higher is better; ratio = tsvmm ÷ C VMM)",
      bytes: expected,
      rounds: ROUNDS,
      tsvmm: ours.map(Math.round),
      cVmm: c.map(Math.round),
      loadavg1: load.map((x) => Number(x.toFixed(2))),
    }),
  ];
}
