import { type MmioBus, type PioBus, UART_PARTIAL_LINE_MS, type Uart16550 } from "@tsvmm/devices";
import type { CoalescedRing, CoalescedSink, Vm } from "@tsvmm/kvm-backend";

/**
 * The UART's transmit register through KVM's coalesced ring: while the guest cannot tell when a
 * THR write reaches the device (THR-empty interrupt off, no loopback: Uart16550.thrWritesDeferrable),
 * KVM queues writes to THR in the ring instead of exiting for each byte, and the VMM hands them to
 * the device in order. A polled console then exits once per ring-full (169 bytes) instead of once
 * per byte.
 *
 * The guest's order of accesses holds because the ring is drained, on the one JavaScript thread:
 * - before any exit of any vCPU is handled (Vmm calls drain() first thing), so an IN from LSR or
 *   RBR, an LCR (DLAB) change or any other device access sees every earlier THR write;
 * - before the UART does anything on the host's behalf (flush, saveState for a snapshot, reset,
 *   its partial-line timer) through Uart16550.setDeferredWrites;
 * - every UART_PARTIAL_LINE_MS while the VM runs, so a guest that prints and then computes without
 *   exits still has its output out within about that time.
 * When the guest turns on the THR-empty interrupt or loopback the zone is removed before the
 * exit of that register write returns to the guest, so each later write exits and is seen at
 * once (with its interrupt); it is added again when both are off. Writes at DLAB=1 (to DLL) go
 * through the ring like any other and reach the device in order.
 */
export class CoalescedSerial {
  private readonly ring: CoalescedRing;
  private readonly sink: CoalescedSink;
  private zone = false;
  private timer: ReturnType<typeof setInterval> | undefined;
  private readonly unlisten: () => void;
  private closed = false;

  /**
   * Whether this VM can do it: KVM offers port coalescing (KVM_CAP_COALESCED_PIO) and the ring is
   * in the vCPU mapping (measured with KVM_CHECK_EXTENSION), and the VM has a vCPU to reach it.
   */
  static offered(vm: Vm): boolean {
    return vm.vcpuList.length > 0 && vm.coalescedPioOffered;
  }

  /** `port` is the UART's THR (its base port). Writes drained from the ring go through the buses. */
  constructor(
    private readonly vm: Vm,
    private readonly uart: Uart16550,
    private readonly port: number,
    pio: PioBus,
    mmio: MmioBus,
  ) {
    this.ring = vm.coalescedRing();
    // The ring does not say which vCPU wrote: such accesses are made as vCPU 0's.
    this.sink = (addr, data, isPio) => (isPio ? pio.write(addr, data) : mmio.write(addr, data));
    this.unlisten = uart.onThrWritesDeferrableChange((on) => this.setZone(on));
    uart.setDeferredWrites(() => {
      this.drain();
    });
    this.setZone(uart.thrWritesDeferrable);
  }

  /** True while THR writes are queued in the ring. */
  get active(): boolean {
    return this.zone;
  }

  /** Hand every queued write to the devices, oldest first; returns how many. */
  drain(): number {
    return this.ring.drain(this.sink);
  }

  /** The periodic drain, while the VM runs. */
  start(): void {
    if (this.timer !== undefined || this.closed) return;
    this.timer = setInterval(() => {
      // Bytes that waited here already waited a timer period: write a partial line at once.
      if (this.drain() > 0) this.uart.flush();
    }, UART_PARTIAL_LINE_MS);
  }

  /** Stop the periodic drain and drain what is left. */
  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.drain();
  }

  /** Drain, remove the zone and let go of the UART (idempotent; the VM must still be open to drain). */
  close(): void {
    if (this.closed) return;
    this.stop();
    this.unlisten();
    this.uart.setDeferredWrites(undefined);
    if (this.zone && !this.vm.closed) this.vm.unregisterCoalescedPio(this.port, 1);
    this.zone = false;
    this.closed = true;
  }

  private setZone(on: boolean): void {
    if (on === this.zone || this.closed) return;
    // Called from inside the register write's exit (or restoreState/reset), before the guest runs
    // on: writes this vCPU makes after it exit again. What other vCPUs queued meanwhile stays in
    // the ring and is drained before the next exit, after this write, as it happened.
    if (on) this.vm.registerCoalescedPio(this.port, 1);
    else this.vm.unregisterCoalescedPio(this.port, 1);
    this.zone = on;
  }
}
