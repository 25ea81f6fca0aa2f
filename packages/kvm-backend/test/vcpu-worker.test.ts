import { readFileSync } from "node:fs";
import { GuestMemoryMap } from "@tsvmm/abi";
import { type IoExit, Kvm, KvmError, requireKvm, type Vcpu, VcpuWorker, type Vm } from "@tsvmm/kvm-backend";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { native } from "../src/native.js";
import { assemble, enterRealMode, openFds, threadsNamed } from "./helpers.js";

// The thread's entry is the built package (a worker does not go through the test runner), and so
// is the handlers module: plain JavaScript.
const devices = new URL("./fixtures/vcpu-worker-devices.mjs", import.meta.url);
const dma = new URL("./fixtures/vcpu-worker-dma.mjs", import.meta.url);
const hasKvm = requireKvm();

const workerThreads = (): number => threadsNamed("tsvmm-vcpu-wkr");

interface Shared {
  tickets: SharedArrayBuffer;
  counts: SharedArrayBuffer;
  hltHere?: boolean;
  failToLoad?: boolean;
}
const shared = (extra: Partial<Shared> = {}): Shared => ({ tickets: new SharedArrayBuffer(4), counts: new SharedArrayBuffer(64), ...extra });

/** A VM of `code` (real mode, at 0x1000 + i*0x100 for vCPU i) with `n` vCPUs. */
function vmOf(kvm: Kvm, codes: Buffer[]): { vm: Vm; vcpus: Vcpu[] } {
  const vm = kvm.createVm();
  vm.addMemory({ slot: 0, guestPhysAddr: 0, size: 1 << 20 });
  const vcpus = codes.map((code, i) => {
    vm.memory.write(0x1000 + i * 0x100, code);
    const v = vm.createVcpu(i);
    enterRealMode(v, 0x1000 + i * 0x100);
    return v;
  });
  return { vm, vcpus };
}

/**
 * [address, address + bytes) in this process's mappings (/proc/self/smaps): how many of its bytes
 * are mapped, and the resident KiB of the mappings that overlap it. The kernel merges a mapping
 * with a neighbour of the same kind, so those may be larger than the range: compare Rss before and after.
 */
function rangeIn(address: bigint, bytes: number): { mapped: number; rssKiB: number } {
  const end = address + BigInt(bytes);
  let mapped = 0n;
  let rssKiB = 0;
  let overlaps = false;
  for (const line of readFileSync("/proc/self/smaps", "utf8").split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
    if (m !== null) {
      const lo = BigInt(`0x${m[1]}`);
      const hi = BigInt(`0x${m[2]}`);
      overlaps = lo < end && address < hi;
      if (overlaps) mapped += (hi < end ? hi : end) - (lo > address ? lo : address);
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss !== null && overlaps) rssKiB += Number(rss[1]);
  }
  return { mapped: Number(mapped), rssKiB };
}

/**
 * JavaScript (an async module body) that makes a VM of the real-mode `code` (an expression giving
 * its bytes) with the package at `dist` (an expression), and `w`: its vCPU on a VcpuWorker whose
 * module takes no exit, so every exit is forwarded. For threads and processes made by the tests.
 */
function forwardingWorker(dist: string, code: string): string {
  return `
      const { Kvm, VcpuWorker } = await import(${dist});
      const kvm = Kvm.open();
      const vm = kvm.createVm();
      vm.addMemory({ slot: 0, guestPhysAddr: 0, size: 0x10000 });
      vm.memory.write(0x1000, Buffer.from(${code}));
      const v = vm.createVcpu(0);
      const s = v.getSregs();
      for (const k of ["cs", "ds", "es", "fs", "gs", "ss"]) { s[k].base = 0n; s[k].selector = 0; }
      v.setSregs(s);
      v.setRegs({ ...v.getRegs(), rip: 0x1000n, rflags: 2n });
      const w = await VcpuWorker.start(v, { module: "data:text/javascript,export default () => ({})" });`;
}

/** Wait until `cond()` or fail after `ms`. */
async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 2));
  }
}

describe.runIf(hasKvm)("VcpuWorker: a vCPU's loop on its own thread, its devices in shared memory", () => {
  it("vCPUs of one VM on workers hammer one shared-memory device: every ticket handed out exactly once, in each vCPU's order", async () => {
    const kvm = Kvm.open();
    try {
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 2, max: 3 }), fc.array(fc.integer({ min: 1, max: 3000 }), { minLength: 3, maxLength: 3 }), async (nv, counts) => {
          const codes = Array.from({ length: nv }, (_, i) =>
            assemble(`mov ecx, ${counts[i]}\n mov di, ${0x2000 + i * 0x4000}\n1: in eax, 0x10\n mov [di], eax\n add di, 4\n dec ecx\n jnz 1b\n hlt`, 16, 0x1000 + i * 0x100),
          );
          const { vm, vcpus } = vmOf(kvm, codes);
          const data = shared();
          const workers: VcpuWorker[] = [];
          try {
            for (const v of vcpus) workers.push(await VcpuWorker.start(v, { module: devices, data }));
            // HLT has no handler on the worker: it comes here, decoded from the same kvm_run.
            const halted: number[] = [];
            const results = await Promise.all(workers.map((w) => w.run({ hlt: (_e, v) => halted.push(v.id) > 0 })));
            const total = counts.slice(0, nv).reduce((a, b) => a + b, 0);
            expect(new Int32Array(data.tickets)[0]).toBe(total);
            expect(halted.sort()).toEqual(vcpus.map((v) => v.id));
            const seen: number[] = [];
            for (let i = 0; i < nv; i++) {
              expect(results[i]!.exit?.kind).toBe("hlt");
              expect(results[i]!.exits).toBe(counts[i]! + 1);
              const mine: number[] = [];
              for (let k = 0; k < counts[i]!; k++) mine.push(vm.memory.readU32(0x2000 + i * 0x4000 + k * 4));
              for (let k = 1; k < mine.length; k++) expect(mine[k]!).toBeGreaterThan(mine[k - 1]!);
              seen.push(...mine);
            }
            seen.sort((a, b) => a - b);
            expect(seen).toEqual(Array.from({ length: total }, (_, k) => k));
          } finally {
            for (const w of workers) await w.close();
            vm.close();
          }
        }),
        { numRuns: 6 },
      );
    } finally {
      kvm.close();
    }
  });

  it("exits the worker does not take reach this thread's handlers with the exit, the vCPU's state and the answer to an IN", async () => {
    const kvm = Kvm.open();
    // OUT 0x12 three times (forwarded), OUT 0x11 (taken on the worker), IN 0x12 (answered here), stored at 0x3000.
    const code = assemble("mov ax, 0x41\n out 0x12, ax\n inc ax\n out 0x12, ax\n out 0x11, al\n inc ax\n out 0x12, ax\n in ax, 0x12\n mov [0x3000], ax\n hlt", 16, 0x1000);
    const { vm, vcpus } = vmOf(kvm, [code]);
    const data = shared();
    const w = await VcpuWorker.start(vcpus[0]!, { module: devices, data });
    try {
      const outs: Array<{ value: number; rip: bigint }> = [];
      const seen: string[] = [];
      const io = (e: IoExit, v: Vcpu): boolean => {
        if (e.direction === "in") e.setValue(0xbeef);
        else outs.push({ value: e.value, rip: v.getRegs().rip });
        return false;
      };
      // shouldStop, looked at before the run and after each forwarded exit, ends it after the second.
      const first = await w.run({ io }, { onExit: (e) => seen.push(e.kind), shouldStop: () => outs.length === 2 });
      expect(first).toEqual({ exit: undefined, exits: 2 });
      expect(await w.run({ io }, { shouldStop: () => true })).toEqual({ exit: undefined, exits: 0 });
      const r = await w.run({ io, hlt: () => true }, { onExit: (e) => seen.push(e.kind) });
      // Forwarded exits reach onExit; the one the worker took (OUT 0x11) does not, but counts in exits.
      expect(seen).toEqual(["io", "io", "io", "io", "hlt"]);
      expect(w.exits).toBe(6);
      expect(outs.map((o) => o.value)).toEqual([0x41, 0x42, 0x43]);
      // KVM completed each OUT before exiting: RIP is past it (a 2-byte `out imm8, ax` in 16-bit code).
      expect(outs[0]!.rip).toBe(0x1005n);
      expect(new Int32Array(data.counts)[0]).toBe(1);
      expect(vm.memory.readU16(0x3000)).toBe(0xbeef);
      expect(r).toMatchObject({ exits: 4 });
      expect(r.exit?.kind).toBe("hlt");
    } finally {
      await w.close();
      vm.close();
      kvm.close();
    }
  });

  it("stop() ends a run exiting back to back, kick() one spinning without exits; the event loop stays free; run() goes on after", async () => {
    const kvm = Kvm.open();
    const exiting = assemble("1: out 0x11, al\n jmp 1b", 16, 0x1000);
    const spinning = assemble("mov ecx, 2000\n1: out 0x11, al\n dec ecx\n jnz 1b\n2: jmp 2b", 16, 0x1100);
    const { vm, vcpus } = vmOf(kvm, [exiting, spinning]);
    const data = shared();
    const [a, b] = [await VcpuWorker.start(vcpus[0]!, { module: devices, data }), await VcpuWorker.start(vcpus[1]!, { module: devices, data })];
    try {
      let ticks = 0;
      const timer = setInterval(() => ticks++, 1);
      const ra = a.run();
      const rb = b.run({ interrupted: () => true });
      const counts = new Int32Array(data.counts);
      await until(() => counts[0]! > 10_000 && counts[1]! >= 2000 && ticks > 20);
      expect(a.running).toBe(true);
      a.stop();
      const ea = await ra;
      // Either the KVM_RUN in flight was cut short, or the loop saw the stop between two exits.
      expect(ea.exit === undefined || ea.exit.kind === "interrupted").toBe(true);
      expect(ea.exits).toBeGreaterThan(10_000);
      b.kick();
      const eb = await rb;
      expect(eb.exit?.kind).toBe("interrupted");
      expect(eb.exits).toBe(2001);
      // That run settled when this thread answered "stop", before the worker's own end arrived: a
      // run started at once must not be taken for it, nor ended by it.
      const rb2 = b.run();
      expect(b.running).toBe(true);
      await new Promise((r) => setTimeout(r, 20));
      expect(b.running).toBe(true);
      b.stop();
      const eb2 = await rb2;
      expect(eb2.exit === undefined || eb2.exit.kind === "interrupted").toBe(true);
      expect(b.running).toBe(false);
      clearInterval(timer);
      expect(ticks).toBeGreaterThan(20);
      // The same worker runs the vCPU again from where it stopped.
      const before = counts[0]!;
      const again = await a.run({}, { maxExits: 500 });
      expect(again.exits).toBe(500);
      expect(counts[0]! - before).toBe(500);
    } finally {
      await a.close();
      await b.close();
      vm.close();
      kvm.close();
    }
  });

  it("stop() leaves the vCPU whole: the last IN's value is in RAX, wherever the stop found the loop", async () => {
    const kvm = Kvm.open();
    const { vm, vcpus } = vmOf(kvm, [assemble("1: in eax, 0x10\n jmp 1b", 16, 0x1000)]);
    const data = shared();
    const w = await VcpuWorker.start(vcpus[0]!, { module: devices, data });
    const tickets = new Int32Array(data.tickets);
    try {
      for (let round = 0; round < 40; round++) {
        const r = w.run();
        await new Promise((res) => setTimeout(res, 1 + (round % 3)));
        w.stop();
        const { exit } = await r;
        // undefined: the stop came before the run's first KVM_RUN (a loaded host can delay the worker that long).
        expect(exit === undefined || exit.kind === "interrupted").toBe(true);
        // KVM puts an IN's value in RAX when it is next entered: a stop between two exits that
        // skipped that entry would leave the ticket before the last one there.
        // No IN yet (on a loaded host the stop can end the first KVM_RUN before the guest's first
        // IN): RAX is still the reset value, 0.
        const taken = Atomics.load(tickets, 0);
        expect(Number(vcpus[0]!.getRegs().rax & 0xffffffffn)).toBe(taken === 0 ? 0 : taken - 1);
      }
    } finally {
      await w.close();
      vm.close();
      kvm.close();
    }
  });

  it("while lent, the vCPU refuses to run elsewhere; after close() it is its owner's again", async () => {
    const kvm = Kvm.open();
    const code = assemble("out 0x11, al\n hlt", 16, 0x1000);
    const { vm, vcpus } = vmOf(kvm, [code]);
    const v = vcpus[0]!;
    const w = await VcpuWorker.start(v, { module: devices, data: shared() });
    try {
      expect(() => v.run()).toThrow(expect.objectContaining({ code: "KVM_VCPU_BUSY" }));
      await expect(v.runAsync()).rejects.toMatchObject({ code: "KVM_VCPU_BUSY" });
      await expect(VcpuWorker.start(v, { module: devices, data: shared() })).rejects.toMatchObject({ code: "KVM_VCPU_BUSY" });
      // Nothing to stop between runs: the next run is not cut short by it.
      w.stop();
      const first = w.run({}, { maxExits: 1 });
      await expect(w.run()).rejects.toMatchObject({ code: "KVM_VCPU_BUSY" });
      expect((await first).exit?.kind).toBe("io");
      await expect(w.run({}, { maxExits: 0 })).rejects.toMatchObject({ code: "KVM_INVALID_ARGUMENT" });
    } finally {
      await w.close();
    }
    await expect(w.run()).rejects.toMatchObject({ code: "KVM_CLOSED" });
    // Back with its owner: the next exit is the HLT after the OUT the worker took.
    expect(v.run().kind).toBe("hlt");
    vm.close();
    kvm.close();
  });

  it("a failing module, worker handler or owner handler rejects with a typed error and gives the vCPU back", async () => {
    const kvm = Kvm.open();
    const code = assemble("mov ax, 7\n out 0x13, ax\n out 0x12, ax\n hlt", 16, 0x1000);
    const { vm, vcpus } = vmOf(kvm, [code]);
    const v = vcpus[0]!;
    try {
      const missing = new URL("./fixtures/no-such-module.mjs", import.meta.url);
      const e1 = await VcpuWorker.start(v, { module: missing }).catch((e: unknown) => e);
      expect(e1).toBeInstanceOf(KvmError);
      expect(e1).toMatchObject({ code: "KVM_WORKER_FAILED", message: expect.stringContaining("no-such-module.mjs") });
      await expect(VcpuWorker.start(v, { module: devices, data: shared({ failToLoad: true }) })).rejects.toMatchObject({
        code: "KVM_WORKER_FAILED",
        message: expect.stringContaining("refuses to load"),
      });
      // Data that cannot cross to the thread.
      await expect(VcpuWorker.start(v, { module: devices, data: { f: () => 1 } })).rejects.toMatchObject({ code: "KVM_WORKER_FAILED" });

      const w = await VcpuWorker.start(v, { module: devices, data: shared() });
      await expect(w.run()).rejects.toMatchObject({ code: "KVM_WORKER_FAILED", message: expect.stringContaining("device 0x13 rejects 7") });
      // The thread survived its handler's throw: the next exit (OUT 0x12) is forwarded, and a
      // throwing handler here rejects the run with its own error.
      const mine = new Error("owner's device failed");
      await expect(w.run({ io: () => { throw mine; } })).rejects.toBe(mine);
      await w.close();
      expect(v.run().kind).toBe("hlt");
    } finally {
      vm.close();
      kvm.close();
    }
  });

  it("closing the VM while workers run takes the vCPUs back first; threads and fds are released", async () => {
    const kvm = Kvm.open();
    const fds0 = openFds();
    for (const guest of ["1: out 0x11, al\n jmp 1b", "1: jmp 1b", "1: out 0x12, al\n jmp 1b"]) {
      const code = assemble(guest, 16, 0x1000);
      const { vm, vcpus } = vmOf(kvm, [code, code]);
      const workers = await Promise.all(vcpus.map((v) => VcpuWorker.start(v, { module: devices, data: shared() })));
      // The third guest's exits are forwarded here: a worker is mostly waiting for this thread,
      // which is busy closing the VM, and must be told.
      const runs = workers.map((w) => w.run({ io: () => false }).catch((e: unknown) => e));
      await new Promise((r) => setTimeout(r, 30));
      expect(workerThreads()).toBe(2);
      vm.close();
      for (const e of await Promise.all(runs)) expect(e).toMatchObject({ code: "KVM_CLOSED" });
      for (const w of workers) await w.close();
    }
    await until(() => workerThreads() === 0);
    expect(openFds()).toBe(fds0);
    kvm.close();
  });

  it("handlers on the worker reach guest RAM (ctx.memory): they read what the owner wrote and the guest reads what they wrote", async () => {
    const kvm = Kvm.open();
    try {
      await fc.assert(
        fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 4096 }), async (bytes) => {
          const code = assemble(`mov ax, ${bytes.length}\n out 0x14, ax\n mov eax, [0x4000]\n hlt`, 16, 0x1000);
          const { vm, vcpus } = vmOf(kvm, [code]);
          const w = await VcpuWorker.start(vcpus[0]!, { module: dma, data: { probe: new SharedArrayBuffer(8) }, memory: vm.memory });
          try {
            vm.memory.write(0x3000, bytes);
            let rax = -1n;
            const r = await w.run({ hlt: (_e, v) => { rax = v.getRegs().rax; return true; } });
            const sum = bytes.reduce((a, b) => a + b, 0);
            expect(r.exit?.kind).toBe("hlt");
            expect(vm.memory.readU32(0x4000)).toBe(sum);
            expect(rax & 0xffffffffn).toBe(BigInt(sum));
          } finally {
            await w.close();
            vm.close();
          }
        }),
        { numRuns: 5 },
      );
    } finally {
      kvm.close();
    }
  });

  it("guest RAM a worker still holds when the VM lets it go: its pages are given back and read as zeros there, never a fault; the range is unmapped when the thread ends", async () => {
    const kvm = Kvm.open();
    const vm = kvm.createVm();
    const size = 32 << 20;
    vm.addMemory({ slot: 0, guestPhysAddr: 0, size });
    const code = assemble("out 0x15, al\n hlt", 16, 0x1000);
    vm.memory.write(0x1000, code);
    const vcpu = vm.createVcpu(0);
    enterRealMode(vcpu, 0x1000);
    const address = native().address(vm.memory.regions[0]!.buffer);
    const probe = new Int32Array(new SharedArrayBuffer(8));
    const w = await VcpuWorker.start(vcpu, { module: dma, data: { probe: probe.buffer }, memory: vm.memory });
    try {
      vm.memory.writeU32(0x6000, 0x600d600d);
      vm.memory.fill(0x100000, 24 << 20, 0x5a);
      expect((await w.run({ hlt: () => true })).exit?.kind).toBe("hlt");
      // The worker's timer now reads guest RAM on its own thread, between runs.
      await until(() => Atomics.load(probe, 0) > 3 && Atomics.load(probe, 1) === 0x600d600d);
      const before = rangeIn(address, size);
      expect(before.mapped).toBe(size);
      expect(before.rssKiB).toBeGreaterThanOrEqual(24 << 10);
      vm.removeMemory(0);
      // The owner's view is gone (detached); the worker's reads zeros from fresh pages, and the
      // guest's 24 MiB went back to the kernel while the range stays reserved for the worker.
      expect(vm.memory.regions).toHaveLength(0);
      const seen = Atomics.load(probe, 0);
      await until(() => Atomics.load(probe, 0) > seen + 3 && Atomics.load(probe, 1) === 0);
      const held = rangeIn(address, size);
      expect(held.mapped).toBe(size);
      expect(before.rssKiB - held.rssKiB).toBeGreaterThanOrEqual(20 << 10);
    } finally {
      await w.close();
      vm.close();
      kvm.close();
    }
    // Its thread has ended: the last SharedArrayBuffer over the range is gone, and so is the range.
    await until(() => rangeIn(address, size).mapped < size);
  });

  it("memory that is not a whole mapping of this package's is refused with a typed error, and the vCPU is its owner's again", async () => {
    const kvm = Kvm.open();
    const { vm, vcpus } = vmOf(kvm, [assemble("hlt", 16, 0x1000)]);
    try {
      const part = new GuestMemoryMap([{ base: 0, size: 4096, buffer: vm.memory.regions[0]!.buffer.subarray(4096, 8192) }]);
      const err = await VcpuWorker.start(vcpus[0]!, { module: dma, data: { probe: new SharedArrayBuffer(8) }, memory: part }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KvmError);
      expect((err as KvmError).code).toBe("KVM_INVALID_ARGUMENT");
      expect((err as KvmError).message).toMatch(/not a whole mapping/);
      const junk = await VcpuWorker.start(vcpus[0]!, { module: dma, memory: {} as GuestMemoryMap }).catch((e: unknown) => e);
      expect((junk as KvmError).code).toBe("KVM_INVALID_ARGUMENT");
      expect(vcpus[0]!.run().kind).toBe("hlt");
    } finally {
      vm.close();
      kvm.close();
    }
  });

  it.each([
    ["forward exits to it back to back", "mov al, 1\n1: out 0x10, al\n jmp 1b"],
    ["spin without exits", "mov al, 1\n out 0x10, al\n1: jmp 1b"],
  ])("a thread that owns vCPU workers, terminated while they %s, takes them with it; this process goes on", async (_what, source) => {
    const { Worker } = await import("node:worker_threads");
    const dist = new URL("../dist/index.js", import.meta.url).href;
    // The owner is itself a worker thread: its VM's vCPU runs on a VcpuWorker that forwards every
    // exit to it (a module with no handlers), and it is terminated mid-run, with no close().
    const owner = `
      const { parentPort, workerData } = await import("node:worker_threads");
      ${forwardingWorker("workerData.dist", "workerData.code")}
      let outs = 0;
      void w.run({ io: () => { if (++outs === Math.min(2000, workerData.outs)) parentPort.postMessage({ outs }); return false; } });
    `;
    const code = assemble(source, 16, 0x1000);
    const outs = source.includes("1: out") ? 2000 : 1;
    const fdsBefore = openFds();
    for (let i = 0; i < 3; i++) {
      const w = new Worker(`(async () => {${owner}})()`, { eval: true, workerData: { dist, code, outs } });
      await new Promise<void>((resolve, reject) => {
        w.on("message", () => resolve());
        w.on("error", reject);
      });
      // A spinning guest: the vCPU's thread is inside KVM_RUN, where no JavaScript runs to end it.
      if (outs === 1) await new Promise((r) => setTimeout(r, 50));
      await w.terminate();
    }
    await until(() => workerThreads() === 0);
    // The VMs' fds go with their threads' environments (finalizers): none is left over.
    await until(() => openFds() <= fdsBefore, 5000);
  });

  it("process.exit() while a vCPU worker's guest spins without exits ends the process (it used to wait for ever)", async () => {
    const dist = new URL("../dist/index.js", import.meta.url).href;
    const code = [...assemble("mov al, 1\n out 0x10, al\n1: jmp 1b", 16, 0x1000)];
    const script = `
      ${forwardingWorker(JSON.stringify(dist), JSON.stringify(code))}
      void w.run({ io: () => { setTimeout(() => process.exit(7), 50); return false; } });
    `;
    const { spawnSync } = await import("node:child_process");
    const { mkdtempSync, rmSync, writeFileSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    // A file, not -e: a worker thread inherits the process's execArgv, and --input-type refuses it.
    const dir = mkdtempSync(join(tmpdir(), "tsvmm-exit-"));
    const file = join(dir, "spin-exit.mjs");
    writeFileSync(file, script);
    const t0 = Date.now();
    const r = spawnSync(process.execPath, [file], { encoding: "utf8", timeout: 20_000 });
    rmSync(dir, { recursive: true, force: true });
    expect(r.error, r.stderr).toBeUndefined();
    expect(r.status, r.stderr).toBe(7);
    expect(Date.now() - t0).toBeLessThan(15_000);
  });
});
