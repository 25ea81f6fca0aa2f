import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as K from "@tsvmm/abi";
import {
  ALL_RUN_EXITS, ALL_STRUCTS, KVM_API_VERSION, KVM_CAP, KVM_EXIT, KVM_INTERNAL_ERROR, KVM_IOCTLS, KVM_IRQ_ROUTING,
  KVM_MP_STATE, KVM_MSR_EXIT_REASON, KVM_SYSTEM_EVENT, KvmRunLayout,
} from "@tsvmm/abi";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// Compiles a C program against this machine's <linux/kvm.h> that prints the size of every struct,
// the offset of every field and the value of every ioctl and constant abi declares. The program
// is generated from abi's own layouts, so a field added to a layout is checked automatically.

type Check = { key: string; expr: string; ts: number };
const checks: Check[] = [];

for (const s of [...ALL_STRUCTS, KvmRunLayout]) {
  checks.push({ key: `sizeof ${s.cType}`, expr: `sizeof(${s.cType})`, ts: s.size });
  for (const f of s.fields()) {
    checks.push({ key: `${s.cType}.${f.path}`, expr: `offsetof(${s.cType}, ${f.c})`, ts: f.offset });
  }
}
for (const e of ALL_RUN_EXITS) {
  for (const f of e.fields()) {
    checks.push({
      key: `kvm_run.${e.member}.${f.path}`,
      expr: `(offsetof(struct kvm_run, ${e.member}.${f.c}) - offsetof(struct kvm_run, ${e.member}))`,
      ts: f.offset,
    });
  }
  checks.push({ key: `kvm_run.${e.member}`, expr: `offsetof(struct kvm_run, ${e.member})`, ts: K.KVM_RUN_EXIT_OFFSET });
}
// The coalesced ring's entries start right after its head (a flexible array member).
checks.push({ key: "kvm_coalesced_mmio_ring.coalesced_mmio", expr: "offsetof(struct kvm_coalesced_mmio_ring, coalesced_mmio)", ts: K.KvmCoalescedMmioRingLayout.size });
for (const [name, v] of Object.entries(KVM_IOCTLS)) checks.push({ key: name, expr: `(unsigned long)${name}`, ts: v });
const prefixed = (prefix: string, o: Record<string, number>): void => {
  for (const [k, v] of Object.entries(o)) checks.push({ key: `${prefix}${k}`, expr: `(long)${prefix}${k}`, ts: v });
};
prefixed("KVM_EXIT_", KVM_EXIT);
prefixed("KVM_CAP_", KVM_CAP);
prefixed("KVM_INTERNAL_ERROR_", KVM_INTERNAL_ERROR);
prefixed("KVM_SYSTEM_EVENT_", KVM_SYSTEM_EVENT);
prefixed("KVM_MSR_EXIT_REASON_", KVM_MSR_EXIT_REASON);
prefixed("KVM_MP_STATE_", KVM_MP_STATE);
prefixed("KVM_IRQ_ROUTING_", KVM_IRQ_ROUTING);
for (const name of [
  "KVM_API_VERSION", "KVM_EXIT_IO_IN", "KVM_EXIT_IO_OUT", "KVM_MEM_LOG_DIRTY_PAGES", "KVM_MEM_READONLY",
  "KVM_MSR_FILTER_READ", "KVM_MSR_FILTER_WRITE", "KVM_MSR_FILTER_DEFAULT_ALLOW", "KVM_MSR_FILTER_DEFAULT_DENY",
  "KVM_MSR_FILTER_MAX_RANGES", "KVM_IRQCHIP_PIC_MASTER", "KVM_IRQCHIP_PIC_SLAVE", "KVM_IRQCHIP_IOAPIC",
  "KVM_GUESTDBG_ENABLE", "KVM_GUESTDBG_SINGLESTEP", "KVM_GUESTDBG_USE_SW_BP", "KVM_GUESTDBG_USE_HW_BP",
  "KVM_GUESTDBG_INJECT_DB", "KVM_GUESTDBG_INJECT_BP", "KVM_IOEVENTFD_FLAG_DATAMATCH", "KVM_IOEVENTFD_FLAG_PIO",
  "KVM_IOEVENTFD_FLAG_DEASSIGN", "KVM_IRQFD_FLAG_DEASSIGN", "KVM_IRQFD_FLAG_RESAMPLE",
  "KVM_CPUID_FLAG_SIGNIFCANT_INDEX", "KVM_NR_INTERRUPTS", "KVM_MAX_XCRS", "KVM_APIC_REG_SIZE", "KVM_PIT_SPEAKER_DUMMY",
  "KVM_PIT_FLAGS_HPET_LEGACY", "KVM_PIT_FLAGS_SPEAKER_DATA_ON", "KVM_RUN_X86_SMM", "KVM_RUN_X86_BUS_LOCK",
  "KVM_CLOCK_TSC_STABLE", "KVM_CLOCK_REALTIME", "KVM_CLOCK_HOST_TSC", "KVM_MSI_VALID_DEVID", "KVM_DIRTY_GFN_F_DIRTY",
  "KVM_DIRTY_GFN_F_RESET", "KVM_DIRTY_GFN_F_MASK", "KVM_DIRTY_LOG_PAGE_OFFSET", "KVM_IOAPIC_NUM_PINS",
  "KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES",
] as const) {
  checks.push({ key: name, expr: `(long)${name}`, ts: (K as unknown as Record<string, number>)[name]! });
}

let dir = "";
let fromC = new Map<string, number>();

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "tsvmm-abi-"));
  const lines = checks.map((c) => `  printf("%s\\t%lu\\n", ${JSON.stringify(c.key)}, (unsigned long)(${c.expr}));`);
  const src = `#include <stddef.h>\n#include <stdio.h>\n#include <linux/kvm.h>\nint main(void) {\n${lines.join("\n")}\n  return 0;\n}\n`;
  writeFileSync(join(dir, "kvm-abi.c"), src);
  execFileSync("cc", ["-o", join(dir, "kvm-abi"), join(dir, "kvm-abi.c")], { stdio: "pipe" });
  const out = execFileSync(join(dir, "kvm-abi"), { encoding: "utf8" });
  fromC = new Map(
    out
      .trim()
      .split("\n")
      .map((l) => {
        const [k, v] = l.split("\t");
        return [k!, Number(v)] as [string, number];
      }),
  );
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("abi against this machine's <linux/kvm.h>", () => {
  it("checks a meaningful number of facts", () => {
    expect(checks.length).toBeGreaterThan(400);
    expect(fromC.size).toBe(new Set(checks.map((c) => c.key)).size);
  });
  it("every struct size, field offset, ioctl number and constant matches the C compiler's", () => {
    const mismatches = checks.filter((c) => fromC.get(c.key) !== c.ts).map((c) => `${c.key}: ts=${c.ts} c=${fromC.get(c.key)}`);
    expect(mismatches).toEqual([]);
  });
  it("KVM_API_VERSION is 12", () => {
    expect(KVM_API_VERSION).toBe(12);
  });
});
