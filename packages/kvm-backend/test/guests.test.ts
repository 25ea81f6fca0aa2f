import { KVM_CAP, KVM_MSR_EXIT_REASON, KVM_MSR_FILTER_DEFAULT_ALLOW, KVM_MSR_FILTER_READ, KVM_MSR_FILTER_WRITE } from "@tsvmm/abi";
import { type IoExit, type Kvm, requireKvm, runLoop, type Vm } from "@tsvmm/kvm-backend";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { assemble, closeTestVm, enableLapic, enterLongMode, enterRealMode, openTestVm, routeIoapicPin } from "./helpers.js";

const hasKvm = requireKvm();

describe.runIf(hasKvm)("real guests on /dev/kvm", () => {
  let kvm: Kvm;
  let vm: Vm;
  beforeEach(() => {
    ({ kvm, vm } = openTestVm());
  });
  afterEach(() => closeTestVm(kvm, vm));

  it("runs real-mode code: OUT carries its data, HLT exits", () => {
    vm.memory.write(0x1000, assemble("mov al, 0x42\n out 0x10, al\n mov ax, 0x1234\n out 0x11, ax\n mov eax, 0xdeadbeef\n out 0x12, eax\n hlt", 16));
    const vcpu = vm.createVcpu(0);
    enterRealMode(vcpu, 0x1000);
    const seen: Array<[number, number, number]> = [];
    const { exit } = runLoop(vcpu, { io: (e) => void seen.push([e.port, e.size, e.value]) });
    expect(seen).toEqual([[0x10, 1, 0x42], [0x11, 2, 0x1234], [0x12, 4, 0xdeadbeef]]);
    expect(exit?.kind).toBe("hlt");
  });

  it("answers IN with data the VMM supplies", () => {
    vm.memory.write(0x1000, assemble("in al, 0x20\n add al, 1\n out 0x21, al\n mov dx, 0x3f8\n in eax, dx\n out 0x22, eax\n hlt", 16));
    const vcpu = vm.createVcpu(0);
    enterRealMode(vcpu, 0x1000);
    const outs: number[] = [];
    runLoop(vcpu, {
      io: (e) => {
        if (e.direction === "in") e.setValue(e.port === 0x20 ? 0x41 : 0xcafef00d);
        else outs.push(e.value);
      },
    });
    expect(outs).toEqual([0x42, 0xcafef00d]);
  });

  it("runs 64-bit long mode on identity page tables", () => {
    vm.memory.write(0x10000, assemble("mov rax, 0x1122334455667788\n mov [0x20000], rax\n mov eax, [0x20004]\n out 0x30, eax\n hlt", 64));
    const vcpu = vm.createVcpu(0);
    enterLongMode(vm, vcpu, 0x10000);
    const outs: number[] = [];
    const { exit } = runLoop(vcpu, { io: (e) => void outs.push(e.value) });
    expect(exit?.kind).toBe("hlt");
    expect(outs).toEqual([0x11223344]);
    expect(vm.memory.readU64(0x20000)).toBe(0x1122334455667788n);
    expect(vcpu.getSregs().efer & 0x400n).toBe(0x400n);
  });

  it("MMIO to an unmapped hole exits with address, size and data both ways", () => {
    // ES = 0x3000 -> linear 0x30000, beyond the 1 MiB slot? No: place the hole above the slot.
    vm.removeMemory(0);
    vm.addMemory({ slot: 0, guestPhysAddr: 0, size: 0x20000 });
    vm.memory.write(0x1000, assemble("mov ax, 0x3000\n mov es, ax\n mov eax, es:[0x10]\n out 0x40, eax\n mov word ptr es:[0x24], 0xbeef\n hlt", 16));
    const vcpu = vm.createVcpu(0);
    enterRealMode(vcpu, 0x1000);
    const mmio: Array<{ address: bigint; length: number; isWrite: boolean; value: bigint }> = [];
    const outs: number[] = [];
    runLoop(vcpu, {
      mmio: (e) => {
        if (!e.isWrite) e.setValue(0x89abcdefn);
        mmio.push({ address: e.address, length: e.length, isWrite: e.isWrite, value: e.value });
      },
      io: (e) => void outs.push(e.value),
    });
    expect(mmio).toEqual([
      { address: 0x30010n, length: 4, isWrite: false, value: 0x89abcdefn },
      { address: 0x30024n, length: 2, isWrite: true, value: 0xbeefn },
    ]);
    expect(outs).toEqual([0x89abcdef]);
  });

  it("a write to a read-only slot exits as MMIO and leaves memory unchanged", () => {
    vm.addMemory({ slot: 1, guestPhysAddr: 0x100000, size: 0x1000, readonly: true });
    // KVM reads guest memory through our mapping: the VMM may write a read-only slot.
    vm.memory.writeU32(0x100000, 0x5a5a5a5a);
    vm.memory.write(0x1000, assemble("mov ax, 0xffff\n mov es, ax\n mov dword ptr es:[0x10], 0x11111111\n mov eax, es:[0x10]\n out 0x50, eax\n hlt", 16));
    const vcpu = vm.createVcpu(0);
    enterRealMode(vcpu, 0x1000);
    const writes: bigint[] = [];
    const outs: number[] = [];
    runLoop(vcpu, { mmio: (e) => void writes.push(e.isWrite ? e.address : -1n), io: (e) => void outs.push(e.value) });
    expect(writes).toEqual([0x100000n]);
    expect(outs).toEqual([0x5a5a5a5a]);
    expect(vm.memory.readU32(0x100000)).toBe(0x5a5a5a5a);
  });

  it("a triple fault ends in a shutdown exit", () => {
    // #UD with an empty IDT -> #GP -> #DF -> triple fault. (In real mode this host's emulator ends
    // in an internal error instead, after ~40 s: see shared/kvm-on-this-machine.md.)
    vm.memory.write(0x10000, assemble("lidt [0x20000]\n ud2", 64));
    vm.memory.fill(0x20000, 10, 0);
    const vcpu = vm.createVcpu(0);
    enterLongMode(vm, vcpu, 0x10000);
    expect(vcpu.run().kind).toBe("shutdown");
  });

  it("RDMSR/WRMSR in a filtered range exit to the VMM, whose reply the guest sees", () => {
    expect(kvm.checkExtension("X86_USER_SPACE_MSR")).toBeGreaterThan(0);
    vm.enableUserSpaceMsr(KVM_MSR_EXIT_REASON.FILTER);
    // Deny reads and writes of IA32_TSC_AUX (0xc0000103) only: a 1-bit range whose bit is 0.
    vm.setMsrFilter({
      flags: KVM_MSR_FILTER_DEFAULT_ALLOW,
      ranges: [{ flags: KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE, base: 0xc0000103, nmsrs: 1, bitmap: Buffer.alloc(8) }],
    });
    // IVT[13] (#GP) -> handler at 0x1800 that reports 0xd and halts.
    vm.memory.writeU16(13 * 4, 0x1800);
    vm.memory.writeU16(13 * 4 + 2, 0);
    vm.memory.write(0x1800, assemble("mov al, 0xd\n out 0x61, al\n hlt", 16));
    vm.memory.write(0x1000, assemble("mov ecx, 0xc0000103\n rdmsr\n out 0x60, eax\n mov eax, 7\n xor edx, edx\n wrmsr\n mov al, 0xee\n out 0x61, al\n hlt", 16));
    const vcpu = vm.createVcpu(0);
    enterRealMode(vcpu, 0x1000);
    const events: string[] = [];
    runLoop(vcpu, {
      rdmsr: (e) => {
        events.push(`rdmsr 0x${e.index.toString(16)}`);
        e.reply(0x12345678n);
      },
      wrmsr: (e) => {
        events.push(`wrmsr 0x${e.index.toString(16)}=${e.data}`);
        e.fail();
      },
      io: (e) => void events.push(`out 0x${e.port.toString(16)}=0x${e.value.toString(16)}`),
    });
    expect(events).toEqual(["rdmsr 0xc0000103", "out 0x60=0x12345678", "wrmsr 0xc0000103=7", "out 0x61=0xd"]);
  });

  it("the dirty log shows exactly the pages the guest wrote", () => {
    vm.addMemory({ slot: 1, guestPhysAddr: 0x100000, size: 0x10000, logDirty: true });
    expect(vm.dirtyPages(1)).toEqual([]);
    // 0xffff:0x10 = 0x100000; pages 0, 2 and 5 of the slot, plus a read of page 7.
    vm.memory.write(0x1000, assemble("mov ax, 0xffff\n mov es, ax\n mov byte ptr es:[0x10], 1\n mov byte ptr es:[0x2010], 1\n mov byte ptr es:[0x5ff0], 1\n mov al, es:[0x7010]\n hlt", 16));
    const vcpu = vm.createVcpu(0);
    enterRealMode(vcpu, 0x1000);
    expect(vcpu.run().kind).toBe("hlt");
    expect(vm.dirtyPages(1)).toEqual([0, 2, 5]);
    expect(vm.dirtyPages(1)).toEqual([]);
  });

  it("an IRQ raised through the in-kernel irqchip reaches the guest's handler", async () => {
    vm.createIrqchip();
    routeIoapicPin(vm, 4, 0x40);
    // IVT[0x40] -> handler at 0x1800: report and return.
    vm.memory.writeU16(0x40 * 4, 0x1800);
    vm.memory.writeU16(0x40 * 4 + 2, 0);
    vm.memory.write(0x1800, assemble("push ax\n mov al, 0x40\n out 0x70, al\n pop ax\n iret", 16));
    vm.memory.write(0x1000, assemble("sti\n hlt\n mov al, 0xdd\n out 0x71, al\n cli\n hlt", 16));
    const vcpu = vm.createVcpu(0);
    enableLapic(vcpu);
    enterRealMode(vcpu, 0x1000);
    const outs: string[] = [];
    const running = (async () => {
      for (;;) {
        const e = await vcpu.runAsync();
        if (e.kind !== "io") return e.kind;
        outs.push(`0x${e.port.toString(16)}=0x${e.value.toString(16)}`);
        if (e.port === 0x71) return "done";
      }
    })();
    // HLT with an in-kernel irqchip is handled inside KVM: the vCPU sleeps in KVM_RUN.
    await new Promise((r) => setTimeout(r, 50));
    expect(outs).toEqual([]);
    vm.irqLine(4, 1);
    vm.irqLine(4, 0);
    expect(await running).toBe("done");
    expect(outs).toEqual(["0x70=0x40", "0x71=0xdd"]);
  });

  it("two vCPUs of one VM run at once on their own threads", async () => {
    vm.createIrqchip();
    // Each vCPU spins until the other has written its flag, so neither can finish alone.
    vm.memory.write(0x1000, assemble("mov byte ptr [0x3000], 1\n1: cmp byte ptr [0x3001], 1\n jne 1b\n mov al, 0xa0\n out 0x80, al\n hlt", 16));
    vm.memory.write(0x2000, assemble("mov byte ptr [0x3001], 1\n1: cmp byte ptr [0x3000], 1\n jne 1b\n mov al, 0xa1\n out 0x80, al\n hlt", 16));
    const a = vm.createVcpu(0);
    const b = vm.createVcpu(1);
    enterRealMode(a, 0x1000);
    enterRealMode(b, 0x2000);
    b.setMpState(0); // KVM_MP_STATE_RUNNABLE: secondaries start UNINITIALIZED
    const [ea, eb] = await Promise.all([a.runAsync(), b.runAsync()]);
    expect([ea.kind, eb.kind]).toEqual(["io", "io"]);
    expect([(ea as IoExit).value, (eb as IoExit).value]).toEqual([0xa0, 0xa1]);
  });

  it("kick() stops a vCPU spinning in the guest", async () => {
    vm.memory.write(0x1000, assemble("1: jmp 1b", 16));
    const vcpu = vm.createVcpu(0);
    enterRealMode(vcpu, 0x1000);
    const p = vcpu.runAsync();
    await new Promise((r) => setTimeout(r, 20));
    expect(vcpu.running).toBe(true);
    vcpu.kick();
    const e = await p;
    expect(e.kind).toBe("interrupted");
    // immediate_exit is cleared: the vCPU can run again and is stopped again.
    const p2 = vcpu.runAsync();
    setTimeout(() => vcpu.kick(), 10);
    expect((await p2).kind).toBe("interrupted");
  });

  it("VM capability queries answer", () => {
    expect(kvm.apiVersion()).toBe(12);
    expect(kvm.checkExtension(KVM_CAP.USER_MEMORY)).toBeGreaterThan(0);
    expect(vm.checkExtension(KVM_CAP.NR_MEMSLOTS)).toBeGreaterThan(0);
    const cpuid = kvm.supportedCpuid();
    expect(cpuid.find((e) => e.function === 0)?.eax).toBeGreaterThan(0);
    expect(kvm.msrIndexList()).toContain(0x10);
  });
});


