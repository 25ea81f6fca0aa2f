// load-vmlinux: parse the Debian cloud vmlinux and load its PT_LOAD segments into fresh 256 MiB
// guest memory with @tsvmm/elf-loader, against a C memcpy/memset of the same bytes into a fresh mmap.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
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
  // The C side unmaps each guest outside its timed region; the same here is collecting the previous
  // iteration's 256 MiB before the clock starts, not whenever V8's external-memory heuristics pick.
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc");
  let placed = 0;
  const mbps = [];
  const cMbps = [];
  let c;
  // C and JS alternate, one load each per round, so both see the same machine.
  for (let i = 0; i < ITERATIONS + 2; i++) {
    c = runJson(exe, [vmlinux, String(GUEST), "1"]);
    gc();
    const t0 = process.hrtime.bigint();
    // Fresh memory each time, like the C side's fresh mmap: page faults are part of loading.
    const mem = GuestMemoryMap.allocate([{ base: 0, size: GUEST }]);
    const r = loadElf(mem, parseElf(bytes));
    const ns = Number(process.hrtime.bigint() - t0);
    placed = r.segments.reduce((s, x) => s + x.memorySize, 0);
    if (i >= 2) {
      // The first two warm the JIT (and the C binary's page cache).
      mbps.push(placed / 1e6 / (ns / 1e9));
      cMbps.push(c.mbps);
    }
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
