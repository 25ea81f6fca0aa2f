import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TsvmmError } from "@tsvmm/abi";
import {
  bit,
  type DriverQueue,
  MmioTransport,
  VIRTIO_CONFIG_S_NEEDS_RESET,
  VIRTIO_F_RING_PACKED,
  VIRTIO_VSOCK_EVENT_TRANSPORT_RESET,
  VIRTIO_VSOCK_OP_CREDIT_REQUEST,
  VIRTIO_VSOCK_OP_CREDIT_UPDATE,
  VIRTIO_VSOCK_OP_INVALID,
  VIRTIO_VSOCK_OP_REQUEST,
  VIRTIO_VSOCK_OP_RESPONSE,
  VIRTIO_VSOCK_OP_RST,
  VIRTIO_VSOCK_OP_RW,
  VIRTIO_VSOCK_OP_SHUTDOWN,
  VIRTIO_VSOCK_SHUTDOWN_RCV,
  VIRTIO_VSOCK_SHUTDOWN_SEND,
  VIRTIO_VSOCK_TYPE_SEQPACKET,
  VIRTIO_VSOCK_TYPE_STREAM,
  VirtioVsock,
  VirtioVsockEventLayout,
  type VirtioVsockHdr,
  VirtioVsockHdrLayout,
} from "@tsvmm/virtio";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { harness, until } from "./helpers/harness.js";

const CID = 3;
const HDR = VirtioVsockHdrLayout.size;

let dir = "";
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "tsvmm-vsock-edge-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return (e as TsvmmError).code ?? "not typed";
  }
  return "no error";
}

interface Pkt {
  hdr: VirtioVsockHdr;
  data: Buffer;
}

/** The guest end of a vsock device: raw packets in and out, rx buffers of a chosen size. */
class Guest {
  got: Pkt[] = [];
  constructor(
    readonly h: ReturnType<typeof harness<VirtioVsock>>,
    public rx: DriverQueue,
    readonly tx: DriverQueue,
    public ev: DriverQueue,
  ) {}
  postRx(n: number, size = HDR + 4096): void {
    for (let i = 0; i < n; i++) this.rx.add([{ addr: this.h.heap.alloc(size), len: size, writable: true }]);
    this.h.drv.kick(0);
  }
  /** A packet from the guest; `fields` override a well-formed stream header, `bytes` is what follows it in the chain. */
  send(fields: Partial<VirtioVsockHdr>, bytes: Buffer = Buffer.alloc(0), chainLen?: number): void {
    const hdr = VirtioVsockHdrLayout.encode({
      srcCid: BigInt(CID),
      dstCid: 2n,
      srcPort: 1000,
      dstPort: 2000,
      len: bytes.length,
      type: VIRTIO_VSOCK_TYPE_STREAM,
      op: VIRTIO_VSOCK_OP_RW,
      flags: 0,
      bufAlloc: 1 << 20,
      fwdCnt: 0,
      ...fields,
    });
    const whole = Buffer.concat([hdr, bytes]);
    const a = this.h.heap.alloc(Math.max(whole.length, 1));
    this.h.mem.write(a, whole);
    if (this.tx.add([{ addr: a, len: chainLen ?? whole.length, writable: false }]) < 0) throw new Error("tx full");
    this.h.drv.kick(1);
    this.tx.takeUsed();
  }
  /** Collect what the device delivered (rx buffers are not re-posted: tests control them). */
  poll(): Pkt[] {
    const fresh: Pkt[] = [];
    for (const u of this.rx.takeUsed()) {
      if (u.len === 0) {
        fresh.push({ hdr: { op: -1 } as VirtioVsockHdr, data: Buffer.alloc(0) });
        continue;
      }
      // The used length covers the writable elements in order, whatever their sizes.
      let left = u.len;
      const raw = Buffer.concat(
        u.elements.map((e) => {
          const n = Math.min(left, e.len);
          left -= n;
          return this.h.mem.read(e.addr, n);
        }),
      );
      const hdr = VirtioVsockHdrLayout.decode(raw);
      fresh.push({ hdr, data: Buffer.from(raw.subarray(HDR, HDR + hdr.len)) });
    }
    this.got.push(...fresh);
    return fresh;
  }
  ops(): number[] {
    this.poll();
    return this.got.map((p) => p.hdr.op);
  }
  async waitOp(op: number): Promise<Pkt> {
    let p: Pkt | undefined;
    await until(() => {
      this.poll();
      const i = this.got.findIndex((x) => x.hdr.op === op);
      if (i >= 0) [p] = this.got.splice(i, 1);
      return p !== undefined;
    }, `op ${op}`);
    return p!;
  }
}

async function setup(name: string, opts: { bufAlloc?: number; queueSize?: number; ring?: bigint; sizes?: number[] } = {}) {
  const uds = join(dir, name);
  const dev = new VirtioVsock({ guestCid: CID, udsPath: uds, bufAlloc: opts.bufAlloc ?? 64 * 1024, queueSize: opts.queueSize });
  await dev.listen();
  const h = harness(dev, {}, 32 << 20);
  const [rx, tx, ev] = h.drv.start(opts.ring ?? 0n, opts.sizes ?? [64, 64, 8]);
  return { uds, dev, h, g: new Guest(h, rx!, tx!, ev!) };
}

function listenOn(path: string, onConn: (s: Socket) => void, allowHalfOpen = false): Promise<Server> {
  const srv = createServer({ allowHalfOpen }, onConn);
  return new Promise((r) => srv.listen(path, () => r(srv)));
}

/** Guest connects from `gport` to host port `hport` (a listener at udsPath_hport); resolves with the host's socket. */
async function guestConnect(env: Awaited<ReturnType<typeof setup>>, gport: number, hport: number, guestBufAlloc = 1 << 20, allowHalfOpen = false) {
  let hostSock: Socket | undefined;
  const srv = await listenOn(
    `${env.uds}_${hport}`,
    (s) => {
      hostSock = s;
    },
    allowHalfOpen,
  );
  env.g.send({ op: VIRTIO_VSOCK_OP_REQUEST, srcPort: gport, dstPort: hport, bufAlloc: guestBufAlloc });
  const resp = await env.g.waitOp(VIRTIO_VSOCK_OP_RESPONSE);
  await until(() => hostSock !== undefined, "host accept");
  return { srv, sock: hostSock!, resp };
}

function readN(s: Socket, n: number): Promise<Buffer> {
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

describe("virtio-vsock construction and lifecycle", () => {
  it("a guest CID outside 3..2^32-2 is refused", () => {
    for (const cid of [0, 1, 2, 2.5, -3, 0xffffffff, 2 ** 40]) {
      expect(codeOf(() => new VirtioVsock({ guestCid: cid, udsPath: "/nonexistent" }))).toBe("VIRTIO_DEVICE_BAD_CONFIG");
    }
    expect(new VirtioVsock({ guestCid: 0xfffffffe, udsPath: "/nonexistent" }).guestCid).toBe(0xfffffffe);
  });

  it("listen replaces a stale socket file; close without listen resolves; listen on an impossible path rejects", async () => {
    const p = join(dir, "stale");
    writeFileSync(p, "left over");
    const dev = new VirtioVsock({ guestCid: 3, udsPath: p });
    await dev.listen();
    const s = connect(p);
    await new Promise<void>((r) => s.once("connect", () => r()));
    s.destroy();
    await dev.close();
    await new VirtioVsock({ guestCid: 3, udsPath: p }).close();
    await expect(new VirtioVsock({ guestCid: 3, udsPath: join(dir, "no-such-dir", "x") }).listen()).rejects.toThrow();
  });

  it("restoreState wants the same guest CID; a restored device tells the driver TRANSPORT_RESET on the event queue (§5.10.6.7)", async () => {
    const { dev, h, g } = await setup("restore");
    for (const bad of [null, 5, {}, { guestCid: 4 }]) expect(codeOf(() => dev.restoreState(bad))).toBe("VIRTIO_DEVICE_BAD_STATE");
    const s = JSON.parse(JSON.stringify(h.t.saveState()));
    const dev2 = new VirtioVsock({ guestCid: CID, udsPath: join(dir, "restore2") });
    const t2 = new MmioTransport(dev2, { mem: h.mem, interrupt: { trigger() {} } });
    t2.restoreState(s);
    expect(g.ev.takeUsed()).toEqual([]);
    const e = h.heap.alloc(8);
    g.ev.add([{ addr: e, len: 8, writable: true }]);
    t2.notify(2);
    const used = g.ev.takeUsed();
    expect(used.map((u) => u.len)).toEqual([VirtioVsockEventLayout.size]);
    expect(VirtioVsockEventLayout.decode(h.mem.read(e, VirtioVsockEventLayout.size)).id).toBe(VIRTIO_VSOCK_EVENT_TRANSPORT_RESET);
    await dev.close();
    await dev2.close();
  });

  it("transportReset drops every connection and posts one event per call, as event buffers allow", async () => {
    const env = await setup("treset");
    const { g, dev, h } = env;
    g.postRx(8);
    const { srv, sock } = await guestConnect(env, 1000, 6000);
    sock.resume();
    const closed = new Promise<void>((r) => sock.once("close", () => r()));
    expect(dev.connectionCount).toBe(1);
    dev.transportReset();
    dev.transportReset();
    expect(dev.connectionCount).toBe(0);
    await closed;
    const e1 = h.heap.alloc(4);
    g.ev.add([{ addr: e1, len: 4, writable: true }]);
    h.drv.kick(2);
    expect(g.ev.takeUsed().length).toBe(1);
    g.ev.add([{ addr: h.heap.alloc(4), len: 4, writable: true }]);
    g.ev.add([{ addr: h.heap.alloc(4), len: 4, writable: true }]);
    h.drv.kick(2);
    expect(g.ev.takeUsed().length).toBe(1);
    srv.close();
    await dev.close();
  });
});

describe("virtio-vsock packets the device refuses (§5.10.6)", () => {
  it("packets not addressed host<-guest are dropped silently; a non-stream type or a payload past the chain is answered with RST", async () => {
    const { g, dev } = await setup("refuse");
    g.postRx(8);
    g.send({ srcCid: 4n, op: VIRTIO_VSOCK_OP_REQUEST });
    g.send({ dstCid: 3n, op: VIRTIO_VSOCK_OP_REQUEST });
    expect(g.ops()).toEqual([]);
    g.send({ type: VIRTIO_VSOCK_TYPE_SEQPACKET, op: VIRTIO_VSOCK_OP_REQUEST, srcPort: 11 });
    g.send({ type: VIRTIO_VSOCK_TYPE_SEQPACKET, op: VIRTIO_VSOCK_OP_RST, srcPort: 12 });
    g.send({ op: VIRTIO_VSOCK_OP_RW, len: 100, srcPort: 13 }, Buffer.alloc(10));
    const p = g.poll();
    expect(p.map((x) => [x.hdr.op, x.hdr.dstPort, x.hdr.srcPort])).toEqual([
      [VIRTIO_VSOCK_OP_RST, 11, 2000],
      [VIRTIO_VSOCK_OP_RST, 13, 2000],
    ]);
    expect(p.every((x) => x.hdr.srcCid === 2n && x.hdr.dstCid === BigInt(CID) && x.hdr.len === 0)).toBe(true);
    await dev.close();
  });

  it("on no connection: unknown ops and RESPONSE get RST; CREDIT_UPDATE, CREDIT_REQUEST, SHUTDOWN and RST get nothing", async () => {
    const { g, dev } = await setup("noconn");
    g.postRx(8);
    for (const op of [VIRTIO_VSOCK_OP_CREDIT_UPDATE, VIRTIO_VSOCK_OP_CREDIT_REQUEST, VIRTIO_VSOCK_OP_SHUTDOWN, VIRTIO_VSOCK_OP_RST]) g.send({ op });
    expect(g.ops()).toEqual([]);
    for (const op of [VIRTIO_VSOCK_OP_INVALID, 99, VIRTIO_VSOCK_OP_RESPONSE]) g.send({ op });
    expect(g.ops()).toEqual([VIRTIO_VSOCK_OP_RST, VIRTIO_VSOCK_OP_RST, VIRTIO_VSOCK_OP_RST]);
    await dev.close();
  });

  it("a tx chain shorter than a header, or an rx buffer smaller than one, is DEVICE_NEEDS_RESET", async () => {
    const a = await setup("short-tx");
    a.g.send({}, Buffer.alloc(0), HDR - 1);
    expect(a.h.drv.status & VIRTIO_CONFIG_S_NEEDS_RESET).toBe(VIRTIO_CONFIG_S_NEEDS_RESET);
    expect(a.h.errors.map((e) => e.code)).toEqual(["VIRTQ_CHAIN_SHORT"]);
    await a.dev.close();

    const b = await setup("short-rx");
    b.g.postRx(1, HDR - 1);
    b.g.send({ op: VIRTIO_VSOCK_OP_INVALID });
    expect(b.h.drv.status & VIRTIO_CONFIG_S_NEEDS_RESET).toBe(VIRTIO_CONFIG_S_NEEDS_RESET);
    expect(b.h.errors.map((e) => e.code)).toEqual(["VIRTQ_CHAIN_SHORT"]);
    await b.dev.close();
  });

  it("more than 1024 tx packets in one go are all consumed over later turns", async () => {
    const { g, dev, h } = await setup("burst", { queueSize: 2048, sizes: [64, 2048, 8] });
    const a = h.heap.alloc(HDR);
    h.mem.write(a, VirtioVsockHdrLayout.encode({ srcCid: 9n, dstCid: 2n, srcPort: 1, dstPort: 2, len: 0, type: 1, op: 1, flags: 0, bufAlloc: 0, fwdCnt: 0 }));
    for (let i = 0; i < 1500; i++) g.tx.add([{ addr: a, len: HDR, writable: false }]);
    h.drv.kick(1);
    expect(g.tx.takeUsed().length).toBe(1024);
    let rest = 0;
    await until(() => {
      rest += g.tx.takeUsed().length;
      return rest === 476;
    }, "the rest of the burst");
    await dev.close();
  });
});

describe.each([
  ["split", 0n],
  ["packed", bit(VIRTIO_F_RING_PACKED)],
])("virtio-vsock connection states, %s ring", (name, ring) => {
  it("established: CREDIT_REQUEST is answered with CREDIT_UPDATE; a RESPONSE or a second REQUEST gets RST and ends the connection; a retry connects", async () => {
    const env = await setup(`states-${name}`, { ring });
    const { g, dev } = env;
    g.postRx(16);
    const { srv, sock, resp } = await guestConnect(env, 1000, 6001);
    expect(resp.hdr.bufAlloc).toBe(64 * 1024);
    g.send({ op: VIRTIO_VSOCK_OP_CREDIT_REQUEST, srcPort: 1000, dstPort: 6001 });
    const cu = await g.waitOp(VIRTIO_VSOCK_OP_CREDIT_UPDATE);
    expect([cu.hdr.bufAlloc, cu.hdr.fwdCnt, cu.hdr.dstPort, cu.hdr.srcPort]).toEqual([64 * 1024, 0, 1000, 6001]);
    g.send({ op: VIRTIO_VSOCK_OP_CREDIT_UPDATE, srcPort: 1000, dstPort: 6001 });
    const closed = new Promise<void>((r) => sock.once("close", () => r()));
    sock.resume();
    g.send({ op: VIRTIO_VSOCK_OP_RESPONSE, srcPort: 1000, dstPort: 6001 });
    expect((await g.waitOp(VIRTIO_VSOCK_OP_RST)).hdr.dstPort).toBe(1000);
    expect(dev.connectionCount).toBe(0);
    await closed;

    // A REQUEST for a pair that is connected already (a guest that lost the connection): RST, and the old one ends.
    const second = await guestConnect(env, 1001, 6011);
    const closed2 = new Promise<void>((r) => second.sock.once("close", () => r()));
    second.sock.resume();
    g.send({ op: VIRTIO_VSOCK_OP_REQUEST, srcPort: 1001, dstPort: 6011 });
    expect((await g.waitOp(VIRTIO_VSOCK_OP_RST)).hdr.dstPort).toBe(1001);
    await closed2;
    expect(dev.connectionCount).toBe(0);
    g.send({ op: VIRTIO_VSOCK_OP_REQUEST, srcPort: 1001, dstPort: 6011 });
    expect((await g.waitOp(VIRTIO_VSOCK_OP_RESPONSE)).hdr.dstPort).toBe(1001);
    expect(dev.connectionCount).toBe(1);
    srv.close();
    second.srv.close();
    await dev.close();
  });

  it("a guest that sends past the credit it was given (our buf_alloc) is reset and the host socket closed", async () => {
    const env = await setup(`overrun-${name}`, { ring, bufAlloc: 4096 });
    const { g, dev } = env;
    g.postRx(16);
    const { srv, sock } = await guestConnect(env, 1000, 6002);
    const closed = new Promise<void>((r) => sock.once("close", () => r()));
    sock.resume();
    g.send({ op: VIRTIO_VSOCK_OP_RW, srcPort: 1000, dstPort: 6002 }, Buffer.alloc(4097));
    expect((await g.waitOp(VIRTIO_VSOCK_OP_RST)).hdr.dstPort).toBe(1000);
    await closed;
    expect(dev.connectionCount).toBe(0);
    srv.close();
    await dev.close();
  });

  it("SHUTDOWN(SEND) half-closes: the host reads end of stream and can still send to the guest; guest RST then closes", async () => {
    const env = await setup(`half-${name}`, { ring });
    const { g, dev } = env;
    g.postRx(16);
    const { srv, sock } = await guestConnect(env, 1000, 6003, 1 << 20, true);
    const hostGot = readN(sock, 5);
    const ended = new Promise<void>((r) => sock.once("end", () => r()));
    g.send({ op: VIRTIO_VSOCK_OP_RW, srcPort: 1000, dstPort: 6003 }, Buffer.from("hello"));
    g.send({ op: VIRTIO_VSOCK_OP_SHUTDOWN, srcPort: 1000, dstPort: 6003, flags: VIRTIO_VSOCK_SHUTDOWN_SEND });
    expect((await hostGot).toString()).toBe("hello");
    await ended;
    expect(dev.connectionCount).toBe(1);
    sock.write("reply");
    const rw = await g.waitOp(VIRTIO_VSOCK_OP_RW);
    expect(rw.data.toString()).toBe("reply");
    g.send({ op: VIRTIO_VSOCK_OP_RST, srcPort: 1000, dstPort: 6003 });
    expect(dev.connectionCount).toBe(0);
    // The device closed its end: a host write now fails and the socket closes.
    const closed = new Promise<void>((r) => sock.once("close", () => r()));
    sock.on("error", () => {});
    const writeFailed = () => new Promise<void>((r) => setTimeout(() => {
      sock.write("late");
      r();
    }, 10));
    await writeFailed();
    await writeFailed();
    await closed;
    expect(dev.connectionCount).toBe(0);
    srv.close();
    await dev.close();
  });

  it("host data past the guest's window waits for its credit (the host socket is paused meanwhile); host close then SHUTDOWN after the data", async () => {
    const env = await setup(`credit-${name}`, { ring });
    const { g, dev } = env;
    g.postRx(64);
    const window = 8 * 1024;
    const { srv, sock } = await guestConnect(env, 1000, 6004, window);
    const payload = randomBytes(200 * 1024);
    sock.end(payload);
    const got: Buffer[] = [];
    let fwd = 0;
    let shutdown = false;
    await until(() => {
      for (const p of g.poll()) {
        if (p.hdr.op === VIRTIO_VSOCK_OP_RW) {
          // The device never goes past the window we advertised.
          expect(fwd + window - got.reduce((n, b) => n + b.length, 0) - p.data.length).toBeGreaterThanOrEqual(0);
          got.push(p.data);
        } else if (p.hdr.op === VIRTIO_VSOCK_OP_SHUTDOWN) {
          expect(got.reduce((n, b) => n + b.length, 0)).toBe(payload.length);
          shutdown = true;
        }
        g.postRx(1);
      }
      const have = got.reduce((n, b) => n + b.length, 0);
      if (have > fwd) {
        fwd = have;
        g.send({ op: VIRTIO_VSOCK_OP_CREDIT_UPDATE, srcPort: 1000, dstPort: 6004, bufAlloc: window, fwdCnt: fwd });
      }
      return shutdown;
    }, "all host data, then SHUTDOWN", 20_000);
    expect(Buffer.concat(got).equals(payload)).toBe(true);
    srv.close();
    await dev.close();
  });

  it("rx buffers with room for a header only: control packets fit, data cannot and the buffer comes back empty", async () => {
    const env = await setup(`tiny-${name}`, { ring });
    const { g, dev } = env;
    g.postRx(1);
    const { srv, sock } = await guestConnect(env, 1000, 6005);
    g.postRx(1, HDR);
    g.send({ op: VIRTIO_VSOCK_OP_CREDIT_REQUEST, srcPort: 1000, dstPort: 6005 });
    expect(g.ops()).toEqual([VIRTIO_VSOCK_OP_CREDIT_UPDATE]);
    g.got.length = 0;
    g.postRx(1, HDR);
    sock.write("data");
    await until(() => g.ops().length > 0, "a used rx buffer");
    expect(g.got.map((p) => p.hdr.op)).toEqual([-1]);
    // With a real buffer the data arrives.
    g.postRx(1);
    const rw = await g.waitOp(VIRTIO_VSOCK_OP_RW);
    expect(rw.data.toString()).toBe("data");
    srv.close();
    await dev.close();
  });
});

describe("virtio-vsock host-initiated connections", () => {
  it("bytes after the CONNECT line in the same write reach the guest once it accepts; host ports are distinct per connection", async () => {
    const { uds, g, dev } = await setup("h2g-early");
    g.postRx(16);
    const s1 = connect(uds);
    await new Promise<void>((r) => s1.once("connect", () => r()));
    s1.write("CONNECT 52\nearly bytes");
    const req1 = await g.waitOp(VIRTIO_VSOCK_OP_REQUEST);
    const s2 = connect(uds);
    await new Promise<void>((r) => s2.once("connect", () => r()));
    s2.write("CONNECT 52\n");
    const req2 = await g.waitOp(VIRTIO_VSOCK_OP_REQUEST);
    expect(req1.hdr.dstPort).toBe(52);
    expect(req2.hdr.srcPort).not.toBe(req1.hdr.srcPort);
    g.send({ op: VIRTIO_VSOCK_OP_RESPONSE, srcPort: 52, dstPort: req1.hdr.srcPort });
    const rw = await g.waitOp(VIRTIO_VSOCK_OP_RW);
    expect(rw.data.toString()).toBe("early bytes");
    expect(dev.connectionCount).toBe(2);
    s1.destroy();
    s2.destroy();
    await dev.close();
  });

  it("a bad CONNECT line, a line over 64 bytes without newline, or a device not running: the host socket is closed", async () => {
    const { uds, dev, h, g } = await setup("h2g-bad");
    const closedAfter = async (write: string): Promise<boolean> => {
      const s = connect(uds);
      await new Promise<void>((r) => s.once("connect", () => r()));
      const closed = new Promise<boolean>((r) => {
        s.once("close", () => r(true));
        setTimeout(() => r(false), 3000);
      });
      s.on("data", () => {});
      s.on("error", () => {});
      s.write(write);
      return closed;
    };
    expect(await closedAfter("HELLO\n")).toBe(true);
    expect(await closedAfter("CONNECT -5\n")).toBe(true);
    expect(await closedAfter("CONNECT 99999999999\n")).toBe(true);
    expect(await closedAfter("x".repeat(65))).toBe(true);
    h.drv.writeReg(0x70, 0);
    expect(await closedAfter("CONNECT 52\n")).toBe(true);
    expect(dev.connectionCount).toBe(0);
    expect(g.rx.takeUsed()).toEqual([]);
    await dev.close();
  });
});

describe("virtio-vsock queues the driver enables late or leaves empty", () => {
  it("replies wait while receiveq is not enabled or has no buffers, and go out in order once it has", async () => {
    const uds = join(dir, "late-rx");
    const dev = new VirtioVsock({ guestCid: CID, udsPath: uds });
    const h = harness(dev, {}, 8 << 20);
    h.drv.negotiate(0n);
    const tx = h.drv.setupQueue(1, 16);
    h.drv.driverOk();
    const g = new Guest(h, tx, tx, tx);
    g.send({ op: VIRTIO_VSOCK_OP_INVALID, srcPort: 1 });
    g.rx = h.drv.setupQueue(0, 16);
    h.drv.kick(0);
    g.send({ op: 99, srcPort: 2 });
    expect(g.poll()).toEqual([]);
    g.postRx(1);
    expect(g.poll().map((p) => p.hdr.dstPort)).toEqual([1]);
    g.postRx(1);
    expect(g.poll().map((p) => p.hdr.dstPort)).toEqual([2]);
    expect(h.drv.status).toBe(15);
    await dev.close();
  });

  it("a TRANSPORT_RESET waits for the event queue to be enabled and given a buffer", async () => {
    const dev = new VirtioVsock({ guestCid: CID, udsPath: join(dir, "late-ev") });
    const h = harness(dev, {}, 8 << 20);
    h.drv.negotiate(0n);
    h.drv.setupQueue(0, 8);
    h.drv.setupQueue(1, 8);
    h.drv.driverOk();
    dev.transportReset();
    const ev = h.drv.setupQueue(2, 4);
    h.drv.kick(2);
    expect(ev.takeUsed()).toEqual([]);
    const e = h.heap.alloc(4);
    ev.add([{ addr: e, len: 4, writable: true }]);
    h.drv.kick(2);
    expect(ev.takeUsed().map((u) => u.len)).toEqual([4]);
    expect(VirtioVsockEventLayout.decode(h.mem.read(e, 4)).id).toBe(VIRTIO_VSOCK_EVENT_TRANSPORT_RESET);
    await dev.close();
  });
});

describe("virtio-vsock with connections in different states", () => {
  it("host data on one connection flows while another waits for the guest's RESPONSE and a third is idle", async () => {
    const env = await setup("mixed");
    const { uds, g, dev } = env;
    g.postRx(16);
    const pending = connect(uds);
    await new Promise<void>((r) => pending.once("connect", () => r()));
    // The CONNECT line arrives in two pieces: the device waits for its end.
    pending.write("CONN");
    await new Promise((r) => setTimeout(r, 20));
    pending.write("ECT 77\nqueued");
    const req = await g.waitOp(VIRTIO_VSOCK_OP_REQUEST);
    expect(req.hdr.dstPort).toBe(77);
    const idle = await guestConnect(env, 1001, 6101);
    const busy = await guestConnect(env, 1002, 6102);
    busy.sock.write("to the guest");
    const rw = await g.waitOp(VIRTIO_VSOCK_OP_RW);
    expect([rw.hdr.dstPort, rw.data.toString()]).toEqual([1002, "to the guest"]);
    expect(dev.connectionCount).toBe(3);
    // The guest accepts late: the bytes that came with the CONNECT line follow.
    g.send({ op: VIRTIO_VSOCK_OP_RESPONSE, srcPort: 77, dstPort: req.hdr.srcPort });
    const early = await g.waitOp(VIRTIO_VSOCK_OP_RW);
    expect([early.hdr.dstPort, early.data.toString()]).toEqual([77, "queued"]);
    pending.destroy();
    idle.srv.close();
    busy.srv.close();
    await dev.close();
  });

  it("SHUTDOWN(RCV) alone leaves the stream to the host open", async () => {
    const env = await setup("rcv-only");
    const { g, dev } = env;
    g.postRx(8);
    const { srv, sock } = await guestConnect(env, 1000, 6103);
    let ended = false;
    sock.on("end", () => {
      ended = true;
    });
    g.send({ op: VIRTIO_VSOCK_OP_SHUTDOWN, srcPort: 1000, dstPort: 6103, flags: VIRTIO_VSOCK_SHUTDOWN_RCV });
    const got = readN(sock, 4);
    g.send({ op: VIRTIO_VSOCK_OP_RW, srcPort: 1000, dstPort: 6103 }, Buffer.from("more"));
    expect((await got).toString()).toBe("more");
    expect(ended).toBe(false);
    expect(dev.connectionCount).toBe(1);
    srv.close();
    await dev.close();
  });
});

describe("virtio-vsock while the VM is paused", () => {
  it("host data and a TRANSPORT_RESET are held while paused, even with buffers posted, and delivered on resume", async () => {
    const env = await setup("paused");
    const { g, dev, h } = env;
    g.postRx(8);
    const { srv, sock } = await guestConnect(env, 1000, 6200);
    await h.t.pause();
    expect(h.t.isPaused).toBe(true);
    sock.write("while paused");
    await new Promise((r) => setTimeout(r, 30));
    dev.transportReset();
    g.ev.add([{ addr: h.heap.alloc(8), len: 8, writable: true }]);
    h.drv.kick(2);
    dev.queueNotify(0);
    expect(g.poll()).toEqual([]);
    expect(g.ev.takeUsed()).toEqual([]);
    h.t.resume();
    expect(g.ev.takeUsed().length).toBe(1);
    // The reset dropped the connection, so its held data is gone with it: nothing reaches the guest.
    expect(g.poll()).toEqual([]);
    srv.close();
    await dev.close();
  });

  it("data that arrived while paused reaches the guest on resume", async () => {
    const env = await setup("paused-data");
    const { g, dev, h } = env;
    g.postRx(8);
    const { srv, sock } = await guestConnect(env, 1000, 6201);
    await h.t.pause();
    sock.write("held bytes");
    await new Promise((r) => setTimeout(r, 30));
    expect(g.poll()).toEqual([]);
    h.t.resume();
    const rw = await g.waitOp(VIRTIO_VSOCK_OP_RW);
    expect(rw.data.toString()).toBe("held bytes");
    srv.close();
    await dev.close();
  });
});

describe("virtio-vsock: a connection the guest closes while the host connect is under way", () => {
  const batch = (env: Awaited<ReturnType<typeof setup>>, dstPort: number, ops: [number, number][]) => {
    for (const [op, flags] of ops) {
      const hdr = VirtioVsockHdrLayout.encode({ srcCid: BigInt(CID), dstCid: 2n, srcPort: 1000, dstPort, len: 0, type: VIRTIO_VSOCK_TYPE_STREAM, op, flags, bufAlloc: 65536, fwdCnt: 0 });
      const a = env.h.heap.alloc(HDR);
      env.h.mem.write(a, hdr);
      env.g.tx.add([{ addr: a, len: HDR, writable: false }]);
    }
    env.h.drv.kick(1);
  };
  const BOTH = VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND;

  it("to a listener: SHUTDOWN right after REQUEST gets one RST and no late RESPONSE", async () => {
    const env = await setup("shut-connecting");
    env.g.postRx(8);
    const srv = await listenOn(`${env.uds}_6400`, (s) => s.resume());
    batch(env, 6400, [
      [VIRTIO_VSOCK_OP_REQUEST, 0],
      [VIRTIO_VSOCK_OP_SHUTDOWN, BOTH],
    ]);
    await new Promise((r) => setTimeout(r, 50));
    expect(env.g.ops()).toEqual([VIRTIO_VSOCK_OP_RST]);
    expect(env.dev.connectionCount).toBe(0);
    srv.close();
    await env.dev.close();
  });

  it("to a port nobody listens on: the refused connect adds no second RST", async () => {
    const env = await setup("shut-refused");
    env.g.postRx(8);
    batch(env, 6401, [
      [VIRTIO_VSOCK_OP_REQUEST, 0],
      [VIRTIO_VSOCK_OP_SHUTDOWN, BOTH],
    ]);
    await new Promise((r) => setTimeout(r, 50));
    expect(env.g.ops()).toEqual([VIRTIO_VSOCK_OP_RST]);
    await env.dev.close();
  });
});

describe("virtio-vsock: an RST the device sends ends the connection it names", () => {
  it("data from the guest before the connection is established is answered with RST and the connection is gone (no late RESPONSE, host socket closed)", async () => {
    const env = await setup("rw-early");
    const { g, dev, uds } = env;
    g.postRx(8);
    let hostSock: Socket | undefined;
    const srv = await listenOn(`${uds}_6300`, (s) => {
      hostSock = s;
      s.resume();
    });
    // REQUEST and RW in one batch: the RW is seen while the host connect is still under way.
    const put = (op: number, data: Buffer) => {
      const hdr = VirtioVsockHdrLayout.encode({ srcCid: BigInt(CID), dstCid: 2n, srcPort: 1000, dstPort: 6300, len: data.length, type: VIRTIO_VSOCK_TYPE_STREAM, op, flags: 0, bufAlloc: 65536, fwdCnt: 0 });
      const a = env.h.heap.alloc(HDR + data.length);
      env.h.mem.write(a, Buffer.concat([hdr, data]));
      g.tx.add([{ addr: a, len: HDR + data.length, writable: false }]);
    };
    put(VIRTIO_VSOCK_OP_REQUEST, Buffer.alloc(0));
    put(VIRTIO_VSOCK_OP_RW, Buffer.from("too early"));
    env.h.drv.kick(1);
    expect((await g.waitOp(VIRTIO_VSOCK_OP_RST)).hdr.dstPort).toBe(1000);
    expect(dev.connectionCount).toBe(0);
    await new Promise((r) => setTimeout(r, 50));
    expect(g.ops()).not.toContain(VIRTIO_VSOCK_OP_RESPONSE);
    if (hostSock !== undefined) {
      const s = hostSock;
      await until(() => s.destroyed || s.readableEnded, "host socket closed");
    }
    srv.close();
    await dev.close();
  });

  it("data from the guest on a host-initiated connection it has not accepted is answered with RST, and the host socket is closed", async () => {
    const { uds, g, dev } = await setup("rw-unaccepted");
    g.postRx(8);
    const s = connect(uds);
    await new Promise<void>((r) => s.once("connect", () => r()));
    const closed = new Promise<void>((r) => s.once("close", () => r()));
    s.on("data", () => {});
    s.write("CONNECT 90\n");
    const req = await g.waitOp(VIRTIO_VSOCK_OP_REQUEST);
    g.send({ op: VIRTIO_VSOCK_OP_RW, srcPort: 90, dstPort: req.hdr.srcPort }, Buffer.from("x"));
    expect((await g.waitOp(VIRTIO_VSOCK_OP_RST)).hdr.dstPort).toBe(90);
    await closed;
    expect(dev.connectionCount).toBe(0);
    await dev.close();
  });
});

describe("virtio-vsock message framing (§2.6.4)", () => {
  it("packets split across descriptors anywhere (inside the header too) work both ways", async () => {
    const env = await setup("framing");
    const { g, h, dev } = env;
    // Receive buffers in odd pieces: 10 + 30 + 4 header bytes, then payload room in two parts.
    const cuts = [10, 30, 4, 100, 3000];
    for (let i = 0; i < 8; i++) {
      // Gaps between the pieces, so nothing can read them as one contiguous buffer by accident.
      g.rx.add(cuts.map((n) => ({ addr: h.heap.alloc(n + 64, 1), len: n, writable: true })));
    }
    h.drv.kick(0);
    let hostSock: Socket | undefined;
    const srv = await listenOn(`${env.uds}_6500`, (s) => {
      hostSock = s;
    });
    // The REQUEST itself in three pieces.
    const req = VirtioVsockHdrLayout.encode({ srcCid: BigInt(CID), dstCid: 2n, srcPort: 1000, dstPort: 6500, len: 0, type: VIRTIO_VSOCK_TYPE_STREAM, op: VIRTIO_VSOCK_OP_REQUEST, flags: 0, bufAlloc: 1 << 20, fwdCnt: 0 });
    const putSplit = (bytes: Buffer, at: number[]) => {
      const els = [];
      let off = 0;
      for (const end of [...at, bytes.length]) {
        const a = h.heap.alloc(end - off, 1);
        h.mem.write(a, bytes.subarray(off, end));
        els.push({ addr: a, len: end - off, writable: false });
        off = end;
      }
      g.tx.add(els);
      h.drv.kick(1);
    };
    putSplit(req, [7, 20]);
    const resp = await g.waitOp(VIRTIO_VSOCK_OP_RESPONSE);
    expect(resp.hdr.dstPort).toBe(1000);
    await until(() => hostSock !== undefined, "accept");
    const toHost = Buffer.from("framed payload from the guest");
    const rw = Buffer.concat([VirtioVsockHdrLayout.encode({ srcCid: BigInt(CID), dstCid: 2n, srcPort: 1000, dstPort: 6500, len: toHost.length, type: VIRTIO_VSOCK_TYPE_STREAM, op: VIRTIO_VSOCK_OP_RW, flags: 0, bufAlloc: 1 << 20, fwdCnt: 0 }), toHost]);
    const got = readN(hostSock!, toHost.length);
    putSplit(rw, [1, 43, 50]);
    expect((await got).equals(toHost)).toBe(true);
    // Host -> guest: the device writes header and data across the pieces.
    const toGuest = Buffer.alloc(2500, 0x61);
    hostSock!.write(toGuest);
    const parts: Buffer[] = [];
    await until(() => {
      for (const u of g.rx.takeUsed()) {
        const raw = Buffer.concat(u.elements.map((e) => h.mem.read(e.addr, e.len))).subarray(0, u.len);
        const hdr = VirtioVsockHdrLayout.decode(raw);
        if (hdr.op === VIRTIO_VSOCK_OP_RW) parts.push(raw.subarray(HDR, HDR + hdr.len));
      }
      return Buffer.concat(parts).length >= toGuest.length;
    }, "host data in split buffers");
    expect(Buffer.concat(parts).equals(toGuest)).toBe(true);
    srv.close();
    await dev.close();
  });
});
