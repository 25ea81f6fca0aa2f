import { randomBytes } from "node:crypto";
import { createSocket, type Socket } from "node:dgram";
import {
  bit,
  type NetBackend,
  type UsedBuffer,
  VIRTIO_F_RING_PACKED,
  VIRTIO_NET_F_MAC,
  VIRTIO_NET_F_MRG_RXBUF,
  VIRTIO_NET_F_STATUS,
  VIRTIO_NET_S_LINK_UP,
  VIRTIO_RING_F_EVENT_IDX,
  VirtioNet,
  VirtioNetConfigLayout,
  VirtioNetHdrV1Layout,
} from "@tsvmm/virtio";
import { afterEach, describe, expect, it } from "vitest";
import { harness, until } from "./helpers/harness.js";

/** A real backend: one end of a connected pair of UDP sockets on loopback, one datagram per frame. */
class DatagramBackend implements NetBackend {
  constructor(private readonly s: Socket) {}
  write(frame: Buffer): void {
    this.s.send(frame);
  }
  onFrame(cb: (frame: Buffer) => void): void {
    this.s.on("message", (m) => cb(m));
  }
}

async function socketPair(): Promise<[Socket, Socket]> {
  const a = createSocket("udp4");
  const b = createSocket("udp4");
  await Promise.all([new Promise<void>((r) => a.bind(0, "127.0.0.1", r)), new Promise<void>((r) => b.bind(0, "127.0.0.1", r))]);
  await Promise.all([new Promise<void>((r) => a.connect(b.address().port, "127.0.0.1", r)), new Promise<void>((r) => b.connect(a.address().port, "127.0.0.1", r))]);
  return [a, b];
}

const open: Socket[] = [];
afterEach(() => {
  for (const s of open.splice(0)) s.close();
});

const HDR = VirtioNetHdrV1Layout.size;

describe.each([
  ["split", 0n],
  ["packed", bit(VIRTIO_F_RING_PACKED)],
])("virtio-net through a socket pair, %s ring", (_n, ring) => {
  it("config: MAC and link status; 12-byte header", async () => {
    const [a, b] = await socketPair();
    open.push(a, b);
    const net = new VirtioNet({ backend: new DatagramBackend(a), mac: [2, 0, 0, 0, 0, 7] });
    const h = harness(net);
    h.drv.start(ring | bit(VIRTIO_NET_F_MAC) | bit(VIRTIO_NET_F_STATUS), [16, 16]);
    const cfg = VirtioNetConfigLayout.decode(Buffer.concat([h.drv.readConfig(0, 12), Buffer.alloc(12)] as Uint8Array[]));
    expect([...cfg.mac]).toEqual([2, 0, 0, 0, 0, 7]);
    expect(cfg.status).toBe(VIRTIO_NET_S_LINK_UP);
    expect(HDR).toBe(12);
  });

  it("a frame the guest sends comes out of the peer socket; the peer's answer reaches the guest with num_buffers", async () => {
    const [a, b] = await socketPair();
    open.push(a, b);
    const net = new VirtioNet({ backend: new DatagramBackend(a) });
    const h = harness(net);
    const [rx, tx] = h.drv.start(ring | bit(VIRTIO_RING_F_EVENT_IDX) | bit(VIRTIO_NET_F_MAC), [16, 16]);
    for (let i = 0; i < 4; i++) rx!.add([{ addr: h.heap.alloc(2048), len: 2048, writable: true }]);
    h.drv.kick(0);
    const frame = randomBytes(1000);
    const got = new Promise<Buffer>((r) => b.once("message", (m) => r(m)));
    const a1 = h.heap.alloc(HDR + frame.length);
    h.mem.write(a1, Buffer.concat([VirtioNetHdrV1Layout.encode({ flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0, numBuffers: 0 }), frame] as Uint8Array[]));
    tx!.add([
      { addr: a1, len: HDR, writable: false },
      { addr: a1 + HDR, len: frame.length, writable: false },
    ]);
    h.drv.kick(1);
    expect((await got).equals(frame)).toBe(true);
    expect(tx!.takeUsed().length).toBe(1);

    const answer = randomBytes(1400);
    b.send(answer);
    const used: UsedBuffer[] = [];
    await until(() => {
      used.push(...rx!.takeUsed());
      return used.length > 0;
    }, "rx frame");
    expect(used[0]!.len).toBe(HDR + answer.length);
    const buf = h.mem.read(used[0]!.elements[0]!.addr, used[0]!.len);
    expect(VirtioNetHdrV1Layout.decode(buf).numBuffers).toBe(1);
    expect(buf.subarray(HDR).equals(answer)).toBe(true);
  });

  it("mergeable rx buffers: a big frame spans several chains; without buffers it waits for them", async () => {
    const [a, b] = await socketPair();
    open.push(a, b);
    const net = new VirtioNet({ backend: new DatagramBackend(a) });
    const h = harness(net);
    const [rx] = h.drv.start(ring | bit(VIRTIO_NET_F_MRG_RXBUF), [16, 16]);
    const answer = randomBytes(1500);
    b.send(answer);
    await until(() => net.pendingFrames > 0, "frame queued");
    expect(rx!.takeUsed()).toEqual([]);
    for (let i = 0; i < 6; i++) rx!.add([{ addr: h.heap.alloc(256), len: 256, writable: true }]);
    h.drv.kick(0);
    const used = rx!.takeUsed();
    expect(used.map((u) => u.len)).toEqual([256, 256, 256, 256, 256, 232]);
    const all = Buffer.concat(used.map((u) => h.mem.read(u.elements[0]!.addr, u.len)) as Uint8Array[]);
    expect(VirtioNetHdrV1Layout.decode(all).numBuffers).toBe(6);
    expect(all.subarray(HDR).equals(answer)).toBe(true);
  });

  it("without mergeable buffers a frame larger than the chain is dropped and counted", async () => {
    const [a, b] = await socketPair();
    open.push(a, b);
    const net = new VirtioNet({ backend: new DatagramBackend(a) });
    const h = harness(net);
    const [rx] = h.drv.start(ring, [16, 16]);
    rx!.add([{ addr: h.heap.alloc(256), len: 256, writable: true }]);
    h.drv.kick(0);
    b.send(randomBytes(1000));
    await until(() => net.stats.rxDropped === 1, "drop");
    expect(rx!.takeUsed().map((u) => u.len)).toEqual([0]);
  });
});
