import { KVM_MSR_FILTER_DEFAULT_DENY, type KvmMsrFilter } from "@tsvmm/abi";
import { kvmAvailable } from "@tsvmm/kvm-backend";
import { type MsrListEntry, MsrPolicy, toKvmMsrFilter, VmxMsrBitmap, validateKvmMsrFilter } from "@tsvmm/msr-io-bitmaps";
import { beforeAll, describe, expect, it } from "vitest";
import { randomU32, randomU64, s64 } from "../../test-kernels/harness/expect.js";
import { buildGuests, type RunResult, runGuest } from "../../test-kernels/harness/guest.js";
import { randomCanonical, shuffle, writeMsrParams } from "./guest-params.js";

// @tsvmm/msr-io-bitmaps on the real /dev/kvm: an intercept bitmap (or policy) becomes a KVM MSR
// filter; a guest reads, writes and re-reads a set of MSRs; exactly the intercepted accesses exit,
// the guest sees the VMM's answers (a value, or #GP), and the others run natively in KVM.

const GP = 13n;
const NONE = -1n;

/** MSRs a CPL0 guest can write harmlessly (the test guest never uses SYSENTER/SYSCALL/FS/GS),
 * each with a generator of values KVM accepts (canonical addresses, 32-bit masks). */
const MSRS: readonly { index: number; name: string; value: () => bigint }[] = [
  { index: 0x174, name: "SYSENTER_CS", value: () => BigInt(randomU32() & 0xfff8) },
  { index: 0x175, name: "SYSENTER_ESP", value: () => randomCanonical(3) },
  { index: 0x176, name: "SYSENTER_EIP", value: () => randomCanonical() },
  { index: 0xc0000081, name: "STAR", value: () => randomU64() },
  { index: 0xc0000082, name: "LSTAR", value: () => randomCanonical() },
  { index: 0xc0000083, name: "CSTAR", value: () => randomCanonical() },
  { index: 0xc0000084, name: "SFMASK", value: () => BigInt(randomU32()) },
  { index: 0xc0000100, name: "FS_BASE", value: () => randomCanonical() },
  { index: 0xc0000101, name: "GS_BASE", value: () => randomCanonical() },
  { index: 0xc0000102, name: "KERNEL_GS_BASE", value: () => randomCanonical() },
];

type ReadPlan = "allow" | "reply" | "fail";
type WritePlan = "allow" | "accept" | "fail";
interface Planned {
  index: number;
  name: string;
  value: bigint;
  read: ReadPlan;
  write: WritePlan;
}

/** Every (read, write) combination at least once, on MSRs in random order, with random values. */
function randomPlan(): Planned[] {
  const combos: [ReadPlan, WritePlan][] = [];
  for (const r of ["allow", "reply", "fail"] as const) for (const w of ["allow", "accept", "fail"] as const) combos.push([r, w]);
  const order = shuffle(combos);
  return shuffle(MSRS).map((m, i) => {
    const [read, write] = order[i % order.length]!;
    return { index: m.index, name: m.name, value: m.value(), read, write };
  });
}

beforeAll(() => {
  buildGuests();
  expect(kvmAvailable(), "/dev/kvm must be readable and writable for the integration tests").toBe(true);
});

interface Outcome {
  r: RunResult;
  replies: Map<number, bigint[]>;
  native: Map<number, bigint>;
}

/** Runs msrbitmap-rw over `plan` under `filter`, answering exits as the plan says. */
async function runPlan(plan: readonly Planned[], filter: KvmMsrFilter): Promise<Outcome> {
  const byIndex = new Map(plan.map((p) => [p.index, p]));
  const replies = new Map<number, bigint[]>();
  const native = new Map<number, bigint>();
  const r = await runGuest({
    name: "msrbitmap-rw",
    msrFilter: filter,
    prepare: ({ memory }) => {
      writeMsrParams(memory, plan);
      return {};
    },
    onMsr: (kind, index) => {
      const p = byIndex.get(index);
      if (p === undefined) return "fail";
      if (kind === "wrmsr") return p.write === "accept" ? true : "fail";
      if (p.read !== "reply") return "fail";
      const v = randomU64();
      replies.set(index, [...(replies.get(index) ?? []), v]);
      return v;
    },
    // KVM_GET_MSRS is never filtered: the MSRs' real state after the guest ran.
    inspect: ({ vcpus }) => {
      for (const e of vcpus[0]!.getMsrs(plan.map((p) => p.index))) native.set(e.index, e.data);
    },
  });
  return { r, replies, native };
}

function checkOutcome({ r, replies, native }: Outcome, plan: readonly Planned[]): void {
  expect(r.end, `console: ${r.console}`).toEqual({ kind: "exit" });
  expect(r.exitCode).toBe(0);
  // Exactly the intercepted accesses exited, in the guest's order: rd, wr, rd per MSR.
  const expected: [string, number, string][] = [];
  for (const p of plan) {
    if (p.read !== "allow") expected.push(["rdmsr", p.index, p.read === "reply" ? "ok" : "fail"]);
    if (p.write !== "allow") expected.push(["wrmsr", p.index, p.write === "accept" ? "ok" : "fail"]);
    if (p.read !== "allow") expected.push(["rdmsr", p.index, p.read === "reply" ? "ok" : "fail"]);
  }
  expect(r.msrs.map((m) => [m.kind, m.index, m.outcome])).toEqual(expected);
  // The VMM saw the value the guest wrote.
  for (const m of r.msrs.filter((x) => x.kind === "wrmsr")) expect(m.data).toBe(plan.find((p) => p.index === m.index)!.value);

  plan.forEach((p, i) => {
    const what = `${p.name} (0x${p.index.toString(16)}) read ${p.read} write ${p.write}`;
    const v = (f: string) => r.value(`m${i}.${f}`);
    const vec = (f: string) => s64(r.value(`m${i}.${f}.vector`));
    // The guest's view.
    expect(vec("write"), what).toBe(p.write === "fail" ? GP : NONE);
    if (p.read === "fail") {
      expect([vec("before"), vec("after")], what).toEqual([GP, GP]);
    } else if (p.read === "reply") {
      expect([vec("before"), vec("after")], what).toEqual([NONE, NONE]);
      expect([v("before"), v("after")], what).toEqual(replies.get(p.index));
    } else {
      expect([vec("before"), vec("after")], what).toEqual([NONE, NONE]);
      // Native: a write KVM ran reads back; one the VMM took (accepted or not) never reached KVM.
      expect(v("after"), what).toBe(p.write === "allow" ? p.value : v("before"));
    }
    // The MSR's real state: written only when the write was allowed.
    if (p.write === "allow") expect(native.get(p.index), what).toBe(p.value);
    else expect(native.get(p.index), what).not.toBe(p.value);
    if (p.read === "allow") expect(native.get(p.index), what).toBe(v("after"));
  });
}

const summary = (plan: readonly Planned[]) => plan.map((p) => `${p.name}:${p.read}/${p.write}`).join(" ");

describe("@tsvmm/msr-io-bitmaps filters on /dev/kvm", () => {
  it("VMX MSR bitmap -> KVM filter: exactly the intercepted RDMSR/WRMSR exit, the guest sees the VMM's value or #GP", async () => {
    const plan = randomPlan();
    const bitmap = new VmxMsrBitmap();
    for (const p of plan) {
      if (p.read !== "allow") bitmap.intercept(p.index, "read");
      if (p.write !== "allow") bitmap.intercept(p.index, "write");
    }
    const filter = toKvmMsrFilter(bitmap);
    validateKvmMsrFilter(filter);
    for (const p of plan) {
      expect(bitmap.intercepts(p.index, "read")).toBe(p.read !== "allow");
      expect(bitmap.intercepts(p.index, "write")).toBe(p.write !== "allow");
    }
    const out = await runPlan(plan, filter);
    checkOutcome(out, plan);
    console.log(`vmx bitmap (${filter.ranges.length} KVM ranges, default ${filter.flags & KVM_MSR_FILTER_DEFAULT_DENY ? "deny" : "allow"}): ${out.r.msrs.length} exits; ${summary(plan)}`);
  });

  it("deny-by-default MsrPolicy -> KVM filter: only the allow-list runs natively", async () => {
    const plan = randomPlan();
    const allow: MsrListEntry[] = [];
    for (const p of plan) {
      const access = p.read === "allow" ? (p.write === "allow" ? "readwrite" : "read") : p.write === "allow" ? "write" : undefined;
      if (access !== undefined) allow.push({ msrs: p.index, access });
    }
    const policy = MsrPolicy.fromAllowList(allow);
    const filter = toKvmMsrFilter(policy);
    validateKvmMsrFilter(filter);
    expect(filter.flags & KVM_MSR_FILTER_DEFAULT_DENY).toBe(KVM_MSR_FILTER_DEFAULT_DENY);
    const out = await runPlan(plan, filter);
    checkOutcome(out, plan);
    console.log(`deny-by-default policy (${filter.ranges.length} KVM ranges): ${out.r.msrs.length} exits; ${summary(plan)}`);
  });
});
