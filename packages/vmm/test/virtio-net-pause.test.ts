import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { requireKvm } from "@tsvmm/kvm-backend";
import { build } from "esbuild";
import { afterAll, describe, expect, it } from "vitest";

// Vmm.pause() quiesces virtio-net's TAP backend: frames the host sends while the VM is paused
// are not written into guest memory until resume(), and none is lost when the queue had room.
// The VM runs in a child process under `unshare -n` (fixtures/virtio-net-pause-vm.ts), bundled
// next to the kvm-backend addon, where its loader looks.

const hasKvm = requireKvm();
const root = join(__dirname, "..", "..", "..");
const bundlePath = join(root, "packages", "kvm-backend", "build", `virtio-net-pause-vm-${process.pid}.cjs`);
afterAll(() => rmSync(bundlePath, { force: true }));

describe.runIf(hasKvm)("virtio-net while the VM is paused (TAP in a network namespace)", () => {
  it("frames sent while paused stay out of guest memory until resume, then all arrive in order", { timeout: 120_000 }, async () => {
    expect(existsSync("/dev/net/tun") && process.getuid?.() === 0, "the TAP needs /dev/net/tun and root").toBe(true);
    const alias = Object.fromEntries(readdirSync(join(root, "packages")).map((p) => [`@tsvmm/${p}`, join(root, "packages", p, "src", "index.ts")]));
    await build({
      entryPoints: [join(__dirname, "fixtures", "virtio-net-pause-vm.ts")],
      bundle: true,
      platform: "node",
      format: "cjs",
      target: "node20",
      outfile: bundlePath,
      logLevel: "silent",
      alias,
    });
    const elf = join(root, "test-kernels", "out", "pause-count.elf");
    const child = spawnSync("unshare", ["-n", process.execPath, bundlePath, elf], { encoding: "utf8", timeout: 90_000 });
    expect(child.error).toBeUndefined();
    const out = JSON.parse(String(child.stdout).trim().split("\n").pop() ?? "{}") as {
      error?: string;
      reason: string;
      exitCode: number;
      message: string;
      deliveredRunning: boolean;
      pausedFlag: boolean;
      whilePaused: { memoryUnchanged: boolean; rxFrames: number; takenWhilePaused: number };
      deliveredAfterResume: boolean;
      got: string[];
      stats: { rxFrames: number; rxDropped: number };
      errors: string[];
    };
    expect(out.error, String(child.stderr)).toBeUndefined();
    expect([out.reason, out.exitCode], out.message).toEqual(["guest-exit", 0]);
    expect(out.errors).toEqual([]);
    // Running: the TAP's frame reached the receive queue.
    expect(out.deliveredRunning, JSON.stringify(out)).toBe(true);
    // Paused: not one byte of the receive buffers or the used ring changed, and no frame was counted as delivered.
    expect(out.pausedFlag).toBe(true);
    expect(out.whilePaused).toEqual({ memoryUnchanged: true, rxFrames: 0, takenWhilePaused: 0 });
    // Resumed: the three frames sent meanwhile arrived, in order, none dropped.
    expect(out.deliveredAfterResume).toBe(true);
    expect(out.got).toEqual(["running-1", "paused-1", "paused-2", "paused-3"]);
    expect(out.stats.rxDropped).toBe(0);
  });
});
