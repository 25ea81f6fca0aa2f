// Where a `tsvmm run` of the bundled hello guest spends its time, phase by phase, in one process:
// Node's own start (until this script runs), loading the vmm bundle and the packages it requires,
// the config schema, VmmBuilder.build() (KVM VM, memory, kernel, ACPI, CPUID, vCPUs, devices),
// the run, and closing the VM. Prints one JSON object of wall-clock milliseconds, and under `cpu`
// the same phases in CPU milliseconds (user + system) of this process, which a loaded host
// inflates much less than wall time. Used by bench/vmm/index.mjs.
"use strict";
const { join } = require("node:path");

const phases = { nodeStart: performance.now() };
const cpu = {};
let c = process.cpuUsage();
cpu.nodeStart = (c.user + c.system) / 1000;
const phase = (name, since) => {
  phases[name] = performance.now() - since;
  const d = process.cpuUsage(c);
  cpu[name] = (d.user + d.system) / 1000;
  c = process.cpuUsage();
};
let t = performance.now();
const vmm = require(join(__dirname, "..", "..", "packages", "vmm", "dist", "index.cjs"));
phase("require", t);

(async () => {
  t = performance.now();
  const config = vmm.parseVmConfig({}, "bench");
  phase("config", t);
  t = performance.now();
  let out = "";
  const v = vmm.VmmBuilder.fromConfig({ ...config, kernel: vmm.bundledHelloPath() })
    .console((b) => {
      out += b.toString("latin1");
    })
    .build();
  phase("build", t);
  t = performance.now();
  const r = await v.run({ close: false });
  phase("run", t);
  t = performance.now();
  await v.close();
  phase("close", t);
  if (r.exitCode !== 0 || !out.includes("Hello from a tsvmm guest (uart)")) throw new Error(`hello guest: ${r.message}\n${out}`);
  process.stdout.write(`${JSON.stringify({ ...phases, cpu })}\n`);
})();
