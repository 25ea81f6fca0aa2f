// Figures of instruction emulation on hosts whose KVM cannot run some kernel instructions (PVM):
// - emulate-per-instruction: µs per instruction the VMM emulates (exit, decode, execute, write-back,
//   re-entry), beside the synchronous PIO exit of the same guest (baseline);
// - linux-to-init: seconds from `tsvmm run --emulate` to the marker the busybox /init prints, with the
//   share of that time the VMM's JS thread spent outside KVM_RUN; QEMU (microvm, same kernel and
//   initramfs) beside it, where it stops.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { benchRoot, median, result } from "../lib.mjs";

const root = join(benchRoot, "..");
const cli = join(root, "packages", "vmm", "bin", "tsvmm.cjs");
const MARKER = "TSVMM-INIT-REACHED";
const CMDLINE = "console=ttyS0";
const INIT_BUDGET_S = Number(process.env.TSVMM_INIT_BUDGET_S ?? 1500);
const QEMU_BUDGET_S = 300;

/** One run of test-kernels' emulate-bench: µs per emulated POPCNT and per PIO exit, from the VMM's receipt times. */
async function emulateBenchOnce(VmmBuilder, syncRegs) {
  const at = {};
  const res = await new VmmBuilder()
    .kernelFile(join(root, "test-kernels", "out", "emulate-bench.elf"))
    .memoryMiB(16)
    .irqchip(false)
    .emulate({ syncRegs })
    .onValue((name) => (at[name] = performance.now()))
    .watchdog({ timeoutMs: 120_000 })
    .run();
  if (res.reason !== "guest-exit" || at.start === undefined || at.pio === undefined) throw new Error(`emulate-bench: ${res.message}`);
  return { emulated: ((at.emulated - at.start) * 1000) / 4000, pio: ((at.pio - at.emulated) * 1000) / 4000 };
}

async function perInstruction() {
  execFileSync("make", ["-s", "-C", join(root, "test-kernels")], { stdio: "inherit" });
  const { VmmBuilder } = await import(join(root, "packages", "vmm", "dist", "index.js"));
  // The first runs warm the JIT (they were 2-20x the others); then the two ways of reading the vCPU's
  // state alternate, so both see the same load: registers through kvm_run (KVM_CAP_SYNC_REGS,
  // opt-in with .emulate({ syncRegs: true })) or the GET/SET ioctls per instruction (the default).
  await emulateBenchOnce(VmmBuilder, true);
  await emulateBenchOnce(VmmBuilder, false);
  const runs = [];
  const ioctlRuns = [];
  for (let r = 0; r < 6; r++) {
    runs.push(await emulateBenchOnce(VmmBuilder, true));
    ioctlRuns.push(await emulateBenchOnce(VmmBuilder, false));
  }
  const emu = median(runs.map((x) => x.emulated));
  const pio = median(runs.map((x) => x.pio));
  return result("emulate-per-instruction", emu, "µs", pio, {
    goal: "ratio <= 3 (baseline: a synchronous PIO exit of the same guest)",
    runs,
    withGetRegsIoctls: { emulated: median(ioctlRuns.map((x) => x.emulated)), pio: median(ioctlRuns.map((x) => x.pio)), runs: ioctlRuns },
    loadAverage: loadavg(),
  });
}

function fetchKernel() {
  const out = execFileSync(process.execPath, [join(root, "packages", "elf-loader", "scripts", "fetch-debian-kernel.mjs")], { encoding: "utf8" });
  return JSON.parse(out.trim().split("\n").pop());
}

/** Clock ticks of CPU used (utime + stime from /proc): by the process's main (JS) thread, or with `wholeProcess` by all its threads. */
function cpuTicks(pid, wholeProcess = false) {
  try {
    const path = wholeProcess ? `/proc/${pid}/stat` : `/proc/${pid}/task/${pid}/stat`;
    const f = readFileSync(path, "utf8").split(") ")[1].split(" ");
    return Number(f[11]) + Number(f[12]);
  } catch {
    return Number.NaN;
  }
}

function bootToMarker(cmd, args, budgetS) {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    let seconds;
    let ticks = Number.NaN;
    let processTicks = Number.NaN;
    const timer = setTimeout(() => child.kill("SIGKILL"), budgetS * 1000);
    child.stdout.setEncoding("utf8");
    child.stderr.setEncoding("utf8");
    child.stdout.on("data", (s) => {
      out += s;
      if (seconds === undefined && out.includes(MARKER)) {
        seconds = Number(process.hrtime.bigint() - t0) / 1e9;
        ticks = cpuTicks(child.pid);
        processTicks = cpuTicks(child.pid, true);
        child.kill("SIGKILL");
      }
    });
    child.stderr.on("data", (s) => {
      err += s;
    });
    child.on("close", () => {
      clearTimeout(timer);
      const kernelLines = out.split("\n").filter((l) => /^\[\s*\d+\.\d+\]/.test(l));
      resolve({
        seconds,
        vmmShare: seconds === undefined ? null : ticks / 100 / seconds,
        // CPU the whole VMM used (the vCPU thread's time in KVM included): on a shared machine a
        // steadier measure of the boot's work than the wall clock.
        cpuSeconds: seconds === undefined ? null : processTicks / 100,
        lastLine: kernelLines.at(-1) ?? "",
        stderr: err.trim().split("\n").slice(-2).join(" | "),
      });
    });
  });
}

async function linuxToInit() {
  const { vmlinux } = fetchKernel();
  const dir = mkdtempSync(join(tmpdir(), "tsvmm-bench-init-"));
  try {
    const { busyboxInitramfs } = await import(join(root, "packages", "vmm", "dist", "index.js"));
    const initrd = join(dir, "initramfs.cpio");
    writeFileSync(initrd, busyboxInitramfs({ busyboxPath: "/bin/busybox", script: `#!/bin/busybox sh\n/bin/busybox echo ${MARKER}\n/bin/busybox poweroff -f\n` }));
    const ours = await bootToMarker(process.execPath, [cli, "run", vmlinux, "--mem", "256", "--cmdline", CMDLINE, "--initrd", initrd, "--emulate", "--timeout", String(INIT_BUDGET_S)], INIT_BUDGET_S + 10);
    let qemu = { stop: "qemu-system-x86_64 not installed" };
    if (spawnSync("sh", ["-c", "command -v qemu-system-x86_64"]).status === 0) {
      const q = await bootToMarker(
        "qemu-system-x86_64",
        ["-accel", "kvm", "-M", "microvm,x-option-roms=off,rtc=off", "-cpu", "host", "-kernel", vmlinux, "-initrd", initrd, "-append", CMDLINE, "-nographic", "-nodefaults", "-serial", "stdio", "-m", "256"],
        QEMU_BUDGET_S,
      );
      qemu = { reachedInit: q.seconds !== undefined, stop: q.stderr || `no marker in ${QEMU_BUDGET_S} s`, lastKernelLine: q.lastLine };
    }
    if (ours.seconds === undefined) throw new Error(`tsvmm did not reach /init: ${ours.stderr}; last kernel line: ${ours.lastLine}`);
    return result("linux-to-init", ours.seconds, "s", null, {
      goal: "<= 120 s on a quiet machine; VMM share <= 10%",
      vmmShare: ours.vmmShare,
      cpuSeconds: ours.cpuSeconds,
      loadAverage: loadavg(),
      lastKernelLine: ours.lastLine,
      qemu,
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// TSVMM_BENCH_EMULATION=per-instruction runs only the per-instruction figure (the Linux boot takes many minutes).
export default async function bench() {
  const rows = [await perInstruction()];
  if (process.env.TSVMM_BENCH_EMULATION !== "per-instruction") rows.push(await linuxToInit());
  return rows;
}
