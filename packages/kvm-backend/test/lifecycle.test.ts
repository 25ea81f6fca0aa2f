import { readdirSync, readFileSync } from "node:fs";
import { Kvm, KvmError, requireKvm, type Vm } from "@tsvmm/kvm-backend";
import { describe, expect, it } from "vitest";
import { assemble, enterRealMode } from "./helpers.js";

const hasKvm = requireKvm();
const openFds = (): number => readdirSync("/proc/self/fd").length;
const mapCount = (): number => readFileSync("/proc/self/maps", "utf8").trimEnd().split("\n").length;

describe.runIf(hasKvm)("lifecycle", () => {
  it("creates and destroys 1000 VMs whose guests touch their memory: fds, mappings and RSS return to where they were", () => {
    const kvm = Kvm.open();
    // The guest writes one byte to each of PAGES pages (0x10000 upwards), so each VM has at least
    // PAGES pages resident while it lives; then it reports and halts.
    const PAGES = 128;
    const code = assemble(`mov ax, 0x1000\n mov cx, ${PAGES}\n1: mov es, ax\n mov byte ptr es:[0], 1\n add ax, 0x100\n loop 1b\n mov al, 1\n out 0x10, al\n hlt`, 16);
    const open = (): Vm => {
      const vm = kvm.createVm();
      vm.addMemory({ slot: 0, guestPhysAddr: 0, size: 2 << 20 });
      vm.memory.write(0x1000, code);
      const vcpu = vm.createVcpu(0);
      enterRealMode(vcpu, 0x1000);
      expect(vcpu.run().kind).toBe("io");
      expect(vcpu.run().kind).toBe("hlt");
      return vm;
    };
    const state = (): { fds: number; maps: number; rss: number } => {
      globalThis.gc?.();
      return { fds: openFds(), maps: mapCount(), rss: process.memoryUsage().rss };
    };
    for (let i = 0; i < 50; i++) open().close(); // warm up allocators and JIT
    const s0 = state();

    // The control: while LIVE guests are alive, their touched pages and mappings are really there,
    // so the bounds below measure something that a leak would break.
    const LIVE = 50;
    const live = Array.from({ length: LIVE }, open);
    const s1 = state();
    for (const vm of live) vm.close();
    expect(s1.fds - s0.fds).toBeGreaterThanOrEqual(LIVE * 2); // VM fd + vCPU fd each
    expect(s1.maps - s0.maps).toBeGreaterThanOrEqual(LIVE); // at least the kvm_run page each
    expect(s1.rss - s0.rss).toBeGreaterThanOrEqual(LIVE * PAGES * 4096 * 0.9);

    for (let i = 0; i < 1000; i++) open().close();
    const s2 = state();
    kvm.close();
    console.log(`1000 VMs: ${LIVE} live VMs held +${((s1.rss - s0.rss) / 2 ** 20).toFixed(1)} MiB, +${s1.maps - s0.maps} mappings; after 1000 more: RSS ${((s2.rss - s0.rss) / 2 ** 20).toFixed(1)} MiB, mappings ${s2.maps - s0.maps}, fds ${s2.fds - s0.fds}`);
    expect(s2.fds).toBe(s0.fds);
    // One leaked mapping per VM would be +1000; allocator and JIT churn stay in single digits.
    expect(s2.maps - s0.maps).toBeLessThan(20);
    // Leaking the touched pages would be 1000 x 512 KiB = 500 MiB; an eighth of that fails too.
    expect(s2.rss - s0.rss).toBeLessThan((1000 * PAGES * 4096) / 8);
  }, 120_000);

  it("close() is idempotent and closed objects throw KVM_CLOSED", () => {
    const kvm = Kvm.open();
    const vm = kvm.createVm();
    const vcpu = vm.createVcpu(0);
    vm.close();
    vm.close();
    expect(vcpu.closed).toBe(true);
    expect(() => vcpu.getRegs()).toThrowError(expect.objectContaining({ code: "KVM_CLOSED" }));
    expect(() => vm.createVcpu(1)).toThrowError(expect.objectContaining({ code: "KVM_CLOSED" }));
    kvm.close();
    expect(() => kvm.createVm()).toThrowError(expect.objectContaining({ code: "KVM_CLOSED" }));
  });

  it("a closed VM's memory Buffers become empty instead of dangling", () => {
    const kvm = Kvm.open();
    const vm = kvm.createVm();
    const slot = vm.addMemory({ slot: 0, guestPhysAddr: 0, size: 0x10000 });
    const view = slot.buffer;
    view[0] = 1;
    vm.close();
    kvm.close();
    expect(view.length).toBe(0);
    expect(view[0]).toBeUndefined();
  });

  it("using Symbol.dispose releases everything", () => {
    const fds0 = openFds();
    {
      using kvm = Kvm.open();
      using vm = kvm.createVm();
      vm.addMemory({ slot: 0, guestPhysAddr: 0, size: 0x10000 });
      using _vcpu = vm.createVcpu(0);
      expect(openFds()).toBe(fds0 + 3);
    }
    expect(openFds()).toBe(fds0);
  });

  it("closing a vCPU that runs on its thread stops it and rejects the pending run", async () => {
    const kvm = Kvm.open();
    const vm = kvm.createVm();
    vm.addMemory({ slot: 0, guestPhysAddr: 0, size: 0x10000 });
    vm.memory.write(0x1000, assemble("1: jmp 1b", 16));
    const vcpu = vm.createVcpu(0);
    enterRealMode(vcpu, 0x1000);
    const p = vcpu.runAsync();
    await new Promise((r) => setTimeout(r, 10));
    vm.close();
    await expect(p).rejects.toMatchObject({ code: "KVM_CLOSED" });
    kvm.close();
  });
});

describe.runIf(hasKvm)("errors", () => {
  it("a missing device is KVM_NOT_FOUND with the errno name", () => {
    try {
      Kvm.open("/dev/does-not-exist-kvm");
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(KvmError);
      expect(e).toMatchObject({ code: "KVM_NOT_FOUND", errnoName: "ENOENT" });
    }
  });

  it("a failing ioctl names the ioctl and the errno", () => {
    using kvm = Kvm.open();
    using vm = kvm.createVm();
    vm.createVcpu(0);
    try {
      vm.createVcpu(0); // same id twice
      expect.unreachable();
    } catch (e) {
      expect(e).toMatchObject({ code: "KVM_IOCTL_FAILED", ioctl: "KVM_CREATE_VCPU", errnoName: "EEXIST" });
    }
  });

  it("bad memory slots are refused before reaching the kernel, and nothing leaks", () => {
    using kvm = Kvm.open();
    using vm = kvm.createVm();
    vm.addMemory({ slot: 0, guestPhysAddr: 0, size: 0x10000 });
    const bad = [
      { slot: 0, guestPhysAddr: 0x100000, size: 0x1000 },
      { slot: 1, guestPhysAddr: 0x8000, size: 0x10000 },
      { slot: 2, guestPhysAddr: 0x100001, size: 0x1000 },
      { slot: 3, guestPhysAddr: 0x100000, size: 100 },
      { slot: -1, guestPhysAddr: 0x100000, size: 0x1000 },
    ];
    for (const o of bad) expect(() => vm.addMemory(o)).toThrowError(expect.objectContaining({ code: "KVM_INVALID_ARGUMENT" }));
    expect(vm.memorySlots.map((s) => s.slot)).toEqual([0]);
    expect(vm.memory.totalSize).toBe(0x10000);
  });

  it("guest memory accesses outside the slots throw GuestMemoryError", () => {
    using kvm = Kvm.open();
    using vm = kvm.createVm();
    vm.addMemory({ slot: 0, guestPhysAddr: 0, size: 0x10000 });
    expect(() => vm.memory.readU32(0xfffe)).toThrowError(expect.objectContaining({ code: "GUEST_MEMORY_OUT_OF_RANGE" }));
    expect(() => vm.memory.write(0x20000, Buffer.from([1]))).toThrowError(expect.objectContaining({ code: "GUEST_MEMORY_OUT_OF_RANGE" }));
  });

  it("runAsync twice is KVM_VCPU_BUSY", async () => {
    using kvm = Kvm.open();
    using vm = kvm.createVm();
    vm.addMemory({ slot: 0, guestPhysAddr: 0, size: 0x10000 });
    vm.memory.write(0x1000, assemble("1: jmp 1b", 16));
    const vcpu = vm.createVcpu(0);
    enterRealMode(vcpu, 0x1000);
    const p = vcpu.runAsync();
    await expect(vcpu.runAsync()).rejects.toMatchObject({ code: "KVM_VCPU_BUSY" });
    expect(() => vcpu.run()).toThrowError(expect.objectContaining({ code: "KVM_VCPU_BUSY" }));
    vcpu.kick();
    expect((await p).kind).toBe("interrupted");
  });
});
