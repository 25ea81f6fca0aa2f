// The stall check on its own: progress is a counter the VMM bumps (no clock per exit), and the
// watchdog notes when it saw it move. A stall is reported after stallMs without a move, never
// before, and never while the VM rests (paused, held by a debugger).
import { Watchdog } from "@tsvmm/vmm";
import { describe, expect, it } from "vitest";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const monotonicMs = () => Number(process.hrtime.bigint()) / 1e6;

describe("Watchdog stall check", () => {
  it("no stall while progress moves or the VM rests; a stall once it stops, not before stallMs", async () => {
    let progress = 0;
    let resting = false;
    let stalledAt: number | undefined;
    const stallMs = 60;
    const dog = new Watchdog({ stallMs }, { timeout: () => {}, stalled: () => (stalledAt ??= monotonicMs()), progress: () => progress, resting: () => resting });
    try {
      // Moving: 200 ms, three stall periods, with a move every 10 ms.
      for (let i = 0; i < 20; i++) {
        progress++;
        await sleep(10);
      }
      expect(stalledAt).toBeUndefined();
      // Resting: no move for three stall periods.
      resting = true;
      await sleep(3 * stallMs);
      expect(stalledAt).toBeUndefined();
      // The end of a rest is progress (the VMM counts each return from a pause).
      resting = false;
      progress++;
      const quietFrom = monotonicMs();
      const deadline = quietFrom + 20 * stallMs;
      while (stalledAt === undefined && monotonicMs() < deadline) await sleep(5);
      expect(stalledAt).toBeDefined();
      expect(stalledAt! - quietFrom).toBeGreaterThanOrEqual(stallMs);
    } finally {
      dog.stop();
    }
  });
});
