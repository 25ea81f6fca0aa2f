// vmcs-check-throughput: full checkVmEntry on valid long-mode states (VMCS/s). No C baseline.
import { loadavg } from "node:os";
import { checkVmEntry, PROFILES, validVmcsTemplate } from "@tsvmm/vmcs";
import { median, result } from "../lib.mjs";

const ROUNDS = 9;
/** Calls per round: ~0.1 s at the goal, long enough that one scheduler hiccup does not decide a round. */
const N = 100_000;

export default async function () {
  const caps = PROFILES["intel-core-i7-5600u"];
  const states = [];
  for (let i = 0; i < 64; i++) {
    const s = validVmcsTemplate(caps, "long");
    s.set("GUEST_RIP", 0x100000n + BigInt(i) * 16n);
    s.set("GUEST_RSP", 0x8000n + BigInt(i) * 8n);
    states.push(s);
  }
  for (const s of states) if (checkVmEntry(s, caps).length) throw new Error("bench state is not valid");
  // Warm-up: the first calls run before the JIT has optimised the checks.
  for (let i = 0; i < N; i++) checkVmEntry(states[i & 63], caps);
  const rates = [];
  const load = [loadavg()[0]];
  for (let round = 0; round < ROUNDS; round++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < N; i++) checkVmEntry(states[i & 63], caps);
    const dt = Number(process.hrtime.bigint() - t0) / 1e9;
    rates.push(N / dt);
  }
  load.push(loadavg()[0]);
  return [
    result("vmcs-check-throughput", median(rates), "VMCS/s", null, {
      goal: ">= 1e6 VMCS/s in one thread",
      roundsVmcsPerS: rates.map((r) => Math.round(r)),
      loadavg1: load.map((x) => Number(x.toFixed(2))),
    }),
  ];
}
