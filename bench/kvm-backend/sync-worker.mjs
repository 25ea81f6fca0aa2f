// One worker of the design the kvm-backend README weighs against the inline vCPU: a vCPU's loop run
// synchronously (Vcpu.run) in a worker thread of its own, its handler in that worker. Each worker
// makes its own 1-vCPU VM of the PIO guest, says it is ready, waits for the start word, runs to
// HLT and posts its exit count and time. Used by index.mjs (exits-2vcpu's syncWorkers* details).
import { readFileSync } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
import { Kvm } from "@tsvmm/kvm-backend";
import { makeVm, runPioSync } from "./guest-vm.mjs";

const { guest, words } = workerData;
const flags = new Int32Array(words);
const kvm = Kvm.open();
const { vm, vcpu } = makeVm(kvm, readFileSync(guest));
try {
  Atomics.add(flags, 0, 1);
  Atomics.notify(flags, 0);
  Atomics.wait(flags, 1, 0);
  const t0 = process.hrtime.bigint();
  const { exits, sink } = runPioSync(vcpu);
  const us = Number(process.hrtime.bigint() - t0) / 1000;
  parentPort.postMessage({ exits, us, sink });
} finally {
  vm.close();
  kvm.close();
}
