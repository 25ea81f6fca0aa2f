// Where a `tsvmm run` of the bundled hello guest spends its time, phase by phase, in one process
// that does what bin/tsvmm.cjs does: Node's own start (until this script runs), loading the bin's
// bundle (through its code cache, as the bin does), then the CLI's own `main(["run"])`: parsing and
// VmmBuilder.build() (KVM VM, memory, kernel, ACPI, CPUID, vCPUs, devices) until the CLI hands the
// VM over (`onVmm`), the run, and closing the VM (timed around Vmm.close, which the run calls).
// Prints one JSON object of wall-clock milliseconds, and under `cpu` the same phases in CPU
// milliseconds (user + system) of this process, which a loaded host inflates much less than wall
// time. Used by bench/vmm/index.mjs.
"use strict";
const { join } = require("node:path");

const phases = { nodeStart: performance.now() };
const cpu = {};
let c = process.cpuUsage();
cpu.nodeStart = (c.user + c.system) / 1000;
let t = performance.now();
const phase = (name) => {
  const now = performance.now();
  phases[name] = now - t;
  const d = process.cpuUsage(c);
  cpu[name] = (d.user + d.system) / 1000;
  c = process.cpuUsage();
  t = now;
};
const cli = require(join(__dirname, "..", "..", "packages", "vmm", "bin", "tsvmm.cjs")).load();
phase("require");

(async () => {
  let out = "";
  let err = "";
  let runMs;
  let runCpu;
  const io = {
    stdout: (s) => {
      out += s;
    },
    stderr: (s) => {
      err += s;
    },
    onVmm: (vmm) => {
      phase("build");
      const close = vmm.close.bind(vmm);
      vmm.close = () => {
        phase("run");
        return close();
      };
    },
  };
  const status = await cli.main(["run"], io);
  phase("close");
  if (status !== 0 || !String(out).includes("Hello from a tsvmm guest (uart)")) throw new Error(`hello guest: status ${status}\n${out}\n${err}`);
  process.stdout.write(`${JSON.stringify({ ...phases, cpu })}\n`);
})();
