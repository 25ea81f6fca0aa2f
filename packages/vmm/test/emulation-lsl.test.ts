import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { requireKvm } from "@tsvmm/kvm-backend";
import { VmmBuilder } from "@tsvmm/vmm";
import { beforeAll, describe, expect, it } from "vitest";

// LSL/LAR at CPL0 on a real vCPU (test-kernels/tests/emulate-lsl.c): KVM stops on them here, the
// emulator reads the guest's own GDT through KvmCpu (GDTR from KVM's sregs, memory through the
// guest's page tables). The expected values come from the descriptors the guest writes.

const root = join(__dirname, "..", "..", "..");
const guest = (name: string) => join(root, "test-kernels", "out", `${name}.elf`);

beforeAll(() => {
  execFileSync("flock", ["/tmp/tsvmm-test-kernels.lock", "make", "-s", "-C", join(root, "test-kernels")]);
});

async function run(emulate: boolean) {
  const values = new Map<string, bigint>();
  const b = new VmmBuilder()
    .kernelFile(guest("emulate-lsl"))
    .memoryMiB(16)
    .onValue((name, value) => {
      values.set(name, value);
    });
  if (emulate) b.emulate();
  const vmm = b.build();
  return { r: await vmm.run(), values, stats: vmm.emulationStats };
}

describe.runIf(requireKvm())("LSL and LAR at CPL0", () => {
  it("stop the guest without emulation; with it, Linux's CPUNODE lookup, a selector past the GDT and LAR of a data segment", async () => {
    const without = await run(false);
    expect(without.r.reason).toBe("guest-error");
    expect(without.r.message).toMatch(/internal error/);

    const { r, values, stats } = await run(true);
    expect(r).toMatchObject({ reason: "guest-exit", exitCode: 0 });
    expect([values.get("lsl.cpunode"), values.get("lsl.cpunode.zf")]).toEqual([0x3005n, 1n]);
    // Past the 16-entry GDT: ZF clear, the register keeps its value.
    expect([values.get("lsl.past-limit"), values.get("lsl.past-limit.zf")]).toEqual([0x1122334455667788n, 0n]);
    // The lib's 0x10: 0x00cf93000000ffff -> high dword 0x00cf9300 & 0x00ffff00.
    expect([values.get("lar.data"), values.get("lar.data.zf")]).toEqual([0x00cf9300n, 1n]);
    expect(stats.toRecord()).toMatchObject({ lsl: 2, lar: 1 });
  }, 60_000);
});
