import { join } from "node:path";
import { requireKvm } from "@tsvmm/kvm-backend";
import { VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INTERRUPT_STATUS } from "@tsvmm/virtio";
import { VmmBuilder } from "@tsvmm/vmm";
import { describe, expect, it } from "vitest";

// Where the extra delivery on a level-triggered virtio pin comes from (test-kernels' virtio-irq
// case sees a third interrupt, with InterruptStatus 0, after the guest acknowledged and EOI'd).
// The guest's handler EOIs its first interrupt without acknowledging and acknowledges the second.
// The VMM side is traced here: every KVM_IRQ_LINE on the pin, every InterruptStatus read and
// InterruptAck write, and the local APIC's IRR/ISR bit for the vector at each of them.

const hasKvm = requireKvm();
const root = join(__dirname, "..", "..", "..");
const VEC = 0x33;
const GSI = 17;

interface Ev {
  readonly kind: "line" | "status" | "ack";
  readonly value: number;
  /** Vector VEC pending in the LAPIC IRR / in service (ISR) when it happened (line events: -1). */
  readonly irr: number;
  readonly isr: number;
}

describe.runIf(hasKvm)("virtio interrupt line on a level-triggered IOAPIC pin", () => {
  it("the transport asserts the pin once per cause and never after the ack lowered it; a later delivery was already pending in the LAPIC", async () => {
    const values: [string, bigint][] = [];
    const vmm = new VmmBuilder()
      .kernelFile(join(root, "test-kernels", "out", "virtio-irq.elf"))
      .memoryMiB(16)
      .irqchip(true)
      .virtioConsole()
      .rng()
      .onValue((n, v) => values.push([n, v]))
      .build();
    const ev: Ev[] = [];
    const apicBit = (base: number): number => {
      const regs = vmm.vcpus[0]!.getLapic().regs;
      return (regs.readUInt32LE(base + 0x10 * (VEC >> 5)) >>> (VEC & 31)) & 1;
    };
    // Wrap (not replace) the real calls: the VM runs exactly as built.
    const irqLine = vmm.vm.irqLine.bind(vmm.vm);
    vmm.vm.irqLine = (irq: number, level: boolean | number) => {
      if (irq === GSI) ev.push({ kind: "line", value: level ? 1 : 0, irr: -1, isr: -1 });
      irqLine(irq, level);
    };
    const tr = vmm.virtio[1]!.transport;
    const read = tr.read.bind(tr);
    tr.read = (off, data, ctx) => {
      read(off, data, ctx);
      if (off === VIRTIO_MMIO_INTERRUPT_STATUS) ev.push({ kind: "status", value: data.readUInt32LE(0), irr: apicBit(0x200), isr: apicBit(0x100) });
    };
    const write = tr.write.bind(tr);
    tr.write = (off, data, ctx) => {
      if (off === VIRTIO_MMIO_INTERRUPT_ACK) ev.push({ kind: "ack", value: data.readUInt32LE(0), irr: apicBit(0x200), isr: apicBit(0x100) });
      write(off, data, ctx);
    };
    const r = await vmm.run();
    expect(r.exitCode).toBe(0);
    const hits = Number(values.find(([n]) => n === "irq.hits")![1]);
    const seen = values.filter(([n]) => n === "irq.status").map(([, v]) => Number(v));

    const raises = ev.filter((e) => e.kind === "line" && e.value === 1);
    // One used buffer, one cause: the pin was asserted exactly once.
    expect(raises).toHaveLength(1);
    const ack = ev.findIndex((e) => e.kind === "ack" && e.value !== 0);
    expect(ack).toBeGreaterThan(ev.indexOf(raises[0]!));
    // The ack lowered the pin at once, and nothing raised it again afterwards.
    expect(ev[ack + 1]).toMatchObject({ kind: "line", value: 0 });
    expect(ev.slice(ack + 1).some((e) => e.kind === "line" && e.value === 1)).toBe(false);
    // Every InterruptStatus read after the ack says 0: the device had nothing more to report.
    expect(ev.slice(ack + 1).filter((e) => e.kind === "status").every((e) => e.value === 0)).toBe(true);
    // The guest saw the cause twice (the unacked EOI re-delivered it on the level pin).
    expect(seen.slice(0, 2)).toEqual([1, 1]);
    if (hits > 2) {
      // The extra delivery (status 0) was already latched in the local APIC's IRR when the guest
      // wrote the ack, i.e. before the VMM lowered the pin: KVM queued it, not the transport.
      expect(seen.slice(2).every((s) => s === 0)).toBe(true);
      expect(ev[ack]!.irr).toBe(1);
    }
  });
});
