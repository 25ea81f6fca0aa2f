// load-vmlinux: parse the Debian cloud vmlinux and load its PT_LOAD segments with @tsvmm/elf-loader
// into the 256 MiB RAM slot of a fresh VM (mapped by kvm-backend as every tsvmm VM's RAM is:
// private anonymous memory, like the C side's), against a C memcpy/memset of the same bytes into a
// fresh mmap. The VM and its slot are made before the clock: KVM_CREATE_VM and
// KVM_SET_USER_MEMORY_REGION (6-10 ms on this host) are not loading and the C side has no
// counterpart; the mapping is untouched when the clock starts, so page faults are part of loading
// on both sides, as is parsing the ELF. (Loading into a `Buffer.alloc` of 256 MiB instead measured
// its allocation at 2.7-4.2 ms in-process: V8 accounts it as external memory.)
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { loadElf, parseElf } from "@tsvmm/elf-loader";
import { Kvm } from "@tsvmm/kvm-backend";
import { fetchDebianKernel } from "../../packages/elf-loader/scripts/fetch-debian-kernel.mjs";
import { benchRoot, compileC, median, result, runJson } from "../lib.mjs";

const GUEST = 256 << 20;
const ITERATIONS = 15;

export default async function loadVmlinux() {
  const { vmlinux } = fetchDebianKernel();
  const bytes = readFileSync(vmlinux);
  const exe = compileC(join(benchRoot, "load-vmlinux", "baseline.c"));
  const kvm = Kvm.open();
  let placed = 0;
  const mbps = [];
  const cMbps = [];
  let c;
  try {
    // C and JS alternate, one load each per round, so both see the same machine.
    for (let i = 0; i < ITERATIONS + 2; i++) {
      c = runJson(exe, [vmlinux, String(GUEST), "1"]);
      const vm = kvm.createVm();
      try {
        vm.addMemory({ slot: 0, guestPhysAddr: 0, size: GUEST, name: "ram" });
        const t0 = process.hrtime.bigint();
        const r = loadElf(vm.memory, parseElf(bytes));
        const ns = Number(process.hrtime.bigint() - t0);
        placed = r.segments.reduce((s, x) => s + x.memorySize, 0);
        if (i >= 2) {
          // The first two warm the JIT (and the C binary's page cache).
          mbps.push(placed / 1e6 / (ns / 1e9));
          cMbps.push(c.mbps);
        }
      } finally {
        // Unmapped outside the clock, as the C side does.
        vm.close();
      }
    }
  } finally {
    kvm.close();
  }
  if (placed !== c.bytes) throw new Error(`JS placed ${placed} bytes, C ${c.bytes}: not the same work`);
  return [
    result("load-vmlinux", median(mbps), "MB/s", median(cMbps), {
      goal: "ratio >= 0.9 (MB/s: higher is better; ratio = JS/C)",
      rounds: ITERATIONS,
      bytes: placed,
    }),
  ];
}
