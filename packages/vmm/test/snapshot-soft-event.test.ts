import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GuestMemoryMap } from "@tsvmm/abi";
import { buildIdentityMap } from "@tsvmm/ept";
import { requireKvm } from "@tsvmm/kvm-backend";
import { restoreSnapshot, VmmBuilder } from "@tsvmm/vmm";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type SoftEventView, softEventInFlight } from "../src/snapshot/settle.js";

const root = join(__dirname, "..", "..", "..");
const guest = (name: string) => join(root, "test-kernels", "out", `${name}.elf`);
const work = mkdtempSync(join(tmpdir(), "tsvmm-soft-"));
const SCALE = Number(process.env.TSVMM_FUZZ_SCALE ?? "1");
afterAll(() => rmSync(work, { recursive: true, force: true }));

const EFER_LMA = 1n << 10n;
const EFER_LME = 1n << 8n;
const CR0_PE_PG = 0x8000_0001n;
const CR4_PAE = 1n << 5n;

function view(o: { rip: bigint; long: boolean; csBase?: bigint; cr3?: bigint; exc: number; int: number }): SoftEventView {
  return {
    regs: { rip: o.rip },
    sregs: {
      cs: { base: o.csBase ?? 0n, limit: 0xffff_ffff, selector: 0x23, type: 11, present: 1, dpl: 3, db: o.long ? 0 : 1, s: 1, l: o.long ? 1 : 0, g: 1, avl: 0, unusable: 0 },
      cr0: o.long ? CR0_PE_PG : 1n,
      cr3: o.cr3 ?? 0n,
      cr4: o.long ? CR4_PAE : 0n,
      efer: o.long ? EFER_LMA | EFER_LME : 0n,
    },
    events: {
      exception: { injected: 0, nr: o.exc, hasErrorCode: 0, pending: 0, errorCode: 0 },
      interrupt: { injected: 0, nr: o.int, soft: 0, shadow: 0 },
    },
  };
}

describe("softEventInFlight: a software exception or interrupt KVM may hold unsaved", () => {
  it("is named exactly when the event's vector matches the instruction that ends just before RIP (int3/#BP, into/#OF, int n), paged or not", () => {
    const memory = new GuestMemoryMap([{ base: 0, size: 4 * 2 ** 20, buffer: Buffer.alloc(4 * 2 ** 20) }]);
    // 64-bit: an identity map of the first 2 MiB built at 3 MiB; flat: linear = CS base + IP.
    const cr3 = buildIdentityMap(memory, 3 * 2 ** 20, { size: 2 ** 21 });
    const code = fc.record({
      long: fc.boolean(),
      at: fc.integer({ min: 0x1000, max: 0x1f_f000 }),
      csBase: fc.constantFrom(0n, 0x1000n, 0x10_0000n),
      b1: fc.constantFrom(0xcc, 0xce, 0xcd, 0x90, 0x03, 0x21),
      b2: fc.constantFrom(0xcd, 0x90, 0x0f),
      exc: fc.constantFrom(0, 3, 4, 6, 13, 14),
      int: fc.constantFrom(0, 3, 0x21, 0x80),
    });
    fc.assert(
      fc.property(code, (c) => {
        const base = c.long ? 0n : c.csBase;
        const linear = Number(base) + c.at;
        memory.fill(0, 2 ** 21, 0);
        memory.writeU8(linear - 1, c.b1);
        memory.writeU8(linear - 2, c.b2);
        const why = softEventInFlight(view({ rip: BigInt(c.at), long: c.long, csBase: c.csBase, cr3, exc: c.exc, int: c.int }), memory);
        const want = (c.exc === 3 && c.b1 === 0xcc) || (c.exc === 4 && c.b1 === 0xce) || (c.b2 === 0xcd && c.b1 === c.int);
        expect(why !== undefined).toBe(want);
        if (want) expect(why).toMatch(/#BP|#OF|software interrupt/);
      }),
      { numRuns: 500 },
    );
  });

  it("says nothing, and never throws, when RIP's page is not mapped or lies outside guest memory", () => {
    const memory = new GuestMemoryMap([{ base: 0, size: 4 * 2 ** 20, buffer: Buffer.alloc(4 * 2 ** 20) }]);
    const cr3 = buildIdentityMap(memory, 3 * 2 ** 20, { size: 2 ** 21 });
    for (const rip of [0n, 1n, 0x40_0000n, 0xffff_8000_0000_0000n, 2n ** 64n - 1n]) {
      expect(softEventInFlight(view({ rip, long: true, cr3, exc: 3, int: 3 }), memory)).toBeUndefined();
      expect(softEventInFlight(view({ rip: rip & 0xffff_ffffn, long: false, csBase: 0xffff_f000n, exc: 3, int: 3 }), memory)).toBeUndefined();
    }
  });
});

describe.runIf(requireKvm())("a snapshot while a CPL3 int3's #BP is in flight (on KVM)", () => {
  beforeAll(() => {
    execFileSync("flock", ["/tmp/tsvmm-test-kernels.lock", "make", "-s", "-C", join(root, "test-kernels")]);
  });

  // The cause of the clone test's old flake: a pause that lands after a CPL3 `int3` trapped but
  // before KVM delivered its #BP. KVM_GET_VCPU_EVENTS does not report a software exception, and
  // this host has already moved RIP past the int3, so a snapshot taken there lost the #BP: the
  // restored guest ran the `ud2` after it, took #UD, its run_user returned 0 and the count check
  // made it exit 1. A pause lands there once in a few hundred to a few thousand tries: a few
  // seconds on a quiet host, minutes on a loaded one. So the hunt is bounded (20 s x
  // TSVMM_FUZZ_SCALE); `npm run fuzz` (scale 10) requires it to land, `npm test` checks whatever
  // it reached (the full restore whenever it landed, which is most runs).
  it("is saved with its #BP kept: the restored guest goes on without a fault", async () => {
    const symbols = execFileSync("nm", [guest("pause-count")], { encoding: "utf8" });
    const at = /^([0-9a-f]+) T user_return_point$/m.exec(symbols);
    expect(at).not.toBeNull();
    const returnPoint = BigInt(`0x${at![1]}`);
    let stopAddr = 0;
    let ready: () => void = () => {};
    const started = new Promise<void>((r) => {
      ready = r;
    });
    const vmm = new VmmBuilder()
      .kernelFile(guest("pause-count"))
      .memoryMiB(16)
      .onValue((name, value) => {
        if (name === "stop.addr") stopAddr = Number(value);
        if (name === "count") ready();
      })
      .watchdog({ timeoutMs: 60_000 + 20_000 * SCALE })
      .build();
    const done = vmm.run();
    await started;
    const v = vmm.vcpus[0]!;
    let tries = 0;
    let hit = false;
    let ordinary: string | undefined | null = null;
    const deadline = performance.now() + 20_000 * SCALE;
    for (;;) {
      // Runs of a few tens of microseconds to a millisecond between pauses: many tries a second.
      await new Promise((r) => (Math.random() < 0.7 ? setImmediate(r) : setTimeout(r, Math.random())));
      await vmm.pause();
      tries++;
      // One ioctl per try; the rest only where the pause landed on the return point.
      if (v.getRegs().rip === returnPoint) {
        const seen = { regs: v.getRegs(), sregs: v.getSregs(), events: v.getVcpuEvents() };
        expect(seen.sregs.cs.selector & 3).toBe(3);
        // The #BP is pending but not in the events; the int3 just before RIP gives it away.
        expect(seen.events.exception.injected).toBe(0);
        expect(softEventInFlight(seen, vmm.vm.memory)).toMatch(/#BP from the int3 before RIP/);
        hit = true;
        break;
      }
      if (ordinary === null) ordinary = softEventInFlight({ regs: v.getRegs(), sregs: v.getSregs(), events: v.getVcpuEvents() }, vmm.vm.memory);
      if (performance.now() > deadline) break;
      vmm.resume();
    }
    // Elsewhere (the first pause, almost always at CPL0) nothing is in flight.
    expect(ordinary).toBeUndefined();
    if (SCALE > 1) expect(hit, `no pause landed on the int3 in ${tries} tries`).toBe(true);
    if (!hit) console.warn(`snapshot-soft-event: no pause landed on the int3 in ${tries} tries (loaded host); saved from where it stopped`);
    const dir = join(work, "s");
    await vmm.snapshot(dir, { resume: false });
    vmm.kill("snapshot taken", "stopped");
    await done;
    const values: string[] = [];
    const counts: bigint[] = [];
    const clone = await restoreSnapshot(dir, {
      onValue: (name, value) => {
        if (name === "count") counts.push(value);
        else values.push(`${name}=${value}`);
      },
      watchdog: { timeoutMs: 30_000 },
    });
    const run = clone.run();
    while (counts.length < 3) await new Promise((r) => setTimeout(r, 1));
    await clone.pause();
    clone.vm.memory.writeU32(stopAddr, 1);
    clone.resume();
    const r = await run;
    expect(values.filter((x) => x.startsWith("exception."))).toEqual([]);
    expect(r).toMatchObject({ reason: "guest-exit", exitCode: 0 });
    expect(counts).toEqual(counts.map((_, i) => counts[0]! + BigInt(i) * 20000n));
  }, 60_000 + 40_000 * SCALE);
});
