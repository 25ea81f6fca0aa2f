import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { requireKvm } from "@tsvmm/kvm-backend";
import { VmmBuilder } from "@tsvmm/vmm";
import { beforeAll, describe, expect, it } from "vitest";

const hasKvm = requireKvm();
const root = join(__dirname, "..", "..", "..");
const guest = (name: string) => join(root, "test-kernels", "out", `${name}.elf`);

beforeAll(() => {
  execFileSync("flock", ["/tmp/tsvmm-test-kernels.lock", "make", "-s", "-C", join(root, "test-kernels")]);
});

describe.runIf(hasKvm)("pause and resume", () => {
  // With VmmBuilder.vcpuWorkers too, the module taking no exit: every one, pauses included, is forwarded.
  const onWorkers = (b: VmmBuilder) => b.vcpuWorkers({ module: new URL("./fixtures/ticket-device.mjs", import.meta.url) });
  it.each([
    ["", undefined],
    [" (the vCPUs on worker threads, every exit forwarded)", onWorkers],
  ])("a two-vCPU guest counting is paused and resumed 1000 times and its counts do not drift%s", async (_, configure) => {
    const counts = new Map<number, bigint[]>([[0, []], [1, []]]);
    const finals = new Map<string, bigint>();
    let stopAddr: number | undefined;
    let ready: () => void = () => {};
    const started = new Promise<void>((r) => {
      ready = r;
    });
    const b = new VmmBuilder()
      .kernelFile(guest("pause-count"))
      .memoryMiB(16)
      .vcpus(2)
      .onValue((name, value, vcpu) => {
        if (name === "stop.addr") stopAddr = Number(value);
        else if (name === "count") {
          counts.get(vcpu)!.push(value);
          if (vcpu === 1 && counts.get(0)!.length > 0) ready();
        } else finals.set(`${name}.${vcpu}`, value);
      })
      .watchdog({ timeoutMs: 60_000, stallMs: 10_000 });
    configure?.(b);
    const vmm = b.build();
    const run = vmm.run();
    await started;
    let pausedWhileRunning = 0;
    const seenDuringPause: number[] = [];
    for (let i = 0; i < 1000; i++) {
      await vmm.pause();
      expect(vmm.paused).toBe(true);
      if (!vmm.stopping) pausedWhileRunning++;
      // Nothing moves while paused: the counts stay where they are across an event-loop turn.
      const n = counts.get(0)!.length + counts.get(1)!.length;
      if (i % 100 === 0) {
        await new Promise((r) => setTimeout(r, 2));
        seenDuringPause.push(counts.get(0)!.length + counts.get(1)!.length - n);
      }
      vmm.resume();
      if (i % 50 === 0) await new Promise((r) => setImmediate(r));
    }
    // Paused, the flag is written straight into guest memory; the guests see it after resume.
    await vmm.pause();
    vmm.vm.memory.writeU32(stopAddr!, 1);
    vmm.resume();
    const result = await run;
    expect(pausedWhileRunning).toBe(1000);
    expect(seenDuringPause.every((d) => d === 0)).toBe(true);
    expect(result).toMatchObject({ reason: "guest-exit", exitCode: 0 });
    expect(result.exitCodes.get(1)).toBe(0);
    // One vCPU counts at CPL3 in chunks of 20000, the other at CPL0 in chunks of 50 (which is which is the guest's race).
    expect([finals.get("chunk.0"), finals.get("chunk.1")].sort()).toEqual([20000n, 50n]);
    for (const vcpu of [0, 1]) {
      const per = finals.get(`chunk.${vcpu}`)!;
      const list = counts.get(vcpu)!;
      const steps = finals.get(`steps.${vcpu}`)!;
      expect(BigInt(list.length)).toBe(steps);
      // Every step reported once, in order, each exactly one chunk more than the last.
      expect(list).toEqual(list.map((_, i) => BigInt(i + 1) * per));
      expect(finals.get(`bad-lsr.${vcpu}`)).toBe(0n);
    }
  }, 60_000);

  it("pause() on a VM that is not running resolves at once, and resume() without a pause does nothing", async () => {
    const vmm = new VmmBuilder().kernelFile(guest("hello")).memoryMiB(8).build();
    await vmm.pause();
    expect(vmm.paused).toBe(false);
    vmm.resume();
    const r = await vmm.run();
    expect(r.reason).toBe("guest-exit");
    await vmm.pause();
    expect(vmm.paused).toBe(false);
  });

  it("kill() while paused ends the run instead of leaving it parked", async () => {
    let ready: () => void = () => {};
    const started = new Promise<void>((r) => {
      ready = r;
    });
    const vmm = new VmmBuilder()
      .kernelFile(guest("pause-count"))
      .memoryMiB(16)
      .onValue((name) => {
        if (name === "count") ready();
      })
      .build();
    const run = vmm.run();
    await started;
    await vmm.pause();
    vmm.kill("stopped while paused", "stopped");
    const r = await run;
    expect(r).toMatchObject({ reason: "stopped", exitCode: 0, message: "stopped while paused" });
  });
});
