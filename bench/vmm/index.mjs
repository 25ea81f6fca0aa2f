// vmm benchmarks, measured as users meet them:
//  - tsvmm-run-hello: a whole `tsvmm run` process booting the bundled hello guest, against
//    `node -e 0` (the floor any Node CLI pays), median of alternating runs; beside it, where the
//    time goes (bench/vmm/phases.cjs, medians: Node's own start, loading the bin's bundle, build,
//    run, close). The discarded first pair also fills the bin's V8 code cache (~/.cache/tsvmm), as
//    a user's first run does.
//  - linux-first-line: seconds from process start until Debian's cloud vmlinux prints
//    `Linux version` on the console, for `tsvmm run` (PVH) and for QEMU's microvm (also PVH) on the
//    same kernel, in the same run, alternating. QEMU comes from Debian (installed here if missing).
//  - vmm-exits-2vcpu, vmm-exits-2vcpu-worker: a whole Vmm (VmmBuilder, the vcpu-worker-device test
//    kernel: each vCPU takes 50k tickets from a device with an IN and hands each back with an OUT)
//    with one vCPU and with two, exits/s of the run; ratio = 2-vCPU ÷ 1-vCPU. The device is the
//    user's: a pioDevice on the main thread (the default path, runLoopAsync), or the same device
//    on each vCPU's thread (.vcpuWorkers, packages/vmm/test/fixtures/ticket-device.mjs).
// Figures are medians; ratio = tsvmm / baseline (lower is better). TSVMM_BENCH_LINUX_RUNS=0 skips
// the Linux figure (a run of this topic then keeps the last one in results.json).
import { spawn, spawnSync } from "node:child_process";
import { loadavg } from "node:os";
import { join } from "node:path";
import { VmmBuilder } from "@tsvmm/vmm";
import { fetchDebianKernel } from "../../packages/elf-loader/scripts/fetch-debian-kernel.mjs";
import { benchRoot, median, result } from "../lib.mjs";

const root = join(benchRoot, "..");
const cli = join(root, "packages", "vmm", "bin", "tsvmm.cjs");
const HELLO_RUNS = Number(process.env.TSVMM_BENCH_HELLO_RUNS ?? 21);
const LINUX_RUNS = Number(process.env.TSVMM_BENCH_LINUX_RUNS ?? 3);
const LINUX_BUDGET_S = 180;
const MEM_MIB = 256;
const CMDLINE = "console=ttyS0 earlyprintk=ttyS0";

function wallMs(cmd, args, check) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0 || (check && !check(r.stdout))) throw new Error(`${cmd} ${args.join(" ")}: status ${r.status}\n${r.stdout}${r.stderr}`);
  return ms;
}

function runHello() {
  const node = [];
  const tsvmm = [];
  const phases = [];
  // Alternate so both see the same machine load; the first pair only warms the page cache.
  for (let i = 0; i < HELLO_RUNS + 1; i++) {
    const a = wallMs(process.execPath, ["-e", "0"]);
    const b = wallMs(process.execPath, [cli, "run"], (out) => out.includes("Hello from a tsvmm guest (uart)"));
    if (i > 0) {
      node.push(a);
      tsvmm.push(b);
    }
    if (i % 3 === 1) phases.push(JSON.parse(spawnSync(process.execPath, [join(benchRoot, "vmm", "phases.cjs")], { encoding: "utf8" }).stdout));
  }
  const medians = (rows) => Object.fromEntries(Object.keys(rows[0]).map((k) => [k, Number(median(rows.map((p) => p[k])).toFixed(1))]));
  const phasesMs = { ...medians(phases.map(({ cpu, ...wall }) => wall)), cpu: medians(phases.map((p) => p.cpu)) };
  return result("tsvmm-run-hello", median(tsvmm), "ms", median(node), {
    goal: "ratio <= 1.8 (baseline: node -e 0)",
    runs: HELLO_RUNS,
    phasesMs,
    loadavg1: Number(loadavg()[0].toFixed(2)),
  });
}

/** Seconds from spawn until `Linux version` appears on the child's stdout; the child is then killed. */
function firstLine(cmd, args) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    let seconds;
    const timer = setTimeout(() => child.kill("SIGKILL"), (LINUX_BUDGET_S + 10) * 1000);
    child.stdout.setEncoding("utf8");
    child.stderr.setEncoding("utf8");
    child.stdout.on("data", (s) => {
      out += s;
      if (seconds === undefined && out.includes("Linux version")) {
        seconds = Number(process.hrtime.bigint() - t0) / 1e9;
        child.kill("SIGKILL");
      }
    });
    child.stderr.on("data", (s) => {
      err += s;
    });
    child.on("error", reject);
    child.on("close", () => {
      clearTimeout(timer);
      if (seconds === undefined) reject(new Error(`${cmd}: no "Linux version" line\nstderr: ${err.slice(-1500)}\nconsole: ${out.slice(-1500)}`));
      else resolve(seconds);
    });
  });
}

function have(tool) {
  return spawnSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" }).status === 0;
}

/** qemu-system-x86_64 from Debian; returns undefined, or why it cannot be had. */
function ensureQemu() {
  if (have("qemu-system-x86_64")) return undefined;
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  let r = spawnSync("apt-get", ["install", "-y", "-qq", "--no-install-recommends", "qemu-system-x86"], { encoding: "utf8", env });
  if (r.status !== 0) {
    spawnSync("apt-get", ["update", "-qq"], { stdio: "ignore", env });
    r = spawnSync("apt-get", ["install", "-y", "-qq", "--no-install-recommends", "qemu-system-x86"], { encoding: "utf8", env });
  }
  return have("qemu-system-x86_64") ? undefined : `apt-get install qemu-system-x86 failed (status ${r.status}): ${(r.stderr ?? "").trim().slice(-500)}`;
}

async function runLinux() {
  const { vmlinux } = fetchDebianKernel();
  const qemuMissing = ensureQemu();
  const ours = [];
  const qemu = [];
  let qemuError = qemuMissing;
  const tsvmmArgs = [cli, "run", vmlinux, "--mem", String(MEM_MIB), "--cmdline", CMDLINE, "--timeout", String(LINUX_BUDGET_S)];
  // microvm boots an uncompressed vmlinux through its PVH note, as tsvmm does; no firmware, no
  // option ROMs, no RTC; the console is the ISA serial port on stdout.
  const qemuArgs = [
    "-accel", "kvm", "-M", "microvm,x-option-roms=off,rtc=off", "-cpu", "qemu64,-cx16", "-kernel", vmlinux,
    "-append", CMDLINE, "-nographic", "-nodefaults", "-serial", "stdio", "-m", String(MEM_MIB),
  ];
  for (let i = 0; i < LINUX_RUNS; i++) {
    ours.push(await firstLine(process.execPath, tsvmmArgs));
    if (qemuError === undefined) {
      try {
        qemu.push(await firstLine("qemu-system-x86_64", qemuArgs));
      } catch (e) {
        qemuError = e.message;
      }
    }
  }
  const base = qemu.length > 0 ? median(qemu) : null;
  return result("linux-first-line", median(ours), "s", base, {
    goal: "ratio <= 0.8 (baseline: qemu-system-x86_64 -M microvm, PVH, same vmlinux)",
    runs: LINUX_RUNS,
    tsvmm: ours,
    qemu,
    ...(qemuError !== undefined ? { qemuError } : {}),
  });
}

const VMM_ROUNDS = Number(process.env.TSVMM_BENCH_VMM_ROUNDS ?? 3);
const ticketKernel = join(root, "test-kernels", "out", "vcpu-worker-device.elf");
const ticketModule = new URL("../../packages/vmm/test/fixtures/ticket-device.mjs", import.meta.url);

/** The ticket device of ticket-device.mjs, as a Vmm device on the main thread. */
function mainThreadTickets(next, sums) {
  return {
    name: "tickets",
    read(_offset, data) {
      data.writeUInt32LE(Atomics.add(next, 0, 1) >>> 0, 0);
    },
    write(_offset, data, ctx) {
      sums[ctx.vcpu] += data.readUInt32LE(0);
    },
  };
}

/** Exits/s of one run of the ticket guest with `n` vCPUs, its device on workers or not. */
async function ticketRun(n, workers) {
  const next = new Int32Array(new SharedArrayBuffer(4));
  const sums = new Float64Array(new SharedArrayBuffer(16));
  const b = new VmmBuilder().kernelFile(ticketKernel).memoryMiB(16).vcpus(n).irqchip(true);
  if (workers) b.vcpuWorkers({ module: ticketModule, data: { next: next.buffer, sums: sums.buffer } });
  else b.pioDevice(0x520, 8, mainThreadTickets(next, sums));
  const r = await b.build().run();
  const tickets = n * 50_000;
  if (r.reason !== "guest-exit" || next[0] !== tickets || sums.reduce((a, x) => a + x, 0) !== (tickets * (tickets - 1)) / 2) {
    throw new Error(`ticket guest (${n} vCPUs${workers ? ", workers" : ""}): ${r.reason}, ${next[0]} tickets`);
  }
  return r.exits / (r.durationMs / 1000);
}

async function vmmExits() {
  const rows = [];
  for (const workers of [false, true]) {
    const one = [];
    const two = [];
    // One and two vCPUs alternate, so both see the same machine.
    for (let i = 0; i < VMM_ROUNDS; i++) {
      one.push(await ticketRun(1, workers));
      two.push(await ticketRun(2, workers));
    }
    const name = workers ? "vmm-exits-2vcpu-worker" : "vmm-exits-2vcpu";
    rows.push(
      result(name, median(two), "exits/s", median(one), {
        goal: "ratio >= 1.6 (as exits-2vcpu, for a whole Vmm)",
        path: workers ? "VmmBuilder.vcpuWorkers: the device on each vCPU's thread" : "VmmBuilder.pioDevice: the device on the main thread (runLoopAsync)",
        perRound: two.map((t, k) => Number((t / one[k]).toFixed(3))),
        loadavg1: loadavg()[0],
      }),
    );
  }
  return rows;
}

export default async function bench() {
  const hello = runHello();
  const exits = await vmmExits();
  return LINUX_RUNS > 0 ? [hello, ...exits, await runLinux()] : [hello, ...exits];
}
