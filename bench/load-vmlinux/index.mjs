// load-vmlinux: parse the Debian cloud vmlinux and load its PT_LOAD segments into fresh 256 MiB
// guest memory with @tsvmm/elf-loader, against a C memcpy/memset of the same bytes into a fresh mmap.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { GuestMemoryMap } from "@tsvmm/abi";
import { loadElf, parseElf } from "@tsvmm/elf-loader";
import { fetchDebianKernel } from "../../packages/elf-loader/scripts/fetch-debian-kernel.mjs";
import { benchRoot, compileC, median, result, runJson } from "../lib.mjs";

const GUEST = 256 << 20;
const ITERATIONS = 15;

export default async function loadVmlinux() {
  const { vmlinux } = fetchDebianKernel();
  const bytes = readFileSync(vmlinux);
  const exe = compileC(join(benchRoot, "load-vmlinux", "baseline.c"));
  const c = runJson(exe, [vmlinux, String(GUEST), String(ITERATIONS)]);

  let placed = 0;
  const mbps = [];
  for (let i = 0; i < ITERATIONS + 2; i++) {
    const t0 = process.hrtime.bigint();
    // Fresh memory each time, like the C side's fresh mmap: page faults are part of loading.
    const mem = GuestMemoryMap.allocate([{ base: 0, size: GUEST }]);
    const r = loadElf(mem, parseElf(bytes));
    const ns = Number(process.hrtime.bigint() - t0);
    placed = r.segments.reduce((s, x) => s + x.memorySize, 0);
    if (i >= 2) mbps.push(placed / 1e6 / (ns / 1e9)); // first two warm the JIT
  }
  if (placed !== c.bytes) throw new Error(`JS placed ${placed} bytes, C ${c.bytes}: not the same work`);
  return [
    result("load-vmlinux", median(mbps), "MB/s", c.mbps, {
      goal: "ratio >= 0.5 (MB/s: higher is better; ratio = JS/C)",
      bytes: placed,
    }),
  ];
}
