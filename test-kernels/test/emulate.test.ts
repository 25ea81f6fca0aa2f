import { beforeAll, describe, expect, it } from "vitest";
import { buildGuests, type RunResult, runGuest } from "../harness/guest.js";

// One guest per instruction Linux met on the PVM host (issue 16), each run at CPL0 twice: without
// emulation KVM stops it (internal error, emulation), with VmmBuilder.emulate() it finishes and
// reports what the instruction did. Expected values are computed here, not taken from a run.

beforeAll(() => buildGuests());

function expectClean(r: RunResult): void {
  expect(r.end, `console: ${r.console}`).toEqual({ kind: "exit" });
  expect(r.exitCode).toBe(0);
}

const popcount = (v: bigint) => BigInt([...v.toString(2)].filter((c) => c === "1").length);

const CASES: Record<string, (r: RunResult) => void> = {
  "emulate-popcnt": (r) => {
    expect(r.value("popcnt")).toBe(popcount(0xf0f0f0f0f0f0f00fn));
    expect(r.value("popcnt-zf")).toBe(0n);
    expect(r.value("popcnt-zero")).toBe(0n);
    expect(r.value("popcnt-zero-zf")).toBe(1n);
  },
  "emulate-cmpxchg16b": (r) => {
    expect([r.value("hit-zf"), r.value("hit-mem0"), r.value("hit-mem1")]).toEqual([1n, 0xaan, 0xbbn]);
    expect([r.value("miss-zf"), r.value("miss-rax"), r.value("miss-rdx"), r.value("miss-mem0")]).toEqual([0n, 0xaan, 0xbbn, 0xaan]);
  },
  "emulate-clac-stac": (r) => {
    expect(r.value("ac-after-stac")).toBe(1n);
    expect(r.value("ac-after-clac")).toBe(0n);
  },
  "emulate-int3": (r) => {
    expect(r.value("vector")).toBe(3n);
    expect(r.value("rip-past-int3")).toBe(1n);
    expect(r.value("cs-rpl")).toBe(0n);
  },
  "emulate-fwait": (r) => expect(r.value("after")).toBe(0x1235n),
  "emulate-ldmxcsr": (r) => expect(r.value("mxcsr")).toBe(0x7f80n),
  "emulate-movd": (r) => {
    expect(r.value("movq")).toBe(0x1122334455667788n);
    expect(r.value("movd")).toBe(0x55667788n);
  },
  "emulate-xrstor": (r) => {
    expect(r.value("xmm2")).toBe(0x0123456789abcdefn);
    expect(r.value("saved-xmm2")).toBe(0x0123456789abcdefn);
    expect(r.value("saved-xstate-bv-sse")).toBe(1n);
  },
  "emulate-vmovdqu": (r) => {
    let sum = 0n;
    for (let i = 0; i < 32; i++) sum = BigInt.asUintN(64, sum * 31n + BigInt((i * 7 + 1) & 0xff));
    expect(r.value("sum")).toBe(sum);
    expect(r.value("same")).toBe(1n);
  },
};

describe("instructions KVM cannot emulate here, at CPL0", () => {
  for (const [name, check] of Object.entries(CASES)) {
    it(`${name}: stops without --emulate, finishes with it`, async () => {
      const without = await runGuest({ name });
      expect(without.end.kind, `${name} ran without emulation: ${JSON.stringify(without.end, (_k, v) => (typeof v === "bigint" ? v.toString(16) : v))}`).toBe("internal_error");
      const r = await runGuest({ name, configure: (b) => b.emulate() });
      expectClean(r);
      check(r);
    });
  }
});

// Which path delivers the exceptions of emulated instructions on this host: KVM_SET_VCPU_EVENTS
// ("kvm") and the VMM writing the frame itself through the guest's IDT ("idt") must both give the
// handler what the processor would (vector, error code, CR2, RIP: faults at the instruction, #BP after it).
describe("delivery of emulated instructions' exceptions", () => {
  for (const path of ["kvm", "idt"] as const) {
    it(`${path}: #UD, #GP(0), #PF with CR2, #BP after the INT3`, async () => {
      const r = await runGuest({ name: "emulate-faults", configure: (b) => b.emulate({ delivery: { exception: path, software: path } }) });
      expectClean(r);
      expect([r.value("ud.vector"), r.value("ud.rip-offset")]).toEqual([6n, 0n]);
      expect([r.value("gp.vector"), r.value("gp.error"), r.value("gp.rip-offset")]).toEqual([13n, 0n, 0n]);
      // Supervisor write to a not-present page: P=0, W=1, U=0.
      expect([r.value("pf.vector"), r.value("pf.error"), r.value("pf.cr2"), r.value("pf.rip-offset")]).toEqual([14n, 2n, 0x80000000n, 0n]);
      expect([r.value("bp.vector"), r.value("bp.rip-offset")]).toEqual([3n, 1n]);
    });
  }
});
