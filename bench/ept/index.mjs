// ept-map-1gib-4k: map 1 GiB of guest-physical memory with 4 KiB EPT pages and translate 10^6
// pseudo-random addresses, against bench/ept/baseline.c doing the same map and walk.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { GuestMemoryMap } from "@tsvmm/abi";
import { EptTables, TableAllocator } from "@tsvmm/ept";
import { compileC, result, runJson } from "../lib.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const N = 1_000_000;
const REPS = 5;

export default async function bench() {
  const exe = compileC(join(here, "baseline.c"));
  const c = runJson(exe, [String(N), String(REPS)]);
  const memory = GuestMemoryMap.allocate([{ base: 0, size: 4 << 20 }]);
  let bestMap = Infinity;
  let bestTr = Infinity;
  let checksum = 0;
  for (let r = 0; r < REPS + 1; r++) {
    // Same maxPhyAddr as the C walk's reserved-bit mask.
    const allocator = new TableAllocator(memory, 0, 4 << 20);
    const t0 = performance.now();
    const ept = new EptTables(memory, allocator, { maxPhyAddr: 46 });
    ept.map(0, 0x100000000, 2 ** 30, { read: true, write: true, execute: true }, { pageSize: 4096 });
    const t1 = performance.now();
    let x = 0x12345678;
    let sum = 0;
    for (let i = 0; i < N; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      sum += ept.translateFast((x >>> 0) >>> 2, 0);
    }
    const t2 = performance.now();
    if (r > 0) {
      // The first round warms the JIT.
      bestMap = Math.min(bestMap, t1 - t0);
      bestTr = Math.min(bestTr, t2 - t1);
    }
    checksum = sum;
  }
  if (checksum !== c.checksum) throw new Error(`checksum mismatch: ts ${checksum} vs c ${c.checksum}`);
  return [
    result("ept-map-1gib-4k.map", bestMap, "ms", c.map_ms, { goal: "ratio <= 3" }),
    result("ept-map-1gib-4k.translate-1e6", bestTr, "ms", c.translate_ms, { goal: "ratio <= 3" }),
  ];
}
