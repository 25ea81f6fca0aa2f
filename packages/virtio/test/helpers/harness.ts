import { GuestMemoryMap, type TsvmmError } from "@tsvmm/abi";
import { GuestHeap, MmioTransport, type MmioTransportOptions, TestDriver, type VirtioDevice } from "@tsvmm/virtio";

export const RAM_BASE = 0x10000;

/** A transport over a device, guest RAM, a counting interrupt line, and a TestDriver playing the guest. */
export function harness<D extends VirtioDevice>(device: D, opts: Partial<MmioTransportOptions> = {}, ramSize = 8 << 20) {
  const mem = GuestMemoryMap.allocate([{ base: RAM_BASE, size: ramSize, name: "ram" }]);
  const heap = new GuestHeap(RAM_BASE, ramSize);
  const irq = { raised: 0, lowered: 0 };
  const errors: TsvmmError[] = [];
  const t = new MmioTransport(device, {
    mem,
    interrupt: { trigger: () => void irq.raised++, lower: () => void irq.lowered++ },
    onError: (e) => void errors.push(e),
    ...opts,
  });
  const drv = new TestDriver(t, mem, heap);
  return { mem, heap, irq, errors, t, drv, device };
}

/** Resolve when `cond` holds, polling the event loop (for devices that complete on the libuv pool). */
export async function until(cond: () => boolean, what = "condition", ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}
