// uart-output: a guest printing 1 MiB through the 16550 UART (one OUT per byte), as bytes per second
// reaching stdout of a whole `tsvmm run` process, against a minimal C VMM (baseline.c) that runs the
// same flat guest and writes the same bytes line by line. Both are spawned with stdout on a pipe
// read here; each side's time runs from spawn to its exit. Runs alternate; figures are medians.
//
// tsvmm runs with its defaults, which let KVM queue the UART's THR writes in its coalesced ring
// (vmm coalesced-serial.ts): the guest exits once per ring-full instead of once per byte. The same
// rounds also run tsvmm with `coalesceSerial: false` (one exit per byte, as the C VMM does), so
// both figures come from the same machine load; TSVMM_BENCH_UART_AB=0 leaves that run out.
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { benchRoot, compileC, median, outDir, result } from "../lib.mjs";

const LINES = Number(process.env.TSVMM_BENCH_UART_LINES ?? 16384); // 64 bytes each: 1 MiB
const ROUNDS = Number(process.env.TSVMM_BENCH_UART_ROUNDS ?? 2);
const AB = process.env.TSVMM_BENCH_UART_AB !== "0";
const cli = process.env.TSVMM_BENCH_CLI ?? join(benchRoot, "..", "packages", "vmm", "bin", "tsvmm.cjs");

function buildGuest() {
  mkdirSync(outDir, { recursive: true });
  const o = join(outDir, "uart-flood.o");
  const bin = join(outDir, "uart-flood.bin");
  execFileSync("as", ["--64", `--defsym`, `LINES=${LINES}`, "-o", o, join(benchRoot, "uart-output", "guest.S")]);
  execFileSync("ld", ["-m", "elf_x86_64", "-Ttext", "0x7c00", "--oformat", "binary", "-e", "_start", "-o", bin, o]);
  return bin;
}

/** Spawn, count stdout bytes; resolves with bytes per second from spawn to exit and the exits tsvmm reports. */
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
      else resolve({ bps: bytes / s, exits: Number(/(\d+) exits/.exec(err)?.[1] ?? Number.NaN) });
    });
  });
}

export default async function uartOutput() {
  const guest = buildGuest();
  const exe = compileC(join(benchRoot, "uart-output", "baseline.c"));
  const expected = LINES * 64;
  const offConfig = join(outDir, "uart-output-coalesce-off.json");
  writeFileSync(offConfig, JSON.stringify({ coalesceSerial: false }));
  const ours = [];
  const off = [];
  const c = [];
  const load = [loadavg()[0]];
  for (let i = 0; i < ROUNDS; i++) {
    c.push((await bytesPerSecond(exe, [guest], expected)).bps);
    ours.push(await bytesPerSecond(process.execPath, [cli, "run", guest, "--format", "flat"], expected));
    if (AB) off.push(await bytesPerSecond(process.execPath, [cli, "run", guest, "--format", "flat", "--config", offConfig], expected));
    load.push(loadavg()[0]);
  }
  const cMedian = median(c);
  return [
    result("uart-output", median(ours.map((r) => r.bps)), "B/s", cMedian, {
      goal: "ratio >= 0.8 (B/s: higher is better; ratio = tsvmm ÷ C VMM)",
      bytes: expected,
      rounds: ROUNDS,
      tsvmm: ours.map((r) => Math.round(r.bps)),
      tsvmmExits: ours.map((r) => r.exits),
      cVmm: c.map(Math.round),
      ...(AB
        ? {
            tsvmmCoalescingOff: off.map((r) => Math.round(r.bps)),
            tsvmmCoalescingOffExits: off.map((r) => r.exits),
            ratioCoalescingOff: median(off.map((r) => r.bps)) / cMedian,
          }
        : {}),
      loadavg1: load.map((x) => Number(x.toFixed(2))),
    }),
  ];
}
