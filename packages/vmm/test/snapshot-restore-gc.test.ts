import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { constants, PerformanceObserver } from "node:perf_hooks";
import { requireKvm } from "@tsvmm/kvm-backend";
import { restoreSnapshot, VmmBuilder } from "@tsvmm/vmm";
import { afterAll, expect, it } from "vitest";

const root = join(__dirname, "..", "..", "..");
const work = mkdtempSync(join(tmpdir(), "tsvmm-snap-gc-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

// Guest RAM is an mmap exposed as an ArrayBuffer. V8 used to count each such buffer's length as
// memory the embedder allocated, so every 128 MiB VM made (or restored) pushed V8 past its
// external-memory limit and bought one or two full mark-compacts (12-28 ms each on this host).
it.runIf(requireKvm())("restoring and closing a 128 MiB VM again and again does not make V8 collect garbage for the guest's RAM", async () => {
  const vmm = new VmmBuilder().kernelFile(join(root, "test-kernels", "out", "hello.elf")).memoryMiB(128).build();
  const dir = join(work, "s");
  await vmm.snapshot(dir);
  await vmm.close();
  const major: number[] = [];
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const detail = (e as unknown as { detail?: { kind?: number } }).detail;
      if (detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) major.push(e.duration);
    }
  });
  obs.observe({ entryTypes: ["gc"] });
  const ROUNDS = 12;
  try {
    for (let i = 0; i < ROUNDS; i++) {
      const r = await restoreSnapshot(dir, { verifyMemory: false });
      // Touch the guest's RAM from JavaScript too: the views must work, and they are not counted either.
      r.vm.memory.writeU32(0x200000 + i * 4096, i);
      expect(r.vm.memory.readU32(0x200000 + i * 4096)).toBe(i);
      await r.close();
    }
    // The observer hears of a GC on a later turn of the event loop.
    await new Promise((r) => setTimeout(r, 50));
  } finally {
    obs.disconnect();
  }
  // 12 x 128 MiB = 1.5 GiB of mappings; before the fix this took one or two full GCs per round.
  expect(major.length).toBeLessThanOrEqual(2);
}, 120_000);
