import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { connect, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  bit,
  type DriverQueue,
  VIRTIO_F_RING_PACKED,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_VSOCK_OP_CREDIT_UPDATE,
  VIRTIO_VSOCK_OP_REQUEST,
  VIRTIO_VSOCK_OP_RESPONSE,
  VIRTIO_VSOCK_OP_RST,
  VIRTIO_VSOCK_OP_RW,
  VIRTIO_VSOCK_OP_SHUTDOWN,
  VIRTIO_VSOCK_TYPE_STREAM,
  VirtioVsock,
  VirtioVsockConfigLayout,
  type VirtioVsockHdr,
  VirtioVsockHdrLayout,
} from "@tsvmm/virtio";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { harness, until } from "./helpers/harness.js";

const CID = 3;
const HDR = VirtioVsockHdrLayout.size;
const GUEST_BUF_ALLOC = 64 * 1024;

let dir = "";
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "tsvmm-vsock-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Pkt {
  hdr: VirtioVsockHdr;
  data: Buffer;
}

/** The guest's side of vsock, just enough of virtio 1.2 §5.10 to drive streams with credit. */
class GuestVsock {
  received = new Map<number, Buffer[]>();
  fwdCnt = new Map<number, number>();
  reported = new Map<number, number>();
  peerCredit = new Map<number, { bufAlloc: number; fwdCnt: number; txCnt: number }>();
  ctl: Pkt[] = [];
  constructor(
    readonly h: ReturnType<typeof harness<VirtioVsock>>,
    readonly rx: DriverQueue,
    readonly tx: DriverQueue,
  ) {
    for (let i = 0; i < rx.size; i++) this.postRx();
    h.drv.kick(0);
  }
  private postRx(): void {
    this.rx.add([{ addr: this.h.heap.alloc(HDR + 4096), len: HDR + 4096, writable: true }]);
  }
  send(op: number, srcPort: number, dstPort: number, data: Buffer = Buffer.alloc(0), flags = 0): void {
    const hdr = VirtioVsockHdrLayout.encode({
      srcCid: BigInt(CID),
      dstCid: 2n,
      srcPort,
      dstPort,
      len: data.length,
      type: VIRTIO_VSOCK_TYPE_STREAM,
      op,
      flags,
      bufAlloc: GUEST_BUF_ALLOC,
      fwdCnt: this.fwdCnt.get(srcPort) ?? 0,
    });
    this.reported.set(srcPort, this.fwdCnt.get(srcPort) ?? 0);
    const a = this.h.heap.alloc(HDR + data.length);
    this.h.mem.write(a, Buffer.concat([hdr, data] as Uint8Array[]));
    while (this.tx.add([{ addr: a, len: HDR + data.length, writable: false }]) < 0) this.tx.takeUsed();
    this.h.drv.kick(1);
    this.tx.takeUsed();
  }
  /** Take what the device delivered; consume data (advancing fwd_cnt) and return credit as a Linux guest would. */
  poll(): void {
    const used = this.rx.takeUsed();
    for (const u of used) {
      const el = u.elements[0]!;
      const raw = this.h.mem.read(el.addr, u.len);
      const hdr = VirtioVsockHdrLayout.decode(raw);
      const data = raw.subarray(HDR, HDR + hdr.len);
      const port = hdr.dstPort;
      const pc = this.peerCredit.get(port) ?? { bufAlloc: 0, fwdCnt: 0, txCnt: 0 };
      pc.bufAlloc = hdr.bufAlloc;
      pc.fwdCnt = hdr.fwdCnt;
      this.peerCredit.set(port, pc);
      if (hdr.op === VIRTIO_VSOCK_OP_RW) {
        const list = this.received.get(port) ?? [];
        list.push(Buffer.from(data));
        this.received.set(port, list);
        this.fwdCnt.set(port, (this.fwdCnt.get(port) ?? 0) + data.length);
        // The device must never exceed the window we advertised.
        expect((this.fwdCnt.get(port) ?? 0) - (this.reported.get(port) ?? 0)).toBeLessThanOrEqual(GUEST_BUF_ALLOC);
      } else this.ctl.push({ hdr, data: Buffer.from(data) });
      this.postRx();
    }
    if (used.length > 0) this.h.drv.kick(0);
    for (const [port, f] of this.fwdCnt) {
      if (f - (this.reported.get(port) ?? 0) >= 16 * 1024 && this.hostPortOf.has(port)) this.send(VIRTIO_VSOCK_OP_CREDIT_UPDATE, port, this.hostPortOf.get(port) ?? 0);
    }
  }
  hostPortOf = new Map<number, number>();
  /** Send `data` on a connection, never past the host's credit. */
  async stream(port: number, data: Buffer): Promise<void> {
    let off = 0;
    while (off < data.length) {
      this.poll();
      const pc = this.peerCredit.get(port)!;
      const credit = pc.bufAlloc - (pc.txCnt - pc.fwdCnt);
      const n = Math.min(credit, 4096, data.length - off);
      if (n <= 0) {
        await new Promise((r) => setTimeout(r, 1));
        continue;
      }
      this.send(VIRTIO_VSOCK_OP_RW, port, this.hostPortOf.get(port)!, data.subarray(off, off + n));
      pc.txCnt += n;
      off += n;
    }
  }
  async waitCtl(op: number): Promise<Pkt> {
    let p: Pkt | undefined;
    await until(() => {
      this.poll();
      const i = this.ctl.findIndex((x) => x.hdr.op === op);
      if (i >= 0) [p] = this.ctl.splice(i, 1);
      return p !== undefined;
    }, `vsock op ${op}`);
    return p!;
  }
  bytes(port: number): number {
    return (this.received.get(port) ?? []).reduce((n, b) => n + b.length, 0);
  }
}

async function setup(name: string, ring: bigint) {
  const uds = join(dir, name);
  const dev = new VirtioVsock({ guestCid: CID, udsPath: uds, bufAlloc: 128 * 1024 });
  await dev.listen();
  const h = harness(dev, {}, 32 << 20);
  const [rx, tx] = h.drv.start(ring | bit(VIRTIO_RING_F_EVENT_IDX), [64, 64, 8]);
  return { uds, dev, h, g: new GuestVsock(h, rx!, tx!) };
}

function readAll(s: Socket, n: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let got = 0;
  return new Promise((resolve) => {
    s.on("data", (d: Buffer) => {
      parts.push(d);
      got += d.length;
      if (got >= n) resolve(Buffer.concat(parts));
    });
  });
}

describe.each([
  ["split", 0n],
  ["packed", bit(VIRTIO_F_RING_PACKED)],
])("virtio-vsock over real Unix sockets, %s ring", (name, ring) => {
  it("config space holds the guest CID", async () => {
    const { h, dev } = await setup(`cfg-${name}`, ring);
    expect(VirtioVsockConfigLayout.decode(h.drv.readConfig(0, 8)).guestCid).toBe(3n);
    await dev.close();
  });

  it("guest connects to port P -> host listener on udsPath_P; more than one credit window each way", async () => {
    const { uds, dev, g } = await setup(`g2h-${name}`, ring);
    const toHost = randomBytes(400 * 1024);
    const toGuest = randomBytes(300 * 1024);
    let hostGot: Promise<Buffer> | undefined;
    const srv = createServer((s) => {
      hostGot = readAll(s, toHost.length);
      s.write(toGuest);
    });
    await new Promise<void>((r) => srv.listen(`${uds}_5000`, r));
    g.hostPortOf.set(1025, 5000);
    g.send(VIRTIO_VSOCK_OP_REQUEST, 1025, 5000);
    const resp = await g.waitCtl(VIRTIO_VSOCK_OP_RESPONSE);
    expect(resp.hdr.srcPort).toBe(5000);
    expect(resp.hdr.bufAlloc).toBe(128 * 1024);
    await g.stream(1025, toHost);
    await until(() => hostGot !== undefined, "host accept");
    expect((await hostGot!).equals(toHost)).toBe(true);
    await until(() => {
      g.poll();
      return g.bytes(1025) >= toGuest.length;
    }, "host->guest data");
    expect(Buffer.concat(g.received.get(1025)!).equals(toGuest)).toBe(true);
    // Orderly close from the guest: SHUTDOWN both ways is answered with RST.
    g.send(VIRTIO_VSOCK_OP_SHUTDOWN, 1025, 5000, Buffer.alloc(0), 3);
    await g.waitCtl(VIRTIO_VSOCK_OP_RST);
    expect(dev.connectionCount).toBe(0);
    srv.close();
    await dev.close();
  });

  it("host connects to udsPath with CONNECT <port>, gets OK <hostport>; streams both ways past the window", async () => {
    const { uds, dev, g } = await setup(`h2g-${name}`, ring);
    const sock = connect(uds);
    await new Promise<void>((r) => sock.once("connect", () => r()));
    sock.write("CONNECT 52\n");
    const req = await g.waitCtl(VIRTIO_VSOCK_OP_REQUEST);
    expect(req.hdr.dstPort).toBe(52);
    const hostPort = req.hdr.srcPort;
    g.hostPortOf.set(52, hostPort);
    const okLine = new Promise<string>((resolve) => {
      let s = "";
      const on = (d: Buffer) => {
        s += d.toString("latin1");
        if (s.includes("\n")) {
          sock.off("data", on);
          resolve(s);
        }
      };
      sock.on("data", on);
    });
    g.send(VIRTIO_VSOCK_OP_RESPONSE, 52, hostPort);
    const line = await okLine;
    expect(line).toBe(`OK ${hostPort}\n`);
    const toGuest = randomBytes(300 * 1024);
    const toHost = randomBytes(300 * 1024);
    const hostGot = readAll(sock, toHost.length);
    sock.write(toGuest);
    await until(() => {
      g.poll();
      return g.bytes(52) >= toGuest.length;
    }, "host->guest");
    expect(Buffer.concat(g.received.get(52)!).equals(toGuest)).toBe(true);
    await g.stream(52, toHost);
    expect((await hostGot).equals(toHost)).toBe(true);
    // The host closes: the guest is told with SHUTDOWN.
    sock.end();
    await g.waitCtl(VIRTIO_VSOCK_OP_SHUTDOWN);
    g.send(VIRTIO_VSOCK_OP_RST, 52, hostPort);
    await until(() => dev.connectionCount === 0, "connection gone");
    await dev.close();
  });

  it("a guest connect to a port nobody listens on is answered with RST; data on no connection too", async () => {
    const { dev, g } = await setup(`rst-${name}`, ring);
    g.send(VIRTIO_VSOCK_OP_REQUEST, 2000, 7777);
    expect((await g.waitCtl(VIRTIO_VSOCK_OP_RST)).hdr.dstPort).toBe(2000);
    g.send(VIRTIO_VSOCK_OP_RW, 2001, 7778, Buffer.from("x"));
    expect((await g.waitCtl(VIRTIO_VSOCK_OP_RST)).hdr.dstPort).toBe(2001);
    expect(dev.connectionCount).toBe(0);
    await dev.close();
  });
});
