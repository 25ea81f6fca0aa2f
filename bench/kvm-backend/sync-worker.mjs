// One worker of the design the kvm-backend README weighs against the inline vCPU: a vCPU's loop run
// synchronously (Vcpu.run) in a worker thread of its own, its handler in that worker. Each worker
// makes its own 1-vCPU VM of the PIO guest, says it is ready, waits for the start word, runs to
// HLT and posts its exit count and time. Used by index.mjs (exits-2vcpu's syncWorkers* details).
import { readFileSync } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
import { Kvm } from "@tsvmm/kvm-backend";

const { guest, words } = workerData;
const flags = new Int32Array(words);
const kvm = Kvm.open();
const vm = kvm.createVm();
try {
  vm.addMemory({ slot: 0, guestPhysAddr: 0, size: 2 << 20 });
  vm.memory.write(0x1000, readFileSync(guest));
  const vcpu = vm.createVcpu(0);
  const s = vcpu.getSregs();
  for (const k of ["cs", "ds", "es", "fs", "gs", "ss"]) {
    s[k].base = 0n;
    s[k].selector = 0;
  }
  vcpu.setSregs(s);
  const r = vcpu.getRegs();
  r.rip = 0x1000n;
  r.rflags = 2n;
  r.rsp = 0x7000n;
  vcpu.setRegs(r);
  Atomics.add(flags, 0, 1);
  Atomics.notify(flags, 0);
  Atomics.wait(flags, 1, 0);
  let exits = 0;
  let sink = 0;
  const t0 = process.hrtime.bigint();
  for (;;) {
    const e = vcpu.run();
    exits++;
    if (e.kind === "io") {
      sink += e.port + e.value;
      continue;
    }
    if (e.kind === "hlt") break;
    throw new Error(`unexpected exit ${e.kind}`);
  }
  const us = Number(process.hrtime.bigint() - t0) / 1000;
  parentPort.postMessage({ exits, us, sink });
} finally {
  vm.close();
  kvm.close();
}
