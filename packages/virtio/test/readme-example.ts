import { strict as assert } from "node:assert";
import { GuestMemoryMap } from "@tsvmm/abi";
import { type DeviceContext, drainQueue, GuestHeap, MmioTransport, TestDriver, type VirtioDevice } from "@tsvmm/virtio";

// A device of your own: it answers every request with its bytes upper-cased.
class Upper implements VirtioDevice {
  readonly deviceId = 0x1234;
  readonly name = "upper";
  readonly queueMaxSizes = [64];
  readonly features = 0n;
  readonly configSize = 0;
  private ctx: DeviceContext | undefined;
  readConfig(_offset: number, data: Buffer): void {
    data.fill(0);
  }
  writeConfig(): void {}
  activate(ctx: DeviceContext): void {
    this.ctx = ctx;
  }
  queueNotify(queue: number): void {
    if (this.ctx === undefined) return;
    // drainQueue = disable notifications, pop every chain, addUsed, re-enable, interrupt if wanted.
    drainQueue(this.ctx, queue, (chain) => {
      const text = chain.reader().read(chain.readableLength).toString("latin1");
      const w = chain.writer();
      w.writeSome(Buffer.from(text.toUpperCase(), "latin1"));
      return w.written;
    });
  }
  reset(): void {
    this.ctx = undefined;
  }
  saveState(): unknown {
    return {};
  }
  restoreState(): void {}
}

// The VMM side: guest RAM, the transport (register it on the MMIO bus at its window), an interrupt line.
const mem = GuestMemoryMap.allocate([{ base: 0x10000, size: 1 << 20 }]);
let interrupts = 0;
const transport = new MmioTransport(new Upper(), { mem, interrupt: { trigger: () => interrupts++ } });

// The guest side, played by TestDriver: negotiate, build a split ring, post one request, kick.
const driver = new TestDriver(transport, mem, new GuestHeap(0x10000, 1 << 20));
const [queue] = driver.start(0n, [16]);
const src = driver.heap.alloc(5);
const dst = driver.heap.alloc(5);
mem.write(src, Buffer.from("hello"));
queue!.add([
  { addr: src, len: 5, writable: false },
  { addr: dst, len: 5, writable: true },
]);
driver.kick(0); // a QueueNotify write; the VMM may instead call transport.notify(0) from an ioeventfd

assert.deepEqual(
  queue!.takeUsed().map((u) => u.len),
  [5],
);
assert.equal(mem.read(dst, 5).toString(), "HELLO");
assert.equal(interrupts, 1);
