// Where a `tsvmm run` of the bundled hello guest spends its time, phase by phase, in one process:
// Node's own start (until this script runs), loading the vmm bundle and the packages it requires,
// the config schema, VmmBuilder.build() (KVM VM, memory, kernel, ACPI, CPUID, vCPUs, devices),
// the run, and closing the VM. Prints one JSON object (milliseconds). Used by bench/vmm/index.mjs.
"use strict";
const { join } = require("node:path");

const phases = { nodeStart: performance.now() };
let t = performance.now();
const vmm = require(join(__dirname, "..", "..", "packages", "vmm", "dist", "index.cjs"));
phases.require = performance.now() - t;

(async () => {
  t = performance.now();
  const config = vmm.parseVmConfig({}, "bench");
  phases.config = performance.now() - t;
  t = performance.now();
  let out = "";
  const v = vmm.VmmBuilder.fromConfig({ ...config, kernel: vmm.bundledHelloPath() })
    .console((b) => {
      out += b.toString("latin1");
    })
    .build();
  phases.build = performance.now() - t;
  t = performance.now();
  const r = await v.run({ close: false });
  phases.run = performance.now() - t;
  t = performance.now();
  await v.close();
  phases.close = performance.now() - t;
  if (r.exitCode !== 0 || !out.includes("Hello from a tsvmm guest (uart)")) throw new Error(`hello guest: ${r.message}\n${out}`);
  process.stdout.write(`${JSON.stringify(phases)}\n`);
})();
