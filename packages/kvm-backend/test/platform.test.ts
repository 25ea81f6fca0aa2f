import { KVM_CAP, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, KVM_IRQCHIP_PIC_MASTER, type KvmCpuidEntry2 } from "@tsvmm/abi";
import { type Kvm, KvmError, requireKvm, type Vcpu, type VcpuExit, type Vm } from "@tsvmm/kvm-backend";
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { assemble, closeTestVm, enterLongMode, enterRealMode, installIdt, openTestVm } from "./helpers.js";

const hasKvm = requireKvm();

const ioOf = (e: VcpuExit): string => (e.kind === "io" ? `0x${e.port.toString(16)}=0x${e.value.toString(16)}` : e.kind);

/** Fill the real-mode IVT: every vector goes to a handler reporting 0xee on port 0x11, except `vectors`. */
function realModeIvt(vm: Vm, vectors: ReadonlyMap<number, string>): void {
  vm.memory.write(0x1700, assemble("mov al, 0xee\n out 0x11, al\n hlt", 16));
  for (let v = 0; v < 256; v++) {
    vm.memory.writeU16(v * 4, 0x1700);
    vm.memory.writeU16(v * 4 + 2, 0);
  }
  let at = 0x1800;
  for (const [v, code] of vectors) {
    vm.memory.write(at, assemble(code, 16));
    vm.memory.writeU16(v * 4, at);
    at += 0x40;
  }
}

describe.runIf(hasKvm)("in-kernel PIC, PIT, clock and TSC state", () => {
  let kvm: Kvm;
  let vm: Vm;
  beforeEach(() => {
    ({ kvm, vm } = openTestVm());
  });
  afterEach(() => closeTestVm(kvm, vm));

  it("kvm_pic_state by field: what the guest programs is what KVM_GET_IRQCHIP shows, and irqBase/imr set by the VMM steer the guest", async () => {
    vm.createIrqchip();
    const vcpu = vm.createVcpu(0); // the BSP: its LVT0 is ExtINT at reset, so the PIC reaches it
    realModeIvt(vm, new Map([[0x69, "push ax\n mov al, 0x69\n out 0x11, al\n pop ax\n iret"]]));
    // ICW1-4 program the master with vector base 0x28, then OCW1 sets its mask to 0xfb.
    vm.memory.write(0x1000, assemble(
      "mov al, 0x11\n out 0x20, al\n mov al, 0x28\n out 0x21, al\n mov al, 4\n out 0x21, al\n mov al, 1\n out 0x21, al\n" +
      "mov al, 0xfb\n out 0x21, al\n mov al, 1\n out 0x10, al\n" +
      // Second half, after the VMM changed the state: report the IMR the guest reads, then wait for an IRQ.
      "in al, 0x21\n out 0x10, al\n sti\n hlt\n mov al, 0xdd\n out 0x12, al\n cli\n hlt", 16));
    enterRealMode(vcpu, 0x1000);
    expect(ioOf(vcpu.run())).toBe("0x10=0x1");
    const pic = vm.getPic(KVM_IRQCHIP_PIC_MASTER);
    expect({ irqBase: pic.irqBase, imr: pic.imr, init4: pic.init4 }).toEqual({ irqBase: 0x28, imr: 0xfb, init4: 1 });

    // The VMM moves the master to vector base 0x68 and unmasks IRQ 1 only.
    vm.setPic(KVM_IRQCHIP_PIC_MASTER, { ...pic, irqBase: 0x68, imr: 0xfd });
    expect(ioOf(vcpu.run())).toBe("0x10=0xfd");
    const outs: string[] = [];
    const done = (async () => {
      for (;;) {
        const e = await vcpu.runAsync();
        outs.push(ioOf(e));
        if (e.kind !== "io" || e.port === 0x12) return;
      }
    })();
    await new Promise((r) => setTimeout(r, 20));
    vm.irqLine(1, 1);
    vm.irqLine(1, 0);
    await done;
    // IRQ 1 arrived as vector 0x68 + 1; no other vector's handler ran.
    expect(outs).toEqual(["0x11=0x69", "0x12=0xdd"]);
  });

  it("KVM_GET/SET_PIT2: the counter the guest programs, and a mode the VMM sets that the guest reads back", () => {
    vm.createIrqchip();
    vm.createPit2();
    const vcpu = vm.createVcpu(0);
    vm.memory.write(0x1000, assemble(
      // Counter 0: LSB then MSB (RW=3), mode 2, binary; count 0x1234.
      "mov al, 0x34\n out 0x43, al\n mov al, 0x34\n out 0x40, al\n mov al, 0x12\n out 0x40, al\n mov al, 1\n out 0x10, al\n" +
      // Read-back command: latch the status of counter 1 only (8254 datasheet), then read it.
      "mov al, 0xe4\n out 0x43, al\n in al, 0x41\n out 0x11, al\n hlt", 16));
    enterRealMode(vcpu, 0x1000);
    expect(ioOf(vcpu.run())).toBe("0x10=0x1");
    const pit = vm.getPit2();
    const c0 = pit.channels[0]!;
    expect({ count: c0.count, mode: c0.mode, rwMode: c0.rwMode, bcd: c0.bcd }).toEqual({ count: 0x1234, mode: 2, rwMode: 3, bcd: 0 });

    pit.channels[1] = { ...pit.channels[1]!, count: 0x80, mode: 4, rwMode: 1, bcd: 1, gate: 1 };
    vm.setPit2(pit);
    const got = vm.getPit2().channels[1]!;
    expect({ count: got.count, mode: got.mode, rwMode: got.rwMode, bcd: got.bcd }).toEqual({ count: 0x80, mode: 4, rwMode: 1, bcd: 1 });
    const e = vcpu.run();
    expect(e.kind === "io" && e.port === 0x11).toBe(true);
    // Status byte: RW in bits 5:4, mode in 3:1, BCD in bit 0 (bit 7 is OUT, bit 6 null count).
    expect(e.kind === "io" && e.value & 0x3f).toBe((1 << 4) | (4 << 1) | 1);
  });

  it("KVM_GET/SET_CLOCK: the VM clock moves to what was set and keeps running from there", () => {
    const c0 = vm.getClock();
    expect(c0.clock).toBeGreaterThanOrEqual(0n);
    for (const target of [c0.clock + 10_000_000_000n, 5_000_000_000n]) {
      vm.setClock({ clock: target, flags: 0, realtime: 0n, hostTsc: 0n });
      const c1 = vm.getClock();
      expect(c1.clock).toBeGreaterThanOrEqual(target);
      expect(c1.clock - target).toBeLessThan(1_000_000_000n);
    }
    const a = vm.getClock().clock;
    const t = process.hrtime.bigint();
    while (process.hrtime.bigint() - t < 20_000_000n) {
      // 20 ms of host time
    }
    const b = vm.getClock().clock;
    expect(b - a).toBeGreaterThanOrEqual(19_000_000n);
    expect(b - a).toBeLessThan(500_000_000n);
  });

  it("KVM_GET/SET_TSC_KHZ: measure the rates this host accepts; accepted rates read back exactly, refused ones change nothing", () => {
    expect(kvm.checkExtension(KVM_CAP.GET_TSC_KHZ)).toBeGreaterThan(0);
    const vcpu = vm.createVcpu(0);
    const host = vcpu.getTscKhz();
    expect(host).toBeGreaterThan(0);
    vcpu.setTscKhz(host);
    expect(vcpu.getTscKhz()).toBe(host);
    const accepts = (k: number): boolean => {
      const before = vcpu.getTscKhz();
      try {
        vcpu.setTscKhz(k);
      } catch (e) {
        expect(e).toBeInstanceOf(KvmError);
        expect((e as KvmError).ioctl).toBe("KVM_SET_TSC_KHZ");
        expect(vcpu.getTscKhz()).toBe(before);
        return false;
      }
      expect(vcpu.getTscKhz()).toBe(k);
      return true;
    };
    // Lowest accepted rate (rates are accepted from some bound up): bisect over [1, host].
    let lo = 1;
    let hi = host;
    if (!accepts(1)) {
      while (hi - lo > 1) {
        const mid = Math.floor((lo + hi) / 2);
        if (accepts(mid)) hi = mid;
        else lo = mid;
      }
      lo = hi;
    }
    // Highest accepted rate: bisect over [host, 2^31 - 1] (KVM_GET_TSC_KHZ cannot report more).
    const MAX = 0x7fffffff;
    let top = host;
    let over = MAX;
    if (accepts(over)) top = over;
    else {
      while (over - top > 1) {
        const mid = Math.floor((top + over) / 2);
        if (accepts(mid)) top = mid;
        else over = mid;
      }
    }
    console.log(`TSC: host ${host} kHz (TSC scaling ${kvm.checkExtension(KVM_CAP.TSC_CONTROL) > 0 ? "yes" : "no"}); KVM_SET_TSC_KHZ accepts [${lo}, ${top}] kHz`);
    expect(lo).toBeLessThanOrEqual(host);
    expect(top).toBeGreaterThanOrEqual(host);
    // The measured interval holds for any rate: inside accepted and read back, outside refused.
    fc.assert(fc.property(fc.integer({ min: lo, max: top }), (k) => accepts(k)), { numRuns: 50 });
    if (lo > 1) fc.assert(fc.property(fc.integer({ min: 1, max: lo - 1 }), (k) => !accepts(k)), { numRuns: 50 });
    if (top < MAX) fc.assert(fc.property(fc.integer({ min: top + 1, max: MAX }), (k) => !accepts(k)), { numRuns: 50 });
    for (const bad of [0, MAX + 1, 1.5]) expect(() => vcpu.setTscKhz(bad)).toThrowError(expect.objectContaining({ code: "KVM_INVALID_ARGUMENT" }));
  });
});

describe.runIf(hasKvm)("NMI and emulated CPUID on /dev/kvm", () => {
  let kvm: Kvm;
  let vm: Vm;
  beforeEach(() => {
    ({ kvm, vm } = openTestVm());
  });
  afterEach(() => closeTestVm(kvm, vm));

  it("KVM_NMI reaches the guest's NMI handler with IF=0, and a second NMI waits for its IRETQ", () => {
    const vcpu: Vcpu = vm.createVcpu(0);
    // cli: a maskable interrupt could not get in; an NMI can.
    vm.memory.write(0x10000, assemble(
      "cli\n1: hlt\n jmp 1b\n .org 0x100\n push rax\n mov al, 2\n out 0x70, al\n mov al, 3\n out 0x71, al\n pop rax\n iretq", 64, 0x10000));
    enterLongMode(vm, vcpu, 0x10000);
    installIdt(vm, vcpu, new Map([[2, 0x10100]]));
    const trace: string[] = [ioOf(vcpu.run())];
    vcpu.nmi();
    trace.push(ioOf(vcpu.run())); // in the handler: NMIs are now blocked
    expect(vcpu.getVcpuEvents().nmi.masked).toBe(1);
    vcpu.nmi();
    expect(vcpu.getVcpuEvents().nmi.pending).toBe(1);
    // The second NMI is held until the handler's IRETQ; it is delivered at the next VM entry
    // after it (this host may take the HLT exit that follows the IRETQ first: skip HLTs).
    for (let i = 0; i < 6 && trace.filter((t) => t === "0x71=0x3").length < 2; i++) trace.push(ioOf(vcpu.run()));
    expect(trace.filter((t) => t !== "hlt")).toEqual(["0x70=0x2", "0x71=0x3", "0x70=0x2", "0x71=0x3"]);
    expect(trace[0]).toBe("hlt");
    expect(vcpu.getVcpuEvents().nmi).toMatchObject({ pending: 0, masked: 1 }); // still in the second handler
    expect(ioOf(vcpu.run())).toBe("hlt");
    expect(vcpu.getVcpuEvents().nmi).toMatchObject({ pending: 0, masked: 0 });
  });

  it("KVM_GET_EMULATED_CPUID: a well-formed list whose bits a guest can be given and then sees; what MOVBE does is reported", () => {
    const emulated = kvm.emulatedCpuid();
    expect(emulated.length).toBeGreaterThan(0);
    console.log(`emulated CPUID: ${emulated.map((e) => `${e.function.toString(16)}.${e.index}: eax=${e.eax.toString(16)} ebx=${e.ebx.toString(16)} ecx=${e.ecx.toString(16)} edx=${e.edx.toString(16)}`).join("; ")}`);
    // Leaf 0's EAX bounds the basic leaves listed; leaf 7 is indexed (flag SIGNIFCANT_INDEX).
    const maxBasic = emulated.find((e) => e.function === 0)?.eax ?? 0;
    for (const e of emulated.filter((x) => x.function < 0x40000000)) expect(e.function).toBeLessThanOrEqual(maxBasic);
    for (const e of emulated.filter((x) => x.function === 7)) expect(e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX).toBe(KVM_CPUID_FLAG_SIGNIFCANT_INDEX);
    const key = (e: KvmCpuidEntry2): string => `${e.function}.${e.index}`;
    const byKey = new Map(kvm.supportedCpuid().map((e) => [key(e), { ...e }]));
    for (const e of emulated) {
      const s = byKey.get(key(e));
      // Leaf 0's EAX is the highest leaf, not a feature mask.
      if (s !== undefined && e.function !== 0) {
        s.eax = (s.eax | e.eax) >>> 0;
        s.ebx = (s.ebx | e.ebx) >>> 0;
        s.ecx = (s.ecx | e.ecx) >>> 0;
        s.edx = (s.edx | e.edx) >>> 0;
      }
    }
    const vcpu = vm.createVcpu(0);
    vcpu.setCpuid2([...byKey.values()]);
    const held = new Map(vcpu.getCpuid2().map((e) => [key(e), e]));
    const emulatedLeaf1 = emulated.find((e) => e.function === 1 && e.index === 0);
    // Every emulated leaf-1 ECX bit is in the table KVM holds for the vCPU.
    expect((held.get("1.0")!.ecx & (emulatedLeaf1?.ecx ?? 0)) >>> 0).toBe((emulatedLeaf1?.ecx ?? 0) >>> 0);
    vm.memory.write(0x10000, assemble(
      "mov eax, 1\n xor ecx, ecx\n cpuid\n mov eax, ecx\n out 0x10, eax\n" +
      "mov dword ptr [0x20000], 0x11223344\n movbe eax, dword ptr [0x20000]\n out 0x11, eax\n hlt\n" +
      ".org 0x100\n mov rax, [rsp]\n out 0x12, eax\n hlt", 64, 0x10000));
    enterLongMode(vm, vcpu, 0x10000);
    installIdt(vm, vcpu, new Map([[6, 0x10100]])); // #UD reports the faulting RIP on port 0x12
    const e1 = vcpu.run();
    expect(e1.kind === "io" && e1.port === 0x10).toBe(true);
    // The guest's CPUID instruction reports exactly what KVM holds.
    expect(e1.kind === "io" && e1.value >>> 0).toBe(held.get("1.0")!.ecx >>> 0);
    const movbe = 1 << 22; // CPUID.1:ECX.MOVBE (SDM vol. 2, CPUID)
    if (emulatedLeaf1 !== undefined && (emulatedLeaf1.ecx & movbe) !== 0) {
      const e2 = ioOf(vcpu.run());
      // KVM emulates MOVBE when the guest's execution traps (#UD); a host that executes CPL0 code
      // some other way may raise #UD to the guest instead. Either is reported; nothing else is allowed.
      const movbeRip = 0x10000 + assemble("mov eax, 1\n xor ecx, ecx\n cpuid\n mov eax, ecx\n out 0x10, eax\n mov dword ptr [0x20000], 0x11223344", 64).length;
      expect([`0x11=0x44332211`, `0x12=0x${movbeRip.toString(16)}`]).toContain(e2);
      console.log(`MOVBE listed as emulated; at guest CPL0 it ${e2.startsWith("0x11") ? "worked" : "raised #UD"}`);
    }
  });
});
