import { bit, VIRTIO_CONSOLE_F_EMERG_WRITE, VIRTIO_CONSOLE_F_SIZE, VIRTIO_F_RING_PACKED, VIRTIO_MMIO_INT_CONFIG, VirtioConsole, VirtioConsoleConfigLayout, VirtioRng } from "@tsvmm/virtio";
import { describe, expect, it } from "vitest";
import { harness } from "./helpers/harness.js";

describe.each([
  ["split", 0n],
  ["packed", bit(VIRTIO_F_RING_PACKED)],
])("virtio-console, %s ring", (_n, ring) => {
  it("guest output reaches the sink; host input reaches the guest, held until it posts buffers", () => {
    const out: Buffer[] = [];
    const con = new VirtioConsole({ output: (d) => out.push(d) });
    const h = harness(con);
    const [rx, tx] = h.drv.start(ring | bit(VIRTIO_CONSOLE_F_SIZE), [8, 8]);
    const msg = Buffer.from("hello from the guest\n");
    const a = h.heap.alloc(msg.length);
    h.mem.write(a, msg);
    tx!.add([{ addr: a, len: msg.length, writable: false }]);
    h.drv.kick(1);
    expect(Buffer.concat(out).toString()).toBe("hello from the guest\n");
    expect(tx!.takeUsed().length).toBe(1);

    con.input(Buffer.from("typed on the host: 0123456789"));
    const b1 = h.heap.alloc(16);
    const b2 = h.heap.alloc(16);
    rx!.add([{ addr: b1, len: 16, writable: true }]);
    rx!.add([{ addr: b2, len: 16, writable: true }]);
    h.drv.kick(0);
    const used = rx!.takeUsed();
    expect(used.map((u) => u.len)).toEqual([16, 13]);
    expect(Buffer.concat([h.mem.read(b1, 16), h.mem.read(b2, 13)]).toString()).toBe("typed on the host: 0123456789");
    // With buffers already posted, input goes in at once.
    const b3 = h.heap.alloc(16);
    rx!.add([{ addr: b3, len: 16, writable: true }]);
    h.drv.kick(0);
    con.input(Buffer.from("!"));
    expect(rx!.takeUsed().map((u) => u.len)).toEqual([1]);
    expect(h.mem.read(b3, 1).toString()).toBe("!");
  });

  it("config: size, emergency write, resize bumps the generation with a config interrupt", () => {
    const out: Buffer[] = [];
    const con = new VirtioConsole({ output: (d) => out.push(d), cols: 132, rows: 43 });
    const h = harness(con);
    expect(h.drv.deviceFeatures() & bit(VIRTIO_CONSOLE_F_EMERG_WRITE)).not.toBe(0n);
    h.drv.start(ring, [8, 8]);
    const cfg = VirtioConsoleConfigLayout.decode(h.drv.readConfig(0, VirtioConsoleConfigLayout.size));
    expect([cfg.cols, cfg.rows, cfg.maxNrPorts]).toEqual([132, 43, 1]);
    h.drv.writeConfig(VirtioConsoleConfigLayout.offsetOf("emergWr"), Buffer.from([0x41, 0, 0, 0]));
    expect(Buffer.concat(out).toString()).toBe("A");
    const gen = h.t.configGeneration;
    con.resize(100, 30);
    expect(h.t.configGeneration).toBe(gen + 1);
    expect(h.drv.ackInterrupts() & VIRTIO_MMIO_INT_CONFIG).toBe(VIRTIO_MMIO_INT_CONFIG);
    expect(VirtioConsoleConfigLayout.decode(h.drv.readConfig(0, 12)).cols).toBe(100);
  });
});

describe("virtio-rng", () => {
  it("bytes differ from device to device and request to request", () => {
    const sample = (): Buffer => {
      const h = harness(new VirtioRng());
      const [q] = h.drv.start(0n, [8]);
      const a = h.heap.alloc(32);
      q!.add([{ addr: a, len: 32, writable: true }]);
      h.drv.kick(0);
      expect(q!.takeUsed()[0]!.len).toBe(32);
      return h.mem.read(a, 32);
    };
    const s = [sample(), sample(), sample()];
    expect(new Set(s.map((b) => b.toString("hex"))).size).toBe(3);
  });

  it("a chain with readable parts only gets nothing written (and the device stays up)", () => {
    const h = harness(new VirtioRng());
    const [q] = h.drv.start(0n, [8]);
    q!.add([{ addr: h.heap.alloc(8), len: 8, writable: false }]);
    h.drv.kick(0);
    expect(q!.takeUsed().map((u) => u.len)).toEqual([0]);
    expect(h.drv.status).toBe(15);
  });
});
