import { execFile, execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Kvm, requireKvm } from "@tsvmm/kvm-backend";
import { checkSnapshot, decodeValue, encodeValue, prepareRestore, restoreSnapshot, SnapshotError, type SnapshotHeader, serializeHeader, type Vmm, VmmBuilder } from "@tsvmm/vmm";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";

const run = promisify(execFile);
const hasKvm = requireKvm();
const root = join(__dirname, "..", "..", "..");
const guest = (name: string) => join(root, "test-kernels", "out", `${name}.elf`);
const bin = join(root, "packages", "vmm", "bin", "tsvmm.cjs");
const work = mkdtempSync(join(tmpdir(), "tsvmm-snap-"));
let n = 0;
const fresh = () => join(work, `s${n++}`);

beforeAll(() => {
  execFileSync("flock", ["/tmp/tsvmm-test-kernels.lock", "make", "-s", "-C", join(root, "test-kernels")]);
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Lines of the console grouped by the role that printed them ("cpu0 …", "cpu1 …"): each role's order is deterministic. */
function byRole(text: string): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const line of text.split("\n")) {
    if (line.length === 0) continue;
    const role = line.split(" ")[0]!;
    const list = out[role] ?? [];
    list.push(line);
    out[role] = list;
  }
  return out;
}

function everywhere(console: (s: string) => void, vcpus = 2): Vmm {
  return new VmmBuilder()
    .kernelFile(guest("snap-everywhere"))
    .memoryMiB(16)
    .vcpus(vcpus)
    .console((b) => console(b.toString()))
    .watchdog({ timeoutMs: 30_000 })
    .build();
}

/** Start pause-count, wait for its first counts; resolves with the VM, its run and where its stop flag is. */
async function counting(vcpus = 1, watchdogMs = 30_000): Promise<{ vmm: Vmm; done: Promise<unknown>; stopAddr: number; counts: bigint[] }> {
  let stopAddr = 0;
  const counts: bigint[] = [];
  let ready: () => void = () => {};
  const started = new Promise<void>((r) => {
    ready = r;
  });
  const vmm = new VmmBuilder()
    .kernelFile(guest("pause-count"))
    .memoryMiB(16)
    .vcpus(vcpus)
    .onValue((name, value) => {
      if (name === "stop.addr") stopAddr = Number(value);
      if (name === "count") {
        counts.push(value);
        if (counts.length >= 3) ready();
      }
    })
    .watchdog({ timeoutMs: watchdogMs })
    .build();
  const done = vmm.run();
  await started;
  return { vmm, done, stopAddr, counts };
}

describe.runIf(hasKvm)("snapshot and restore", () => {
  let reference: { lines: Record<string, string[]>; exitCode: number; ms: number };

  beforeAll(async () => {
    // Twice: the points the tests snapshot at are fractions of the run's length, and a first, cold
    // run (JIT, page cache) took longer than the runs after it on the Intel host, so that too many
    // of them ended before their point.
    for (let i = 0; i < 2; i++) {
      let text = "";
      const t0 = performance.now();
      const r = await everywhere((s) => {
        text += s;
      }).run();
      const ms = performance.now() - t0;
      expect(r.reason).toBe("guest-exit");
      if (reference !== undefined) expect(byRole(text)).toEqual(reference.lines);
      if (reference === undefined || ms < reference.ms) reference = { lines: byRole(text), exitCode: r.exitCode, ms };
    }
  });

  it("a two-vCPU guest snapshotted at a random point, killed and restored by `tsvmm restore` in a new process ends exactly as an uninterrupted run", { timeout: 240_000 }, async () => {
    expect(existsSync(join(root, "packages", "vmm", "dist", "cli.cjs"))).toBe(true);
    expect(reference.lines.cpu0?.length).toBe(8 * 3 + 1);
    expect(reference.lines.cpu1?.length).toBe(8 + 1);
    let snapshotted = 0;
    await fc.assert(
      fc.asyncProperty(fc.double({ min: 0, max: 0.8, noNaN: true }), async (frac) => {
        let before = "";
        const vmm = everywhere((s) => {
          before += s;
        });
        const done = vmm.run();
        await new Promise((r) => setTimeout(r, frac * reference.ms));
        await vmm.pause();
        if (vmm.stopping) {
          // The guest finished first: nothing to restore, the run itself is the check.
          expect((await done).exitCode).toBe(reference.exitCode);
          expect(byRole(before)).toEqual(reference.lines);
          return;
        }
        const dir = fresh();
        await vmm.snapshot(dir, { resume: false });
        vmm.kill("snapshot taken", "stopped");
        await done;
        snapshotted++;
        let after = "";
        let status = 0;
        let stderr = "";
        try {
          after = (await run(process.execPath, [bin, "restore", dir], { encoding: "utf8", timeout: 30_000 })).stdout;
        } catch (e) {
          const x = e as { code?: number; stdout?: string; stderr?: string };
          status = x.code ?? -1;
          after = x.stdout ?? "";
          stderr = x.stderr ?? "";
        }
        expect(status, stderr).toBe(reference.exitCode);
        expect(byRole(before + after)).toEqual(reference.lines);
        rmSync(dir, { recursive: true });
      }),
      { numRuns: 10 },
    );
    expect(snapshotted).toBeGreaterThan(5);
  });

  it("clones of one snapshot run side by side in one process, each its own VM, and diverge independently", { timeout: 60_000 }, async () => {
    const { vmm, done, stopAddr } = await counting();
    const dir = fresh();
    await vmm.snapshot(dir, { resume: false });
    vmm.kill("snapshot taken", "stopped");
    await done;
    const memBefore = createHash("sha256").update(readFileSync(join(dir, "memory.bin"))).digest("hex");
    const CLONES = 3;
    const counts: bigint[][] = Array.from({ length: CLONES }, () => []);
    const steps: bigint[] = [];
    const clones: Vmm[] = [];
    for (let k = 0; k < CLONES; k++) {
      clones.push(
        await restoreSnapshot(dir, {
          memory: k === 2 ? "copy" : "map",
          onValue: (name, value) => {
            if (name === "count") counts[k]!.push(value);
            if (name === "steps") steps[k] = value;
          },
          watchdog: { timeoutMs: 30_000 },
        }),
      );
    }
    const runs = clones.map((c) => c.run({ close: false }));
    // Clone k is stopped after 2 + 3k more counts, and 3 more than the clone before had when it was
    // paused (a loaded host lets a clone run on a while before its pause lands; after the flag it
    // may finish one more step): each runs on its own, and its stop flag is its own.
    let previous = 0;
    for (let k = 0; k < CLONES; k++) {
      const target = Math.max(2 + 3 * k, previous + 3);
      while (counts[k]!.length < target) await new Promise((r) => setTimeout(r, 1));
      await clones[k]!.pause();
      previous = counts[k]!.length;
      clones[k]!.vm.memory.writeU32(stopAddr, 1);
      // The clones still running have not seen it: their memory is their own.
      for (let j = k + 1; j < CLONES; j++) expect(clones[j]!.vm.memory.readU32(stopAddr)).toBe(0);
      clones[k]!.resume();
    }
    const results = await Promise.all(runs);
    for (const c of clones) await c.close();
    for (const [k, r] of results.entries()) {
      expect(r).toMatchObject({ reason: "guest-exit", exitCode: 0 });
      // Each clone took its own number of steps, and its counts go on from the snapshot without drift.
      const list = counts[k]!;
      const first = list[0]!;
      expect(list).toEqual(list.map((_, i) => first + BigInt(i) * 20000n));
    }
    expect(new Set(steps.map(String)).size).toBe(CLONES);
    const memAfter = createHash("sha256").update(readFileSync(join(dir, "memory.bin"))).digest("hex");
    expect(memAfter).toBe(memBefore);
  });

  it("a restore prepared ahead (VM built first, state applied by finish()) goes on like a direct one, memory mapped or copied; finish() works once", async () => {
    const { vmm, done, stopAddr } = await counting();
    const dir = fresh();
    await vmm.snapshot(dir, { resume: false });
    vmm.kill("snapshot taken", "stopped");
    await done;
    const code = readFileSync(join(dir, "memory.bin")).subarray(0x100000, 0x101000);
    expect(code.some((b) => b !== 0)).toBe(true);
    for (const memory of ["map", "copy"] as const) {
      const counts: bigint[] = [];
      const prepared = await prepareRestore(dir, {
        memory,
        onValue: (name, value) => {
          if (name === "count") counts.push(value);
        },
        watchdog: { timeoutMs: 30_000 },
      });
      // Built, not yet restored: where the guest's code lives (0x100000) a mapped RAM shows the
      // file already, a copied one is still zero until finish().
      const before = prepared.vmm.vm.memory.read(0x100000, 4096);
      expect(before.equals(memory === "map" ? code : Buffer.alloc(4096))).toBe(true);
      const clone = prepared.finish();
      expect(clone).toBe(prepared.vmm);
      expect(clone.vm.memory.read(0x100000, 4096).equals(code)).toBe(true);
      expect(() => prepared.finish()).toThrow(SnapshotError);
      const run = clone.run();
      while (counts.length < 3) await new Promise((r) => setTimeout(r, 1));
      await clone.pause();
      clone.vm.memory.writeU32(stopAddr, 1);
      clone.resume();
      expect(await run).toMatchObject({ reason: "guest-exit", exitCode: 0 });
      expect(counts).toEqual(counts.map((_, i) => counts[0]! + BigInt(i) * 20000n));
    }
  }, 60_000);

  it("a PIT the guest never touched is neither saved nor made by restore; one it programmed is restored and keeps interrupting", async () => {
    const untouched = new VmmBuilder().kernelFile(guest("hello")).memoryMiB(8).build();
    const quiet = fresh();
    await untouched.snapshot(quiet);
    await untouched.close();
    expect(checkSnapshot(quiet).state.vm.pit2).toBeNull();
    const q = await restoreSnapshot(quiet);
    expect(q.vm.hasPit2).toBe(false);
    expect(await q.run()).toMatchObject({ reason: "guest-exit", exitCode: 0 });

    // pit-timer programs counter 0 (rate generator, 1193) and reports "pit.armed": saved there.
    let vmm: Vmm | undefined;
    let saved: Promise<unknown> | undefined;
    const dir = fresh();
    vmm = new VmmBuilder()
      .kernelFile(guest("pit-timer"))
      .memoryMiB(8)
      .onValue((name) => {
        if (name === "pit.armed") saved = vmm!.snapshot(dir, { resume: false }).then(() => vmm!.kill("saved", "stopped"));
      })
      .build();
    await vmm.run();
    await saved;
    const pit = checkSnapshot(dir).state.vm.pit2;
    expect(pit?.channels[0]).toMatchObject({ mode: 2, count: 1193 });
    const values: Record<string, bigint> = {};
    const r = await restoreSnapshot(dir, {
      onValue: (name, value) => {
        values[name] = value;
      },
    });
    expect(r.vm.hasPit2).toBe(true);
    expect(await r.run()).toMatchObject({ reason: "guest-exit", exitCode: 0 });
    // The restored PIT is wired as the tables say (GSI 2) again: KVM's routing is not in the snapshot.
    expect(values["pit.pin2"]).toBeGreaterThanOrEqual(10n);
    expect(values["pit.pin0"]).toBe(0n);
    rmSync(quiet, { recursive: true });
    rmSync(dir, { recursive: true });
  }, 60_000);

  it("every piece of vCPU state set before a save reads back the same after a restore (property, on KVM)", async () => {
    const u64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
    const canonical = fc.bigInt({ min: 0n, max: 2n ** 47n - 1n });
    // MSRs any x86-64 vCPU takes any canonical value in (SYSENTER, STAR family, KERNEL_GS_BASE).
    const MSRS = [0x174, 0x175, 0x176, 0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084, 0xc0000102];
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          gprs: fc.array(u64, { minLength: 16, maxLength: 16 }),
          rip: canonical,
          msrs: fc.array(canonical, { minLength: MSRS.length, maxLength: MSRS.length }),
          dr: fc.array(canonical, { minLength: 4, maxLength: 4 }),
          xmm: fc.uint8Array({ minLength: 256, maxLength: 256 }),
          tpr: fc.integer({ min: 0, max: 15 }),
          cr2: canonical,
        }),
        async (s) => {
          const vmm = new VmmBuilder().kernelFile(guest("hello")).memoryMiB(8).pit("eager").build();
          const v = vmm.vcpus[0]!;
          const names = ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"] as const;
          const regs = { ...v.getRegs(), rip: s.rip };
          names.forEach((k, i) => {
            regs[k] = s.gprs[i]!;
          });
          v.setRegs(regs);
          v.setSregs({ ...v.getSregs(), cr2: s.cr2 });
          v.setMsrs(MSRS.map((index, i) => ({ index, data: s.msrs[i]! })));
          v.setDebugRegs({ ...v.getDebugRegs(), db: s.dr });
          v.setFpu({ ...v.getFpu(), xmm: Buffer.from(s.xmm) });
          const lapic = v.getLapic();
          lapic.regs.writeUInt32LE(s.tpr << 4, 0x80);
          v.setLapic(lapic);
          const want = {
            regs: v.getRegs(), sregs: v.getSregs(), msrs: v.getMsrs(MSRS), fpu: v.getFpu(), xsave: v.getXsave(), xcrs: v.getXcrs(),
            debug: v.getDebugRegs(), lapic: v.getLapic(), events: v.getVcpuEvents(), mp: v.getMpState(), cpuid: v.getCpuid2(),
            pit: vmm.vm.getPit2(), ioapic: vmm.vm.getIoapic(),
          };
          const dir = fresh();
          await vmm.snapshot(dir);
          await vmm.close();
          const r = await restoreSnapshot(dir);
          const w = r.vcpus[0]!;
          try {
            expect(w.getRegs()).toEqual(want.regs);
            expect(w.getSregs()).toEqual(want.sregs);
            expect(w.getMsrs(MSRS)).toEqual(want.msrs);
            expect(w.getFpu()).toEqual(want.fpu);
            expect(w.getXsave()).toEqual(want.xsave);
            expect(w.getXcrs()).toEqual(want.xcrs);
            expect(w.getDebugRegs()).toEqual(want.debug);
            expect(w.getVcpuEvents()).toEqual(want.events);
            expect(w.getMpState()).toBe(want.mp);
            expect(w.getCpuid2()).toEqual(want.cpuid);
            expect(r.vm.getIoapic()).toEqual(want.ioapic);
            // The LAPIC's registers, but the timer's current count (it runs).
            const a = w.getLapic().regs;
            const b = want.lapic.regs;
            a.writeUInt32LE(0, 0x390);
            b.writeUInt32LE(0, 0x390);
            expect(a.equals(b)).toBe(true);
            const pa = r.vm.getPit2();
            expect(pa.channels.map((c) => ({ ...c, countLoadTime: 0n }))).toEqual(want.pit.channels.map((c) => ({ ...c, countLoadTime: 0n })));
          } finally {
            await r.close();
            rmSync(dir, { recursive: true });
          }
        },
      ),
      { numRuns: 12 },
    );
  }, 120_000);

  describe("refusals", () => {
    let good: string;
    beforeAll(async () => {
      const { vmm, done } = await counting();
      good = fresh();
      await vmm.snapshot(good, { resume: false });
      vmm.kill("snapshot taken", "stopped");
      await done;
    });

    /** A copy of the good snapshot, changed by `edit`. */
    function variant(edit: (dir: string) => void): string {
      const dir = fresh();
      execFileSync("cp", ["-r", "--sparse=always", good, dir]);
      edit(dir);
      return dir;
    }

    /** Rewrite state.json through `f` and the header consistently (checksums recomputed): what another host or version would write. */
    function rewrite(dir: string, f: (state: Record<string, unknown>) => void, h: (header: SnapshotHeader) => void = () => {}): void {
      const state = decodeValue(JSON.parse(readFileSync(join(dir, "state.json"), "utf8"))) as Record<string, unknown>;
      f(state);
      const bytes = Buffer.from(`${JSON.stringify(encodeValue(state))}\n`);
      writeFileSync(join(dir, "state.json"), bytes);
      const header = JSON.parse(readFileSync(join(dir, "header.json"), "utf8")) as SnapshotHeader;
      header.state = { ...header.state, bytes: bytes.length, sha256: createHash("sha256").update(bytes).digest("hex") };
      h(header);
      const { headerSha256: _, ...rest } = header;
      writeFileSync(join(dir, "header.json"), serializeHeader(rest));
    }

    async function refused(dir: string, code: string, pattern: RegExp, options: { verifyMemory?: boolean } = {}): Promise<void> {
      const spy = vi.spyOn(Kvm.prototype, "createVm");
      try {
        let err: unknown;
        try {
          await restoreSnapshot(dir, options);
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(SnapshotError);
        expect((err as SnapshotError).code).toBe(code);
        expect((err as SnapshotError).message).toMatch(pattern);
        expect(spy).not.toHaveBeenCalled();
      } finally {
        spy.mockRestore();
      }
    }

    it("the good snapshot passes every check", () => {
      const c = checkSnapshot(good);
      expect(c.hostProblems).toEqual([]);
      expect(c.header.formatVersion).toBe(1);
    });

    it("a truncated memory file, state file or header is refused, naming the file", async () => {
      await refused(variant((d) => truncateSync(join(d, "memory.bin"), 4096 * 10)), "SNAPSHOT_TRUNCATED", /memory\.bin is 40960 bytes, the header says 16777216/);
      await refused(variant((d) => truncateSync(join(d, "state.json"), 100)), "SNAPSHOT_TRUNCATED", /state\.json is 100 bytes/);
      await refused(variant((d) => truncateSync(join(d, "header.json"), 50)), "SNAPSHOT_BAD_HEADER", /header\.json is not JSON/);
      await refused(variant((d) => rmSync(join(d, "header.json"))), "SNAPSHOT_NOT_FOUND", /header\.json: ENOENT/);
    });

    it("a corrupted byte in the state, the header or a written memory page is refused by checksum", async () => {
      const flip = (file: string, at: (size: number) => number) => (d: string) => {
        const p = join(d, file);
        const b = readFileSync(p);
        const i = at(b.length);
        b[i] = b[i]! ^ 0x01;
        writeFileSync(p, b);
      };
      await refused(variant(flip("state.json", (s) => s >> 1)), "SNAPSHOT_CHECKSUM", /state\.json: SHA-256/);
      // A digit of the creation time: still a well-formed header, but not the one its checksum was made over.
      const at = readFileSync(join(good, "header.json"), "utf8").indexOf('"createdAt": "') + 16;
      await refused(variant(flip("header.json", () => at)), "SNAPSHOT_CHECKSUM", /header's checksum does not match/);
      const runs = (JSON.parse(readFileSync(join(good, "state.json"), "utf8")) as { memoryRuns: [number, number][] }).memoryRuns;
      const page = runs[0]![0];
      const bad = variant((d) => {
        const p = join(d, "memory.bin");
        const b = readFileSync(p);
        b[page * 4096 + 7] = b[page * 4096 + 7]! ^ 0x80;
        writeFileSync(p, b);
      });
      await refused(bad, "SNAPSHOT_CHECKSUM", /memory\.bin: SHA-256 of the written pages/);
      // Without the memory check only the header and state are verified: the damage goes unseen.
      const vmm = await restoreSnapshot(bad, { verifyMemory: false });
      await vmm.close();
    });

    it("another format version is refused, naming both versions", async () => {
      await refused(variant((d) => rewrite(d, () => {}, (h) => {
        h.formatVersion = 2;
      })), "SNAPSHOT_VERSION", /format version 2 .*reads version 1 only/);
    });

    it("a snapshot from a host without a CPU feature the guest uses is refused naming the leaf, unless forced", async () => {
      // As if saved on a host that had (and gave the guest) AVX-512F, CPUID.(7,0):EBX[16], which this one lacks.
      const other = variant((d) =>
        rewrite(
          d,
          (s) => {
            const host = s.host as { supportedCpuid: { function: number; index: number; ebx: number }[] };
            const vcpus = s.vcpus as { cpuid: { held: { function: number; index: number; ebx: number }[] } }[];
            for (const e of [...host.supportedCpuid, ...vcpus.flatMap((v) => v.cpuid.held)]) if (e.function === 7 && e.index === 0) e.ebx = (e.ebx | (1 << 16)) >>> 0;
          },
          (h) => {
            h.host = { ...h.host, fingerprint: "0".repeat(64) };
          },
        ),
      );
      const kvm = Kvm.open();
      const here = kvm.supportedCpuid().find((e) => e.function === 7 && e.index === 0)!;
      kvm.close();
      if ((here.ebx & (1 << 16)) !== 0) {
        // This host has AVX-512F: then the same snapshot must pass.
        expect(checkSnapshot(other).hostProblems).toEqual([]);
        return;
      }
      await refused(other, "SNAPSHOT_HOST_MISMATCH", /CPUID leaf 0x7 subleaf 0 EBX: the guest uses avx512f/i);
      const forced = checkSnapshot(other, { force: true });
      expect(forced.hostProblems.join()).toMatch(/leaf 0x7/);
    });

    it("`tsvmm restore` refuses bad input with one line and exit status 2", async () => {
      const bad = variant((d) => truncateSync(join(d, "memory.bin"), 4096));
      for (const [dir, code] of [[bad, "SNAPSHOT_TRUNCATED"], [join(work, "nothing-here"), "SNAPSHOT_NOT_FOUND"]] as const) {
        let err: { code?: number; stderr?: string } = {};
        try {
          await run(process.execPath, [bin, "restore", dir], { encoding: "utf8" });
        } catch (e) {
          err = e as typeof err;
        }
        expect(err.code).toBe(2);
        expect(err.stderr?.trim().split("\n")).toHaveLength(1);
        expect(err.stderr).toContain(`tsvmm: ${code}:`);
      }
    });
  });

  it("a device without saveState makes snapshot() fail naming it; nothing is written and the VM runs on", async () => {
    let ready: () => void = () => {};
    const started = new Promise<void>((r) => {
      ready = r;
    });
    let stopAddr = 0;
    const vmm = new VmmBuilder()
      .kernelFile(guest("pause-count"))
      .memoryMiB(16)
      .pioDevice(0x510 + 0x100, 4, { name: "stateless-widget", read: (_o, d) => d.fill(0), write: () => {} })
      .onValue((name, value) => {
        if (name === "stop.addr") stopAddr = Number(value);
        if (name === "count") ready();
      })
      .watchdog({ timeoutMs: 30_000 })
      .build();
    const done = vmm.run();
    await started;
    const dir = fresh();
    await expect(vmm.snapshot(dir)).rejects.toMatchObject({ code: "SNAPSHOT_DEVICE", message: expect.stringContaining('"stateless-widget" (pio 0x610+0x4)') });
    expect(existsSync(dir)).toBe(false);
    expect(vmm.paused).toBe(false);
    await vmm.pause();
    vmm.vm.memory.writeU32(stopAddr, 1);
    vmm.resume();
    expect(await done).toMatchObject({ reason: "guest-exit", exitCode: 0 });
  }, 30_000);

  it("a snapshot that runs out of disk fails typed, leaves nothing that looks like a snapshot, and the VM runs on", async () => {
    const mnt = mkdtempSync(join(tmpdir(), "tsvmm-full-"));
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt]);
    try {
      const { vmm, done, stopAddr } = await counting();
      await vmm.pause();
      // 4 MiB of non-zero guest memory: more than the 1 MiB filesystem holds.
      vmm.vm.memory.write(0x800000, Buffer.alloc(4 * 2 ** 20, 0xa5));
      vmm.resume();
      const dir = join(mnt, "snap");
      await expect(vmm.snapshot(dir)).rejects.toMatchObject({ code: "SNAPSHOT_WRITE_FAILED", message: expect.stringMatching(/ENOSPC/) });
      expect(readdirSync(mnt)).toEqual([]);
      expect(vmm.paused).toBe(false);
      expect(vmm.stopping).toBe(false);
      await vmm.pause();
      vmm.vm.memory.writeU32(stopAddr, 1);
      vmm.resume();
      expect(await done).toMatchObject({ reason: "guest-exit", exitCode: 0 });
    } finally {
      execFileSync("umount", [mnt]);
      rmSync(mnt, { recursive: true, force: true });
    }
  }, 30_000);

  it("memory.bin holds only the pages the guest wrote: a sparse file about the size of what was touched", async () => {
    const { vmm, done } = await counting();
    await vmm.pause();
    vmm.vm.memory.write(0x400000, Buffer.alloc(3 * 2 ** 20, 0x5a));
    const dir = fresh();
    const info = await vmm.snapshot(dir, { resume: false });
    vmm.kill("snapshot taken", "stopped");
    await done;
    expect(info.memoryBytes).toBe(16 * 2 ** 20);
    expect(info.dataBytes).toBeGreaterThanOrEqual(3 * 2 ** 20);
    expect(info.dataBytes).toBeLessThan(3 * 2 ** 20 + 2 ** 20);
    const blocks = Number(execFileSync("stat", ["-c", "%b*%B", join(dir, "memory.bin")], { encoding: "utf8" }).trim().split("*").reduce((a, b) => String(Number(a) * Number(b))));
    expect(blocks).toBeLessThan(info.dataBytes + 2 ** 20);
  }, 30_000);
});
