import { KVM_CAP } from "@tsvmm/abi";
import {
  decodeIoapicRedirection, EventFd, encodeIoapicRedirection, type GsiRoute, ioapicRedirectionToMsi, type Kvm, requireKvm, type Vm,
  X86_DELIVERY_MODE, x86DefaultGsiRoutes, x86Msi, x86PcGsiRoutes,
} from "@tsvmm/kvm-backend";
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { closeTestVm, enableLapic, interruptReporterGuest, openTestVm, routeIoapicPin, watchPort } from "./helpers.js";

const hasKvm = requireKvm();

describe("MSI and IOAPIC encodings (SDM vol. 3 11.11, 82093AA IOREDTBL)", () => {
  it("x86Msi puts destination, vector, mode and trigger where the SDM says", () => {
    expect(x86Msi({ destination: 3, vector: 0x41 })).toEqual({ addressLo: 0xfee03000, addressHi: 0, data: 0x4041 });
    const m = x86Msi({ destination: 0x12, vector: 0x99, deliveryMode: X86_DELIVERY_MODE.LOWEST_PRIORITY, logical: true, redirectionHint: true, levelTriggered: true, assert: false });
    expect(m).toEqual({ addressLo: 0xfee1200c, addressHi: 0, data: 0x8199 });
    expect(x86Msi({ destination: 0x1234, vector: 2, deliveryMode: X86_DELIVERY_MODE.NMI })).toEqual({ addressLo: 0xfee34000, addressHi: 0x1200, data: 0x4402 });
    expect(() => x86Msi({ destination: 0, vector: 256 })).toThrowError(expect.objectContaining({ code: "KVM_INVALID_ARGUMENT" }));
  });

  it("IOAPIC redirection entries round-trip and map to the MSI the IOAPIC would send", () => {
    const arb = fc.record({
      vector: fc.integer({ min: 0, max: 255 }), deliveryMode: fc.integer({ min: 0, max: 7 }), logical: fc.boolean(),
      deliveryStatus: fc.boolean(), activeLow: fc.boolean(), remoteIrr: fc.boolean(), levelTriggered: fc.boolean(),
      masked: fc.boolean(), destination: fc.integer({ min: 0, max: 255 }),
    });
    fc.assert(
      fc.property(arb, (r) => {
        const bits = encodeIoapicRedirection(r);
        expect(decodeIoapicRedirection(bits)).toEqual(r);
        const msi = ioapicRedirectionToMsi(r);
        if (r.masked) return msi === undefined;
        // Same vector, mode, destination and trigger in the MSI as in the entry.
        expect(msi).toEqual(x86Msi({ destination: r.destination, vector: r.vector, deliveryMode: r.deliveryMode, logical: r.logical, levelTriggered: r.levelTriggered }));
        return true;
      }),
      { numRuns: 500 },
    );
    // KVM's reset value: masked, everything else zero.
    expect(decodeIoapicRedirection(1n << 16n)).toMatchObject({ masked: true, vector: 0, destination: 0 });
  });

  it("the default routing table names every GSI 0-23 on the IOAPIC and 0-15 on the PICs", () => {
    const routes = x86DefaultGsiRoutes();
    expect(routes.filter((r) => r.type === "irqchip" && r.irqchip === 2).map((r) => r.gsi)).toEqual([...Array(24).keys()]);
    expect(routes.filter((r) => r.type === "irqchip" && r.irqchip !== 2).map((r) => r.type === "irqchip" && [r.gsi, r.irqchip, r.pin])).toEqual(
      [...Array(16).keys()].map((g) => [g, g < 8 ? 0 : 1, g % 8]),
    );
  });

  it("the PC table differs from it only where the tables' IRQ0 -> GSI 2 override says: GSI 0 to IOAPIC pin 2, GSI 2 nowhere", () => {
    const key = (r: GsiRoute) => (r.type === "irqchip" ? `${r.gsi}:${r.irqchip}:${r.pin}` : "msi");
    const pc = new Set(x86PcGsiRoutes().map(key));
    const def = new Set(x86DefaultGsiRoutes().map(key));
    expect([...pc].filter((k) => !def.has(k))).toEqual(["0:2:2"]);
    expect([...def].filter((k) => !pc.has(k)).sort()).toEqual(["0:2:0", "2:0:2", "2:2:2"]);
  });
});

describe.runIf(hasKvm)("MSI delivery on /dev/kvm", () => {
  let kvm: Kvm;
  let vm: Vm;
  beforeEach(() => {
    ({ kvm, vm } = openTestVm());
  });
  afterEach(() => closeTestVm(kvm, vm));

  it("in-kernel irqchip: KVM_SIGNAL_MSI, irqfd on an MSI-routed GSI, and the default routes kept", async () => {
    expect(kvm.checkExtension(KVM_CAP.SIGNAL_MSI)).toBeGreaterThan(0);
    expect(kvm.checkExtension(KVM_CAP.IRQ_ROUTING)).toBeGreaterThan(0);
    vm.createIrqchip();
    routeIoapicPin(vm, 4, 0x34);
    const vcpu = vm.createVcpu(0);
    enableLapic(vcpu);
    interruptReporterGuest(vm, vcpu, [0x33, 0x34, 0x3a, 0x3b]);
    // GSI 30 is outside the IOAPIC's pins: only the MSI route gives it a meaning.
    vm.setGsiRouting([...x86DefaultGsiRoutes(), { gsi: 30, type: "msi", msi: x86Msi({ destination: 0, vector: 0x3a }) }]);
    const bell = new EventFd();
    vm.registerIrqfd(bell, 30);
    const w = watchPort(vcpu, 0x70);
    try {
      await new Promise((r) => setTimeout(r, 20)); // the guest is asleep in HLT inside KVM
      expect(w.seen).toEqual([]);
      expect(vm.signalMsi(x86Msi({ destination: 0, vector: 0x33 }))).toBeGreaterThan(0);
      expect(await w.until(1)).toEqual([0x33]);
      bell.write();
      expect(await w.until(2)).toEqual([0x33, 0x3a]);
      // KVM_IRQ_LINE still reaches the IOAPIC through the default routes we re-installed.
      vm.irqLine(4, 1);
      vm.irqLine(4, 0);
      expect(await w.until(3)).toEqual([0x33, 0x3a, 0x34]);
      // A second MSI on the same route works too (the EOI in the handler re-armed the vector).
      bell.write();
      expect(await w.until(4)).toEqual([0x33, 0x3a, 0x34, 0x3a]);
      expect(await w.stop()).toEqual([0x33, 0x3a, 0x34, 0x3a]);
    } finally {
      vm.unregisterIrqfd(bell, 30);
      bell.close();
    }
  });

  it("split irqchip: device interrupts as MSIs (signalled, through irqfd, and from a userspace IOAPIC entry)", async () => {
    vm.createSplitIrqchip(24);
    const vcpu = vm.createVcpu(0);
    enableLapic(vcpu);
    interruptReporterGuest(vm, vcpu, [0x37, 0x41, 0x45]);
    // With a split irqchip there is no in-kernel PIC/IOAPIC a route could name.
    expect(() => vm.setGsiRouting([{ gsi: 4, type: "irqchip", irqchip: 2, pin: 4 }])).toThrowError(
      expect.objectContaining({ code: "KVM_IOCTL_FAILED", ioctl: "KVM_SET_GSI_ROUTING", errnoName: "EINVAL" }),
    );
    vm.setGsiRouting([{ gsi: 5, type: "msi", msi: x86Msi({ destination: 0, vector: 0x41 }) }]);
    const bell = new EventFd();
    vm.registerIrqfd(bell, 5);
    const w = watchPort(vcpu, 0x70);
    try {
      await new Promise((r) => setTimeout(r, 20));
      expect(vm.signalMsi(x86Msi({ destination: 0, vector: 0x37 }))).toBeGreaterThan(0);
      expect(await w.until(1)).toEqual([0x37]);
      bell.write();
      expect(await w.until(2)).toEqual([0x37, 0x41]);
      // A VMM-side IOAPIC: pin programmed by the guest (here: by us) -> the MSI it sends.
      const entry = decodeIoapicRedirection(encodeIoapicRedirection({ vector: 0x45, destination: 0 }));
      const msi = ioapicRedirectionToMsi(entry);
      expect(msi).toBeDefined();
      expect(vm.signalMsi(msi!)).toBeGreaterThan(0);
      expect(await w.until(3)).toEqual([0x37, 0x41, 0x45]);
      expect(await w.stop()).toEqual([0x37, 0x41, 0x45]);
    } finally {
      vm.unregisterIrqfd(bell, 5);
      bell.close();
    }
  });

  it("split irqchip: the guest's EOI of a level-triggered MSI route comes back to the VMM as ioapic_eoi", async () => {
    vm.createSplitIrqchip(24);
    const vcpu = vm.createVcpu(0);
    enableLapic(vcpu);
    interruptReporterGuest(vm, vcpu, [0x41, 0x42]);
    // Level-triggered on GSI 5 (as a VMM IOAPIC pin would be); GSI 6 edge-triggered for contrast.
    vm.setGsiRouting([
      { gsi: 5, type: "msi", msi: x86Msi({ destination: 0, vector: 0x41, levelTriggered: true }) },
      { gsi: 6, type: "msi", msi: x86Msi({ destination: 0, vector: 0x42 }) },
    ]);
    const bells = [new EventFd(), new EventFd()];
    vm.registerIrqfd(bells[0]!, 5);
    vm.registerIrqfd(bells[1]!, 6);
    const trace: string[] = [];
    const loop = (async () => {
      for (;;) {
        const e = await vcpu.runAsync();
        if (e.kind === "interrupted") return;
        trace.push(e.kind === "io" ? `irq 0x${e.value.toString(16)}` : e.kind === "ioapic_eoi" ? `eoi 0x${e.vector.toString(16)}` : e.kind);
      }
    })();
    const waitFor = async (n: number): Promise<void> => {
      for (let i = 0; i < 100 && trace.length < n; i++) await new Promise((r) => setTimeout(r, 20));
    };
    try {
      await new Promise((r) => setTimeout(r, 20));
      bells[1]!.write();
      await waitFor(1);
      bells[0]!.write();
      await waitFor(3);
      vcpu.kick();
      await loop;
      // Only the level-triggered vector's EOI is reported.
      expect(trace).toEqual(["irq 0x42", "irq 0x41", "eoi 0x41"]);
    } finally {
      vm.unregisterIrqfd(bells[0]!, 5);
      vm.unregisterIrqfd(bells[1]!, 6);
      for (const b of bells) b.close();
    }
  });

  it("an MSI to an APIC id no vCPU has reaches nobody", async () => {
    vm.createSplitIrqchip(24);
    const vcpu = vm.createVcpu(0);
    enableLapic(vcpu);
    interruptReporterGuest(vm, vcpu, [0x50]);
    const w = watchPort(vcpu, 0x70);
    // No LAPIC matched the destination: KVM reports 0 deliveries, and the guest sees nothing.
    expect(vm.signalMsi(x86Msi({ destination: 7, vector: 0x50 }))).toBe(0);
    await new Promise((r) => setTimeout(r, 50));
    expect(await w.stop()).toEqual([]);
  });
});
