import { KVM_CAP, KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP, KVM_INTERNAL_ERROR } from "@tsvmm/abi";
import { type Kvm, requireKvm, type Vm } from "@tsvmm/kvm-backend";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { assemble, closeTestVm, enterLongMode, enterRealMode, openTestVm } from "./helpers.js";

const hasKvm = requireKvm();

describe.runIf(hasKvm)("vCPU state round trips and the rarer exits", () => {
  let kvm: Kvm;
  let vm: Vm;
  beforeEach(() => {
    ({ kvm, vm } = openTestVm());
  });
  afterEach(() => closeTestVm(kvm, vm));

  it("FPU, XCRs, XSAVE, debug registers and vCPU events survive set/get", () => {
    const vcpu = vm.createVcpu(0);
    // KVM allows the XCR0 bits the guest's CPUID leaf 0xD advertises: give the vCPU a CPUID first.
    vcpu.setCpuid2(kvm.supportedCpuid());
    const fpu = vcpu.getFpu();
    fpu.fcw = 0x27f;
    fpu.xmm.writeBigUInt64LE(0x0123456789abcdefn, 16);
    vcpu.setFpu(fpu);
    const f2 = vcpu.getFpu();
    expect([f2.fcw, f2.xmm.readBigUInt64LE(16)]).toEqual([0x27f, 0x0123456789abcdefn]);

    const xcr0 = vcpu.getXcrs().find((x) => x.xcr === 0)!;
    expect(xcr0.value & 1n).toBe(1n); // x87 is always enabled
    vcpu.setXcrs([{ xcr: 0, value: 3n }]); // x87 | SSE
    expect(vcpu.getXcrs().find((x) => x.xcr === 0)!.value).toBe(3n);

    // KVM_GET/SET_FPU never carry MXCSR (KVM copies x87 and XMM state only); XSAVE does.
    const xs = vcpu.getXsave();
    expect(xs.region.length).toBe(4096);
    expect(xs.region.readUInt32LE(24)).toBe(0x1f80); // MXCSR at reset
    xs.region.writeUInt32LE(0x1fa0, 24);
    // XSAVE format: state counts only where the header's XSTATE_BV (offset 512) marks it present.
    xs.region.writeBigUInt64LE(xs.region.readBigUInt64LE(512) | 0x2n, 512); // SSE (MXCSR, XMM)
    vcpu.setXsave(xs);
    expect(vcpu.getXsave().region.readUInt32LE(24)).toBe(0x1fa0);
    const f3 = vcpu.getFpu();
    f3.mxcsr = 0x1f00;
    vcpu.setFpu(f3);
    expect(vcpu.getXsave().region.readUInt32LE(24)).toBe(0x1fa0);

    const dr = vcpu.getDebugRegs();
    dr.db = [0x1000n, 0x2000n, 0x3000n, 0x4000n];
    dr.dr7 = 0x400n | 0x3n; // L0|G0
    vcpu.setDebugRegs(dr);
    const d2 = vcpu.getDebugRegs();
    expect([d2.db, d2.dr7 & 0xffn]).toEqual([[0x1000n, 0x2000n, 0x3000n, 0x4000n], 0x3n]);

    const ev = vcpu.getVcpuEvents();
    ev.nmi.masked = 1;
    ev.flags = 0;
    vcpu.setVcpuEvents(ev);
    expect(vcpu.getVcpuEvents().nmi.masked).toBe(1);
  });

  it("single-stepping gives one debug exit per instruction, with the next RIP", () => {
    vm.memory.write(0x1000, assemble("nop\n nop\n inc ax\n hlt", 16));
    const vcpu = vm.createVcpu(0);
    enterRealMode(vcpu, 0x1000);
    vcpu.setGuestDebug(KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP);
    const pcs: bigint[] = [];
    for (let i = 0; i < 3; i++) {
      const e = vcpu.run();
      expect(e.kind).toBe("debug");
      if (e.kind === "debug") {
        expect(e.exception).toBe(1);
        pcs.push(e.pc);
      }
    }
    expect(pcs).toEqual([0x1001n, 0x1002n, 0x1003n]); // nop, nop, inc ax (one byte in 16-bit code)
    vcpu.setGuestDebug(0);
    expect(vcpu.run().kind).toBe("hlt");
  });

  it("without an irqchip: request an interrupt window, then inject with KVM_INTERRUPT", () => {
    // IVT[0x20] -> handler that reports and halts.
    vm.memory.writeU16(0x20 * 4, 0x1800);
    vm.memory.writeU16(0x20 * 4 + 2, 0);
    vm.memory.write(0x1800, assemble("mov al, 0x20\n out 0x40, al\n hlt", 16));
    vm.memory.write(0x1000, assemble("cli\n mov cx, 50\n1: loop 1b\n sti\n2: jmp 2b", 16));
    const vcpu = vm.createVcpu(0);
    enterRealMode(vcpu, 0x1000);
    vcpu.requestInterruptWindow = true;
    let e = vcpu.run();
    expect(e.kind).toBe("irq_window_open");
    expect(vcpu.readyForInterruptInjection).toBe(true);
    expect(vcpu.ifFlag).toBe(true);
    vcpu.requestInterruptWindow = false;
    vcpu.interrupt(0x20);
    e = vcpu.run();
    expect(e.kind === "io" && e.port === 0x40 && e.value === 0x20).toBe(true);
  });

  it("an instruction KVM cannot emulate here is an internal_error exit with its bytes, not a crash", () => {
    // int3 at CPL0 is not emulated on this host (shared/kvm-on-this-machine.md).
    vm.memory.write(0x10000, assemble("int3\n hlt", 64));
    const vcpu = vm.createVcpu(0);
    enterLongMode(vm, vcpu, 0x10000);
    const e = vcpu.run();
    expect(e.kind).toBe("internal_error");
    if (e.kind === "internal_error") {
      expect(e.suberror).toBe(KVM_INTERNAL_ERROR.EMULATION);
      expect(e.instructionBytes?.[0]).toBe(0xcc);
    }
  });

  it("split irqchip: LAPICs in the kernel, IRQ routing left to userspace", () => {
    expect(vm.checkExtension(KVM_CAP.SPLIT_IRQCHIP)).toBeGreaterThan(0);
    vm.createSplitIrqchip(24);
    // With a split irqchip there is no in-kernel PIC/IOAPIC to read...
    expect(() => vm.getIrqchip(2)).toThrowError(expect.objectContaining({ code: "KVM_IOCTL_FAILED", ioctl: "KVM_GET_IRQCHIP" }));
    // ...but the vCPU has its in-kernel LAPIC.
    const vcpu = vm.createVcpu(0);
    expect(vcpu.getLapic().regs.readUInt32LE(0x30) & 0xff).toBeGreaterThan(0x10); // LAPIC version register
  });

  it("manual dirty-log protection: get, clear a range, and only new writes show", () => {
    vm.enableCap(KVM_CAP.MANUAL_DIRTY_LOG_PROTECT2, [1n]);
    vm.addMemory({ slot: 1, guestPhysAddr: 0x100000, size: 0x40000, logDirty: true });
    vm.memory.write(0x1000, assemble("mov ax, 0xffff\n mov es, ax\n mov byte ptr es:[0x10], 1\n mov byte ptr es:[0x3010], 1\n hlt\n mov byte ptr es:[0x5010], 1\n hlt", 16));
    const vcpu = vm.createVcpu(0);
    enterRealMode(vcpu, 0x1000);
    expect(vcpu.run().kind).toBe("hlt");
    // With manual protection, pages start out dirty until cleared once.
    const all = Buffer.alloc(8, 0xff);
    vm.clearDirtyLog(1, 0, 64, all);
    vm.getDirtyLog(1);
    vm.clearDirtyLog(1, 0, 64, all);
    expect(vcpu.run().kind).toBe("hlt");
    expect(vm.dirtyPages(1)).toEqual([5]);
  });
});
