import { randomBytes } from "node:crypto";
import type { TsvmmError } from "@tsvmm/abi";
import {
  bit,
  MmioTransport,
  type NetBackend,
  VIRTIO_CONFIG_S_NEEDS_RESET,
  VIRTIO_F_RING_PACKED,
  VIRTIO_MMIO_INT_CONFIG,
  VIRTIO_NET_F_MRG_RXBUF,
  VIRTIO_RING_F_INDIRECT_DESC,
  VirtioConsole,
  VirtioConsoleConfigLayout,
  VirtioNet,
  VirtioNetConfigLayout,
  VirtioNetHdrV1Layout,
  VirtioRng,
} from "@tsvmm/virtio";
import { describe, expect, it } from "vitest";
import { harness, until } from "./helpers/harness.js";

const RINGS = [
  ["split", 0n],
  ["packed", bit(VIRTIO_F_RING_PACKED)],
] as const;

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return (e as TsvmmError).code ?? "not typed";
  }
  return "no error";
}

const wbuf = (h: { heap: { alloc(n: number): number } }, n: number) => ({ addr: h.heap.alloc(n), len: n, writable: true });

describe.each(RINGS)("virtio-console edges, %s ring", (_n, ring) => {
  it("empty input is nothing; input past maxPendingInput is dropped and counted, the rest kept in order", () => {
    const con = new VirtioConsole({ output: () => {}, maxPendingInput: 10 });
    const h = harness(con);
    const [rx] = h.drv.start(ring, [8, 8]);
    con.input(new Uint8Array(0));
    con.input(Buffer.from("abcdef"));
    con.input(Buffer.from("ghijkl"));
    con.input(Buffer.from("mnop"));
    expect(con.droppedInput).toBe(6);
    const b = wbuf(h, 32);
    rx!.add([b]);
    h.drv.kick(0);
    const used = rx!.takeUsed();
    expect(used.map((u) => u.len)).toEqual([10]);
    expect(h.mem.read(b.addr, 10).toString()).toBe("abcdefmnop");
  });

  it("only emerg_wr writes produce output (§5.3.4); other config writes and empty writes do not", () => {
    const out: Buffer[] = [];
    const con = new VirtioConsole({ output: (d) => out.push(d) });
    const h = harness(con);
    h.drv.writeConfig(VirtioConsoleConfigLayout.offsetOf("cols"), Buffer.from([1, 2]));
    h.drv.writeConfig(VirtioConsoleConfigLayout.offsetOf("emergWr"), Buffer.alloc(0));
    expect(out).toEqual([]);
    // Usable before the queues exist, as early boot code does.
    h.drv.writeConfig(VirtioConsoleConfigLayout.offsetOf("emergWr"), Buffer.from([0x5a]));
    expect(Buffer.concat(out).toString()).toBe("Z");
    expect(VirtioConsoleConfigLayout.decode(h.drv.readConfig(0, VirtioConsoleConfigLayout.size)).cols).toBe(80);
  });

  it("resize before DRIVER_OK updates the config without an interrupt; a transmit chain with no readable bytes outputs nothing", () => {
    const out: Buffer[] = [];
    const con = new VirtioConsole({ output: (d) => out.push(d) });
    const h = harness(con);
    con.resize(40, 12);
    expect(h.t.configGeneration).toBe(0);
    expect(h.t.interruptStatus).toBe(0);
    const [, tx] = h.drv.start(ring, [8, 8]);
    expect(VirtioConsoleConfigLayout.decode(h.drv.readConfig(0, VirtioConsoleConfigLayout.size)).rows).toBe(12);
    tx!.add([wbuf(h, 8)]);
    h.drv.kick(1);
    expect(tx!.takeUsed().map((u) => u.len)).toEqual([0]);
    expect(out).toEqual([]);
  });

  it("input waits while receiveq is not enabled, and arrives once the driver enables it after DRIVER_OK", () => {
    const con = new VirtioConsole({ output: () => {} });
    const h = harness(con);
    h.drv.negotiate(ring);
    h.drv.setupQueue(1, 8);
    h.drv.driverOk();
    con.input(Buffer.from("late"));
    con.queueNotify(0);
    const rx = h.drv.setupQueue(0, 8);
    const b = wbuf(h, 8);
    rx.add([b]);
    h.drv.kick(0);
    expect(rx.takeUsed().map((u) => u.len)).toEqual([4]);
    expect(h.mem.read(b.addr, 4).toString()).toBe("late");
  });

  it("a receive buffer outside guest RAM is DEVICE_NEEDS_RESET", () => {
    const con = new VirtioConsole({ output: () => {} });
    const h = harness(con);
    const [rx] = h.drv.start(ring, [8, 8]);
    rx!.add([{ addr: 0x100, len: 8, writable: true }]);
    con.input(Buffer.from("x"));
    expect(h.drv.status & VIRTIO_CONFIG_S_NEEDS_RESET).toBe(VIRTIO_CONFIG_S_NEEDS_RESET);
    expect(h.errors.map((e) => e.code)).toEqual(["VIRTQ_BUFFER_OUT_OF_RANGE"]);
  });
});

describe("virtio-console state and draining", () => {
  it("notifications before activation and for a queue it does not have do nothing", () => {
    const out: Buffer[] = [];
    const con = new VirtioConsole({ output: (d) => out.push(d) });
    con.queueNotify(1);
    const h = harness(con);
    const [, tx] = h.drv.start(0n, [8, 8]);
    const a = h.heap.alloc(2);
    h.mem.write(a, Buffer.from("hi"));
    tx!.add([{ addr: a, len: 2, writable: false }]);
    con.queueNotify(2);
    expect(out).toEqual([]);
    h.drv.kick(1);
    expect(Buffer.concat(out).toString()).toBe("hi");
  });

  it("input pending at a snapshot reaches the guest of the restored device; cols/rows survive", () => {
    const con = new VirtioConsole({ output: () => {}, cols: 100, rows: 40 });
    const h = harness(con);
    h.drv.start(0n, [8, 8]);
    con.input(Buffer.from("carried over"));
    const s = JSON.parse(JSON.stringify(h.t.saveState()));
    const con2 = new VirtioConsole({ output: () => {} });
    const t2 = new MmioTransport(con2, { mem: h.mem, interrupt: { trigger() {} } });
    t2.restoreState(s);
    const raw = Buffer.alloc(VirtioConsoleConfigLayout.size);
    t2.read(0x100, raw);
    const cfg = VirtioConsoleConfigLayout.decode(raw);
    expect([cfg.cols, cfg.rows]).toEqual([100, 40]);
    const [rx] = h.drv.queues;
    const b = wbuf(h, 32);
    rx!.add([b]);
    t2.notify(0);
    expect(rx!.takeUsed().map((u) => u.len)).toEqual([12]);
    expect(h.mem.read(b.addr, 12).toString()).toBe("carried over");
    // Nothing pending: restores to nothing pending.
    const con3 = new VirtioConsole({ output: () => {} });
    con3.restoreState(con2.saveState());
    expect(con3.saveState()).toEqual({ cols: 100, rows: 40, pendingInput: "" });
  });

  it("restoreState refuses a state without cols, rows and pendingInput", () => {
    const con = new VirtioConsole({ output: () => {} });
    for (const bad of [null, 1, {}, { cols: 1, rows: 1 }, { cols: "1", rows: 1, pendingInput: "" }, { cols: 1, rows: null, pendingInput: "" }]) {
      expect(codeOf(() => con.restoreState(bad))).toBe("VIRTIO_DEVICE_BAD_STATE");
    }
  });

  it("more than 1024 transmit chains in one go are all sent, in order, over later turns", async () => {
    const out: Buffer[] = [];
    const con = new VirtioConsole({ output: (d) => out.push(d), queueSize: 2048 });
    const h = harness(con);
    const [, tx] = h.drv.start(0n, [8, 2048]);
    const n = 1300;
    for (let i = 0; i < n; i++) {
      const a = h.heap.alloc(4);
      h.mem.writeU32(a, i);
      tx!.add([{ addr: a, len: 4, writable: false }]);
    }
    h.drv.kick(1);
    expect(out.length).toBe(1024);
    await until(() => out.length === n, "all output");
    expect(out.map((b) => b.readUInt32LE(0))).toEqual(Array.from({ length: n }, (_, i) => i));
  });
});

describe("virtio-rng edges", () => {
  it("maxBytesPerRequest caps each fill (the spec lets the device return fewer bytes)", () => {
    const rng = new VirtioRng({ maxBytesPerRequest: 16 });
    const h = harness(rng);
    const [q] = h.drv.start(0n, [8]);
    const b = wbuf(h, 64);
    q!.add([b]);
    h.drv.kick(0);
    expect(q!.takeUsed().map((u) => u.len)).toEqual([16]);
    expect(h.mem.read(b.addr + 16, 48).equals(Buffer.alloc(48))).toBe(true);
    expect(rng.bytesServed).toBe(16);
  });

  it("ignores a notify before activation or for a queue it does not have; more than 1024 requests finish over later turns", async () => {
    const rng = new VirtioRng({ queueSize: 2048 });
    rng.queueNotify(0);
    const h = harness(rng);
    const [q] = h.drv.start(bit(VIRTIO_RING_F_INDIRECT_DESC), [2048]);
    for (let i = 0; i < 1500; i++) q!.add([wbuf(h, 4)]);
    rng.queueNotify(1);
    expect(rng.bytesServed).toBe(0);
    h.drv.kick(0);
    expect(rng.bytesServed).toBe(4096);
    await until(() => rng.bytesServed === 6000, "all requests");
    const used = q!.takeUsed();
    expect(used.length).toBe(1500);
  });

  it("has no configuration space: reads are zero at any offset, writes change nothing", () => {
    const h = harness(new VirtioRng());
    h.drv.writeConfig(0, Buffer.from([1, 2, 3, 4]));
    expect([...h.drv.readConfig(0, 4)]).toEqual([0, 0, 0, 0]);
    expect(h.errors).toEqual([]);
  });

  it("restoreState takes a byte count and nothing else", () => {
    const rng = new VirtioRng();
    rng.restoreState({ bytesServed: 77 });
    expect(rng.saveState()).toEqual({ bytesServed: 77 });
    for (const bad of [null, 3, {}, { bytesServed: "1" }]) expect(codeOf(() => rng.restoreState(bad))).toBe("VIRTIO_DEVICE_BAD_STATE");
  });
});

/** A NetBackend that keeps what the guest sent and hands frames in on demand (a cable to the test). */
class CableBackend implements NetBackend {
  sent: Buffer[] = [];
  private deliver: ((f: Buffer) => void) | undefined;
  write(frame: Buffer): void {
    this.sent.push(Buffer.from(frame));
  }
  onFrame(cb: (frame: Buffer) => void): void {
    this.deliver = cb;
  }
  inject(frame: Buffer): void {
    this.deliver?.(frame);
  }
}

const HDR = VirtioNetHdrV1Layout.size;
const netHdr = () => VirtioNetHdrV1Layout.encode({ flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0, numBuffers: 0 });

describe.each(RINGS)("virtio-net edges, %s ring", (_n, ring) => {
  it("transmit: a chain without a whole header or with a frame over 64 KiB + headers is dropped and counted; a header-only chain sends an empty frame", () => {
    const be = new CableBackend();
    const net = new VirtioNet({ backend: be });
    const h = harness(net, {}, 16 << 20);
    const [, tx] = h.drv.start(ring, [16, 16]);
    const put = (b: Buffer) => {
      const a = h.heap.alloc(b.length);
      h.mem.write(a, b);
      tx!.add([{ addr: a, len: b.length, writable: false }]);
    };
    put(Buffer.alloc(HDR - 1));
    put(Buffer.concat([netHdr(), Buffer.alloc(65551)]));
    const max = randomBytes(65550);
    put(Buffer.concat([netHdr(), max]));
    put(netHdr());
    h.drv.kick(1);
    expect(tx!.takeUsed().map((u) => u.len)).toEqual([0, 0, 0, 0]);
    expect(net.stats.txDropped).toBe(2);
    expect(net.stats.txFrames).toBe(2);
    expect(be.sent.map((f) => f.length)).toEqual([65550, 0]);
    expect(be.sent[0]!.equals(max)).toBe(true);
  });

  it("mergeable: with some but too few buffers the frame waits, the buffers are untouched, and it goes out once enough are posted", () => {
    const be = new CableBackend();
    const net = new VirtioNet({ backend: be });
    const h = harness(net);
    const [rx] = h.drv.start(ring | bit(VIRTIO_NET_F_MRG_RXBUF), [16, 16]);
    const first = [wbuf(h, 256), wbuf(h, 256)];
    for (const b of first) rx!.add([b]);
    h.drv.kick(0);
    const frame = randomBytes(1000);
    be.inject(frame);
    expect(rx!.takeUsed()).toEqual([]);
    expect(net.pendingFrames).toBe(1);
    for (let i = 0; i < 3; i++) rx!.add([wbuf(h, 256)]);
    h.drv.kick(0);
    const used = rx!.takeUsed();
    expect(used.map((u) => u.len)).toEqual([256, 256, 256, 244]);
    const all = Buffer.concat(used.map((u) => h.mem.read(u.elements[0]!.addr, u.len)));
    expect(VirtioNetHdrV1Layout.decode(all).numBuffers).toBe(4);
    expect(all.subarray(HDR).equals(frame)).toBe(true);
    expect(used[0]!.elements[0]!.addr).toBe(first[0]!.addr);
  });

  it("host frames: dropped before DRIVER_OK, held up to maxPendingFrames while receiveq is not enabled, dropped by a reset", () => {
    const be = new CableBackend();
    const net = new VirtioNet({ backend: be, maxPendingFrames: 2 });
    const h = harness(net);
    be.inject(randomBytes(60));
    expect(net.stats.rxDropped).toBe(1);
    h.drv.negotiate(ring);
    h.drv.setupQueue(1, 8);
    h.drv.driverOk();
    const frames = [randomBytes(60), randomBytes(61), randomBytes(62)];
    for (const f of frames) be.inject(f);
    expect(net.pendingFrames).toBe(2);
    expect(net.stats.rxDropped).toBe(2);
    net.queueNotify(5);
    const rx = h.drv.setupQueue(0, 8);
    rx.add([wbuf(h, 128)]);
    rx.add([wbuf(h, 128)]);
    h.drv.kick(0);
    const used = rx.takeUsed();
    expect(used.map((u) => u.len)).toEqual([HDR + 60, HDR + 61]);
    expect(h.mem.read(used[1]!.elements[0]!.addr + HDR, 61).equals(frames[1]!)).toBe(true);
    be.inject(randomBytes(60));
    expect(net.pendingFrames).toBe(1);
    h.drv.writeReg(0x70, 0);
    expect(net.pendingFrames).toBe(0);
  });

  it("a receive buffer outside guest RAM is DEVICE_NEEDS_RESET", () => {
    const be = new CableBackend();
    const net = new VirtioNet({ backend: be });
    const h = harness(net);
    const [rx] = h.drv.start(ring, [16, 16]);
    rx!.add([{ addr: 0x100, len: 2048, writable: true }]);
    be.inject(randomBytes(100));
    expect(h.drv.status & VIRTIO_CONFIG_S_NEEDS_RESET).toBe(VIRTIO_CONFIG_S_NEEDS_RESET);
    expect(h.drv.ackInterrupts() & VIRTIO_MMIO_INT_CONFIG).toBe(VIRTIO_MMIO_INT_CONFIG);
  });
});

describe("virtio-net construction, config and state", () => {
  it("a MAC that is not 6 bytes is refused; MTU shows in config space; the config ends before speed", () => {
    expect(codeOf(() => new VirtioNet({ backend: new CableBackend(), mac: [1, 2, 3, 4, 5] }))).toBe("VIRTIO_DEVICE_BAD_CONFIG");
    const net = new VirtioNet({ backend: new CableBackend(), mtu: 9000 });
    const h = harness(net);
    const raw = h.drv.readConfig(0, VirtioNetConfigLayout.size);
    const cfg = VirtioNetConfigLayout.decode(raw);
    expect(cfg.mtu).toBe(9000);
    expect(raw.subarray(VirtioNetConfigLayout.offsetOf("speed")).equals(Buffer.alloc(VirtioNetConfigLayout.size - VirtioNetConfigLayout.offsetOf("speed")))).toBe(true);
    // The MAC is not writable on a modern device.
    h.drv.writeConfig(0, Buffer.from([9, 9, 9, 9, 9, 9]));
    expect([...VirtioNetConfigLayout.decode(h.drv.readConfig(0, VirtioNetConfigLayout.size)).mac]).toEqual([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
  });

  it("restoreState takes only the same MAC", () => {
    const net = new VirtioNet({ backend: new CableBackend() });
    net.restoreState(net.saveState());
    for (const bad of [null, 0, {}, { mac: "000000000000" }]) expect(codeOf(() => net.restoreState(bad))).toBe("VIRTIO_DEVICE_BAD_STATE");
  });

  it("a pause between a capped transmit drain and its continuation holds the rest until resume", async () => {
    const be = new CableBackend();
    const net = new VirtioNet({ backend: be, queueSize: 2048 });
    const h = harness(net);
    const [, tx] = h.drv.start(0n, [8, 2048]);
    for (let i = 0; i < 1100; i++) {
      const a = h.heap.alloc(HDR + 4);
      h.mem.write(a, netHdr());
      h.mem.writeU32(a + HDR, i);
      tx!.add([{ addr: a, len: HDR + 4, writable: false }]);
    }
    h.drv.kick(1);
    expect(be.sent.length).toBe(1024);
    const paused = h.t.pause();
    await new Promise((r) => setTimeout(r, 20));
    await paused;
    expect(be.sent.length).toBe(1024);
    expect(tx!.takeUsed().length).toBe(1024);
    h.t.resume();
    await until(() => be.sent.length === 1100, "the rest after resume");
    expect(be.sent.map((f) => f.readUInt32LE(0))).toEqual(Array.from({ length: 1100 }, (_, i) => i));
  });

  it("more than 1024 transmitted frames in one go all reach the backend over later turns", async () => {
    const be = new CableBackend();
    const net = new VirtioNet({ backend: be, queueSize: 2048 });
    const h = harness(net);
    const [, tx] = h.drv.start(0n, [8, 2048]);
    const n = 1200;
    for (let i = 0; i < n; i++) {
      const a = h.heap.alloc(HDR + 4);
      h.mem.write(a, netHdr());
      h.mem.writeU32(a + HDR, i);
      tx!.add([{ addr: a, len: HDR + 4, writable: false }]);
    }
    h.drv.kick(1);
    expect(be.sent.length).toBe(1024);
    await until(() => be.sent.length === n, "all frames");
    expect(be.sent.map((f) => f.readUInt32LE(0))).toEqual(Array.from({ length: n }, (_, i) => i));
  });
});
