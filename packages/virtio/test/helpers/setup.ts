import { GuestMemoryMap } from "@tsvmm/abi";
import { type DriverElement, DriverPackedQueue, type DriverQueue, DriverSplitQueue, GuestHeap, Queue, type QueueFeatures } from "@tsvmm/virtio";

export const RAM_BASE = 0x10000;
export const RAM_SIZE = 4 << 20;

/** Guest RAM with a hole below it, a heap for rings/buffers, and one queue on both sides. */
export function makeQueuePair(
  size: number,
  features: QueueFeatures,
  ramSize = RAM_SIZE,
): { mem: GuestMemoryMap; heap: GuestHeap; drv: DriverQueue; dev: Queue } {
  const mem = GuestMemoryMap.allocate([{ base: RAM_BASE, size: ramSize, name: "ram" }]);
  return { mem, ...queuePairOver(mem, RAM_BASE, ramSize, size, features) };
}

/** Both halves of one queue over a given GuestMemory, rings and buffers from a heap at `base`. */
export function queuePairOver(mem: GuestMemoryMap, base: number, ramSize: number, size: number, features: QueueFeatures): { heap: GuestHeap; drv: DriverQueue; dev: Queue } {
  const heap = new GuestHeap(base, ramSize);
  const drv = features.packed ? new DriverPackedQueue(mem, heap, size, features.eventIdx) : new DriverSplitQueue(mem, heap, size, features.eventIdx);
  const dev = new Queue(0, size);
  dev.size = size;
  dev.descTable = drv.descTable;
  dev.driverArea = drv.driverArea;
  dev.deviceArea = drv.deviceArea;
  dev.ready = true;
  dev.activate(mem, features);
  return { heap, drv, dev };
}

/** Allocate and describe buffers: `out` readable bytes filled with data, `ins` writable lengths. */
export function buffers(mem: GuestMemoryMap, heap: GuestHeap, out: readonly Uint8Array[], ins: readonly number[]): DriverElement[] {
  const els: DriverElement[] = [];
  for (const d of out) {
    const a = heap.alloc(Math.max(d.length, 1), 8);
    mem.write(a, d);
    els.push({ addr: a, len: d.length, writable: false });
  }
  for (const n of ins) els.push({ addr: heap.alloc(Math.max(n, 1), 8), len: n, writable: true });
  return els;
}
