import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cCheckSources, cLayoutChecks, KvmRunLayout, LayoutError, type StructLayout } from "@tsvmm/abi";
import { type Kvm, requireKvm, type Vm } from "@tsvmm/kvm-backend";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { KVM_CAP_SYNC_REGS, KVM_RUN_SYNC_REGS_OFFSET, KVM_SYNC_X86, KvmSyncRegsLayout } from "../src/vcpu.js";
import { assemble, closeTestVm, enterLongMode, openTestVm } from "./helpers.js";

const hasKvm = requireKvm();
const _view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);


describe.runIf(hasKvm)("vCPU state through the field codec on a real vCPU", () => {
  let kvm: Kvm;
  let vm: Vm;
  beforeEach(() => {
    ({ kvm, vm } = openTestVm());
  });
  afterEach(() => closeTestVm(kvm, vm));

  it("getSregs/getRegs return fresh objects; set then get gives back what was set", () => {
    const vcpu = vm.createVcpu(0);
    const a = vcpu.getSregs();
    const b = vcpu.getSregs();
    expect(a).toStrictEqual(b);
    expect(a).not.toBe(b);
    expect(a.cs).not.toBe(b.cs);
    a.cr2 = 0xdead0000n;
    a.gdt = { base: 0x12340000n, limit: 0x7f };
    a.fs = { ...a.fs, base: 0x7fff00001000n, selector: 0x2b };
    vcpu.setSregs(a);
    const c = vcpu.getSregs();
    expect([c.cr2, c.gdt, c.fs.base, c.fs.selector]).toEqual([0xdead0000n, { base: 0x12340000n, limit: 0x7f }, 0x7fff00001000n, 0x2b]);
    expect(b.cr2).not.toBe(0xdead0000n);

    const r = vcpu.getRegs();
    r.rax = 0xffffffffffffffffn;
    r.r15 = 0x8000000000000001n;
    r.rip = 0x1000n;
    vcpu.setRegs(r);
    const r2 = vcpu.getRegs();
    expect(r2).toStrictEqual(r);
    expect(r2).not.toBe(r);
  });

  it("a value the layout refuses is refused as before, and the vCPU is left as it was", () => {
    const vcpu = vm.createVcpu(0);
    const before = vcpu.getSregs();
    const s = structuredClone(before);
    s.cr4 = -1n;
    expect(() => vcpu.setSregs(s)).toThrow(LayoutError);
    expect(vcpu.getSregs()).toStrictEqual(before);
    const r = vcpu.getRegs();
    expect(() => vcpu.setRegs({ ...r, rip: 1n << 64n })).toThrow(LayoutError);
  });
});

describe("kvm_sync_regs against <linux/kvm.h>", () => {
  it("struct kvm_sync_regs, kvm_run.s and the KVM_SYNC_X86_* bits are the header's", () => {
    const checks = [
      ...cLayoutChecks(KvmSyncRegsLayout as StructLayout<unknown>),
      { key: "KVM_CAP_SYNC_REGS", expr: "KVM_CAP_SYNC_REGS", value: KVM_CAP_SYNC_REGS },
      { key: "kvm_run.s", expr: "offsetof(struct kvm_run, s)", value: KVM_RUN_SYNC_REGS_OFFSET },
      { key: "kvm_run.s.regs", expr: "offsetof(struct kvm_run, s.regs)", value: KVM_RUN_SYNC_REGS_OFFSET },
      ...Object.entries(KVM_SYNC_X86).map(([k, v]) => ({ key: `KVM_SYNC_X86_${k}`, expr: `KVM_SYNC_X86_${k}`, value: v })),
    ];
    const dir = mkdtempSync(join(tmpdir(), "tsvmm-sync-regs-"));
    try {
      const { values, main } = cCheckSources(["<linux/kvm.h>"], checks);
      writeFileSync(join(dir, "values.c"), values);
      writeFileSync(join(dir, "main.c"), main);
      execFileSync("cc", ["-o", join(dir, "prog"), join(dir, "values.c"), join(dir, "main.c")]);
      const got = new Map(
        execFileSync(join(dir, "prog"), { encoding: "utf8" })
          .trim()
          .split("\n")
          .map((l) => l.split("\t") as [string, string]),
      );
      for (const c of checks) expect([c.key, Number(got.get(c.key))]).toEqual([c.key, c.value]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.runIf(hasKvm)("KVM_CAP_SYNC_REGS: state read from kvm_run after an exit", () => {
  let kvm: Kvm;
  let vm: Vm;
  beforeEach(() => {
    ({ kvm, vm } = openTestVm());
  });
  afterEach(() => closeTestVm(kvm, vm));

  // A long-mode guest that loads distinct values and exits by OUT, then by HLT (again and again).
  const guest = assemble(
    [
      "mov rax, 0x1122334455667788",
      "mov rbx, 0x0123",
      "mov r15, 0xfedcba9876543210",
      "mov rsp, 0x9000",
      "mov dx, 0x3f8",
      "out dx, al",
      "add rbx, 7",
      "2: hlt",
      "jmp 2b",
    ].join("\n"),
    64,
    0x10000,
  );

  it("getRegs/getSregs after an exit equal what KVM_GET_REGS/KVM_GET_SREGS answer; a set or a run makes them ask KVM again", () => {
    const offered = kvm.checkExtension(KVM_CAP_SYNC_REGS);
    expect(offered & (KVM_SYNC_X86.REGS | KVM_SYNC_X86.SREGS), "this host offers KVM_CAP_SYNC_REGS").toBe(KVM_SYNC_X86.REGS | KVM_SYNC_X86.SREGS);
    const vcpu = vm.createVcpu(0);
    vm.memory.write(0x10000, guest);
    enterLongMode(vm, vcpu, 0x10000);
    expect(vcpu.enableSyncRegs()).toBe(KVM_SYNC_X86.REGS | KVM_SYNC_X86.SREGS);
    expect(vcpu.syncRegs).toBe(KVM_SYNC_X86.REGS | KVM_SYNC_X86.SREGS);

    const exit = vcpu.run();
    expect(exit.kind).toBe("io");
    const fromRun = { regs: vcpu.getRegs(), sregs: vcpu.getSregs() };
    expect([fromRun.regs.rax, fromRun.regs.rbx, fromRun.regs.r15]).toEqual([0x1122334455667788n, 0x123n, 0xfedcba9876543210n]);
    // Any other state ioctl makes the next reads ioctls: they must agree with the copy.
    vcpu.setMpState(vcpu.getMpState());
    const fromIoctl = { regs: vcpu.getRegs(), sregs: vcpu.getSregs() };
    expect(fromIoctl).toStrictEqual(fromRun);

    // An sregs change by ioctl is seen at once (the copy in kvm_run is stale until the next exit).
    vcpu.setSregs({ ...vcpu.getSregs(), cr2: 0xabc000n });
    expect(vcpu.getSregs().cr2).toBe(0xabc000n);

    expect(vcpu.run().kind).toBe("hlt");
    expect(vcpu.getRegs().rbx).toBe(0x12an);
    expect(vcpu.getSregs().cr2).toBe(0xabc000n);
    const again = vcpu.getRegs();
    vcpu.setMpState(vcpu.getMpState());
    expect(vcpu.getRegs()).toStrictEqual(again);

    // An interrupted KVM_RUN (immediate_exit) leaves a copy too.
    vcpu.kick();
    expect(vcpu.run().kind).toBe("interrupted");
    const copied = vcpu.getRegs();
    vcpu.setMpState(vcpu.getMpState());
    expect(vcpu.getRegs()).toStrictEqual(copied);

    expect(vcpu.enableSyncRegs(false)).toBe(0);
    expect(vcpu.syncRegs).toBe(0);
    expect(vcpu.run().kind).not.toBe("fail_entry");
  });

  it("setRegs after an exit goes through kvm_dirty_regs: read back at once, loaded by the next KVM_RUN, sent by ioctl before any other ioctl", () => {
    const vcpu = vm.createVcpu(0);
    vm.memory.write(0x10000, guest);
    enterLongMode(vm, vcpu, 0x10000);
    vcpu.enableSyncRegs();
    const dirty = () => vcpu.runBuffer.readBigUInt64LE(KvmRunLayout.offsetOf("kvmDirtyRegs"));
    expect(vcpu.run().kind).toBe("io");
    const r = vcpu.getRegs();
    vcpu.setRegs({ ...r, rbx: 0x7000n });
    expect(dirty()).toBe(BigInt(KVM_SYNC_X86.REGS));
    expect(vcpu.getRegs().rbx).toBe(0x7000n);
    // The guest adds 7 to what KVM loaded at entry.
    expect(vcpu.run().kind).toBe("hlt");
    expect(dirty()).toBe(0n);
    expect(vcpu.getRegs().rbx).toBe(0x7007n);

    // A waiting write reaches KVM before another ioctl, and an ioctl read agrees afterwards.
    vcpu.setRegs({ ...vcpu.getRegs(), r12: 0x1234n });
    vcpu.getMsrs([0x10]);
    expect(dirty()).toBe(0n);
    vcpu.setMpState(vcpu.getMpState());
    expect(vcpu.getRegs().r12).toBe(0x1234n);

    // A value the layout refuses: the same LayoutError, and the copy in kvm_run is left whole.
    expect(vcpu.run().kind).toBe("hlt");
    const whole = vcpu.getRegs();
    expect(() => vcpu.setRegs({ ...whole, rip: 1n << 64n })).toThrow(LayoutError);
    vcpu.setMpState(vcpu.getMpState());
    expect(vcpu.getRegs()).toStrictEqual(whole);

    // After an interrupted run the write goes by ioctl (KVM may not have entered).
    vcpu.kick();
    expect(vcpu.run().kind).toBe("interrupted");
    vcpu.setRegs({ ...vcpu.getRegs(), r13: 0x99n });
    expect(dirty()).toBe(0n);
    expect(vcpu.getRegs().r13).toBe(0x99n);
  });

  it("on the runner thread: a copy per exit, none while KVM_RUN is in flight", async () => {
    const vcpu = vm.createVcpu(0);
    vm.memory.write(0x10000, guest);
    enterLongMode(vm, vcpu, 0x10000);
    vcpu.enableSyncRegs();
    const seen: bigint[] = [];
    await vcpu.runEach((exit) => {
      seen.push(vcpu.getRegs().rbx);
      return exit.kind === "hlt";
    });
    expect(seen).toEqual([0x123n, 0x12an]);
    const last = vcpu.getRegs();
    vcpu.setMpState(vcpu.getMpState());
    expect(vcpu.getRegs()).toStrictEqual(last);
  });
});
