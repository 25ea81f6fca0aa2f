// VmmBuilder.vcpuWorkers: each vCPU's loop on a thread of its own, a device of the user's there
// (its state in SharedArrayBuffers), and everything else — the Vmm's devices, hypercalls, pauses,
// the watchdog — on the main thread as before. pause.test.ts and gdb.test.ts run some of their
// tests on workers too.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { requireKvm } from "@tsvmm/kvm-backend";
import { Vmm, VmmBuilder, VmmError } from "@tsvmm/vmm";
import { beforeAll, describe, expect, it } from "vitest";
import { openFds, threadsNamed } from "../../kvm-backend/test/helpers.js";

const hasKvm = requireKvm();
const root = join(__dirname, "..", "..", "..");
const guest = (name: string) => join(root, "test-kernels", "out", `${name}.elf`);
const ticketDevice = new URL("./fixtures/ticket-device.mjs", import.meta.url);
const workerThreads = (): number => threadsNamed("tsvmm-vcpu-wkr");

beforeAll(() => {
  execFileSync("flock", ["/tmp/tsvmm-test-kernels.lock", "make", "-s", "-C", join(root, "test-kernels")]);
});

describe.runIf(hasKvm)("Vmm with vCPU workers", () => {
  it("two vCPUs take 100k tickets from a device on their own threads; hypercalls and EXIT still reach the Vmm; the watchdog sees the worker's exits", async () => {
    const next = new SharedArrayBuffer(4);
    const sums = new SharedArrayBuffer(16);
    const values = new Map<string, bigint>();
    const vmm = new VmmBuilder()
      .kernelFile(guest("vcpu-worker-device"))
      .memoryMiB(16)
      .vcpus(2)
      .irqchip(true)
      .vcpuWorkers({ module: ticketDevice, data: { next, sums } })
      .onValue((name, value, vcpu) => values.set(`${name}.${vcpu}`, value))
      // The tickets come with no exit on the main thread at all: a stall check that did not count
      // the workers' exits would end this run (it takes well over 300 ms here).
      .watchdog({ timeoutMs: 60_000, stallMs: 300 })
      .build();
    // Once both vCPUs have handed back a ticket (each takes 50k: neither is done yet), both threads run.
    const sum = new Float64Array(sums);
    let during = 0;
    let ended = false;
    const watch = (async () => {
      while (!ended && !(sum[0]! > 0 && sum[1]! > 0)) await new Promise((r) => setTimeout(r, 1));
      if (!ended) during = workerThreads();
    })();
    const result = await vmm.run();
    ended = true;
    await watch;
    expect(during).toBe(2);
    expect(result).toMatchObject({ reason: "guest-exit", exitCode: 0 });
    expect(result.durationMs).toBeGreaterThan(300);
    const total = 2 * 50_000;
    expect(new Int32Array(next)[0]).toBe(total);
    for (const v of [0, 1]) {
      expect(values.get(`tickets.${v}`)).toBe(50_000n);
      expect(values.get(`rising.${v}`)).toBe(1n);
    }
    // Every ticket handed back once, whichever vCPU took it.
    const s = new Float64Array(sums);
    expect(s[0]! + s[1]!).toBe((total * (total - 1)) / 2);
    expect(result.exits).toBeGreaterThanOrEqual(2 * total);
    const until = Date.now() + 5000;
    while (workerThreads() > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    expect(workerThreads()).toBe(0);
  }, 60_000);

  it("with shareMemory the device's thread sees the guest's RAM itself: what was written there before the run, at the same addresses", async () => {
    const next = new SharedArrayBuffer(4);
    const sums = new SharedArrayBuffer(16);
    const copy = new SharedArrayBuffer(256);
    const copyFrom = 12 << 20;
    const vmm = new VmmBuilder()
      .kernelFile(guest("vcpu-worker-device"))
      .memoryMiB(16)
      .vcpuWorkers({ module: ticketDevice, data: { next, sums, copy, copyFrom }, shareMemory: true })
      .build();
    const pattern = Buffer.from(Array.from({ length: 256 }, (_, i) => (i * 37 + 11) & 0xff));
    vmm.vm.memory.write(copyFrom, pattern);
    const result = await vmm.run();
    expect(result).toMatchObject({ reason: "guest-exit", exitCode: 0 });
    expect(Buffer.from(copy)).toEqual(pattern);
    expect(new Int32Array(next)[0]).toBe(50_000);
  }, 60_000);

  it("a snapshot taken while the vCPUs are on workers restores onto workers, and the device's shared state carries the count on", async () => {
    const next = new SharedArrayBuffer(4);
    const sums = new SharedArrayBuffer(16);
    const data = { next, sums };
    const values = new Map<string, bigint>();
    const onValue = (name: string, value: bigint, vcpu: number) => values.set(`${name}.${vcpu}`, value);
    const vmm = new VmmBuilder()
      .kernelFile(guest("vcpu-worker-device"))
      .memoryMiB(16)
      .vcpus(2)
      .irqchip(true)
      .vcpuWorkers({ module: ticketDevice, data })
      .onValue(onValue)
      .build();
    const done = vmm.run();
    const taken = new Int32Array(next);
    while (Atomics.load(taken, 0) < 20_000) await new Promise((r) => setTimeout(r, 2));
    const dir = join(mkdtempSync(join(tmpdir(), "tsvmm-workers-")), "snap");
    try {
      await vmm.snapshot(dir, { resume: false });
      const atSnapshot = Atomics.load(taken, 0);
      vmm.kill("snapshot taken", "stopped");
      expect((await done).reason).toBe("stopped");
      expect(atSnapshot).toBeLessThan(100_000);
      // The device's state is the user's (SharedArrayBuffers): restore is given the same.
      const restored = await Vmm.restore(dir, { onValue, spec: { vcpuWorker: { module: ticketDevice, data } } });
      const result = await restored.run();
      expect(result).toMatchObject({ reason: "guest-exit", exitCode: 0 });
      expect(result.exits).toBeGreaterThanOrEqual(2 * (100_000 - atSnapshot));
    } finally {
      rmSync(dirname(dir), { recursive: true, force: true });
    }
    expect(taken[0]).toBe(100_000);
    for (const v of [0, 1]) expect(values.get(`rising.${v}`)).toBe(1n);
    const s = new Float64Array(sums);
    expect(s[0]! + s[1]!).toBe((100_000 * 99_999) / 2);
  }, 60_000);

  it("--emulate's internal-error exits are forwarded: POPCNT at CPL0 is emulated for a vCPU on a worker", async () => {
    const values = new Map<string, bigint>();
    const vmm = new VmmBuilder()
      .kernelFile(guest("emulate-popcnt"))
      .memoryMiB(16)
      .emulate()
      .vcpuWorkers({ module: ticketDevice })
      .onValue((name, value) => values.set(name, value))
      .build();
    const result = await vmm.run();
    expect(result).toMatchObject({ reason: "guest-exit", exitCode: 0 });
    expect(values.get("popcnt")).toBe(BigInt([...0xf0f0f0f0f0f0f00fn.toString(2)].filter((b) => b === "1").length));
    expect(values.get("popcnt-zero-zf")).toBe(1n);
    expect(vmm.emulationStats.counts.get("popcnt")).toBe(2);
  });

  it("a handlers module that cannot load fails run() with VMM_STATE and leaves nothing open", async () => {
    const fds0 = openFds();
    const vmm = new VmmBuilder()
      .kernelFile(guest("hello"))
      .memoryMiB(8)
      .vcpuWorkers({ module: new URL("./fixtures/no-such-device.mjs", import.meta.url) })
      .build();
    const e = await vmm.run().catch((x: unknown) => x);
    expect(e).toBeInstanceOf(VmmError);
    expect(e).toMatchObject({ code: "VMM_STATE", message: expect.stringContaining("no-such-device.mjs") });
    expect(openFds()).toBe(fds0);
  });
});
