// vmcs-check-throughput: full checkVmEntry on valid long-mode states (VMCS/s). No C baseline.
import { checkVmEntry, PROFILES, validVmcsTemplate } from "@tsvmm/vmcs";
import { median, result } from "../lib.mjs";

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
  const rates = [];
  for (let round = 0; round < 7; round++) {
    const n = 20000;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) checkVmEntry(states[i & 63], caps);
    const dt = Number(process.hrtime.bigint() - t0) / 1e9;
    rates.push(n / dt);
  }
  return [result("vmcs-check-throughput", median(rates), "VMCS/s", null, { goal: ">= 1e6 VMCS/s in one thread" })];
}
