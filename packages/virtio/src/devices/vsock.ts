import { existsSync, unlinkSync } from "node:fs";
import { createServer, connect as netConnect, type Server, type Socket } from "node:net";
import {
  VIRTIO_ID_VSOCK,
  VIRTIO_VSOCK_EVENT_TRANSPORT_RESET,
  VIRTIO_VSOCK_OP_CREDIT_REQUEST,
  VIRTIO_VSOCK_OP_CREDIT_UPDATE,
  VIRTIO_VSOCK_OP_REQUEST,
  VIRTIO_VSOCK_OP_RESPONSE,
  VIRTIO_VSOCK_OP_RST,
  VIRTIO_VSOCK_OP_RW,
  VIRTIO_VSOCK_OP_SHUTDOWN,
  VIRTIO_VSOCK_SHUTDOWN_RCV,
  VIRTIO_VSOCK_SHUTDOWN_SEND,
  VIRTIO_VSOCK_TYPE_STREAM,
  VMADDR_CID_HOST,
} from "../constants.js";
import { type DeviceContext, drainQueue, readConfigBytes, type VirtioDevice } from "../device.js";
import { VirtioDeviceError, VirtqueueError } from "../errors.js";
import { VirtioVsockConfigLayout, VirtioVsockEventLayout, type VirtioVsockHdr, VirtioVsockHdrLayout } from "../layouts.js";

const RXQ = 0;
const TXQ = 1;
const EVQ = 2;
const HDR = VirtioVsockHdrLayout.size;

export interface VirtioVsockOptions {
  /** The guest's context id (>= 3). */
  guestCid: number;
  /**
   * Host side, Firecracker's hybrid model: guest connections to port P go to the Unix socket
   * `${udsPath}_${P}`; host programs connect to `udsPath` and send "CONNECT <port>\n".
   */
  udsPath: string;
  /** Receive buffer we advertise per connection (buf_alloc), default 256 KiB. */
  bufAlloc?: number;
  /** Queue size (default 256). */
  queueSize?: number;
  /** Sees connection-level errors (a socket failing); never thrown. */
  onError?: (e: Error) => void;
}

type ConnState = "connecting" | "host-connecting" | "established" | "closing";

/** One stream between a guest port and a host Unix socket. */
interface Conn {
  readonly key: string;
  readonly guestPort: number;
  readonly hostPort: number;
  readonly socket: Socket;
  state: ConnState;
  /** Bytes from the host waiting for guest credit and rx buffers. */
  toGuest: Buffer[];
  toGuestBytes: number;
  /** Bytes we sent the guest (tx_cnt) and the guest's credit as it last told us. */
  txCnt: number;
  peerBufAlloc: number;
  peerFwdCnt: number;
  /** Bytes from the guest written to the socket (our fwd_cnt), and what we last told the guest. */
  fwdCnt: number;
  fwdCntSent: number;
  /** Bytes the guest sent us (its tx_cnt as we count it). */
  rxFromGuest: number;
  /** The host side ended: after toGuest drains, tell the guest. */
  hostEnded: boolean;
  shutdownSent: boolean;
  /** In-flight socket writes from the guest (bounded by our buf_alloc through credit). */
  paused: boolean;
}

interface Packet {
  hdr: VirtioVsockHdr;
  data?: Buffer;
}

const u32 = (n: number): number => n >>> 0;

/**
 * virtio-vsock (virtio 1.2 §5.10), stream sockets, with Firecracker's hybrid host side over Unix
 * sockets. Credit-based flow control both ways: the guest may have at most our buf_alloc bytes
 * unforwarded (fwd_cnt counts bytes the host socket took), and we send the guest no more than
 * its buf_alloc minus what it has not consumed.
 */
export class VirtioVsock implements VirtioDevice {
  readonly deviceId = VIRTIO_ID_VSOCK;
  readonly name = "vsock";
  readonly queueMaxSizes: readonly number[];
  readonly features = 0n;
  readonly configSize = VirtioVsockConfigLayout.size;
  readonly guestCid: number;
  readonly udsPath: string;
  private readonly bufAlloc: number;
  private readonly onErr: ((e: Error) => void) | undefined;
  private readonly config: Buffer;
  private ctx: DeviceContext | undefined;
  private vmPaused = false;
  private server: Server | undefined;
  private readonly conns = new Map<string, Conn>();
  private readonly control: Packet[] = [];
  private nextHostPort = 1 << 30;
  private pendingEvents = 0;

  constructor(opts: VirtioVsockOptions) {
    if (!Number.isInteger(opts.guestCid) || opts.guestCid < 3 || opts.guestCid > 0xffff_fffe) {
      throw new VirtioDeviceError("VIRTIO_DEVICE_BAD_CONFIG", `vsock: guest CID ${opts.guestCid} is not 3..2^32-2`);
    }
    this.guestCid = opts.guestCid;
    this.udsPath = opts.udsPath;
    this.bufAlloc = opts.bufAlloc ?? 256 * 1024;
    this.onErr = opts.onError;
    const qs = opts.queueSize ?? 256;
    this.queueMaxSizes = [qs, qs, qs];
    this.config = VirtioVsockConfigLayout.encode({ guestCid: BigInt(opts.guestCid) });
  }

  /** Start listening on `udsPath` for host-initiated connections (removes a stale socket file). */
  listen(): Promise<void> {
    if (existsSync(this.udsPath)) unlinkSync(this.udsPath);
    const srv = createServer((s) => this.hostConnect(s));
    this.server = srv;
    return new Promise((resolve, reject) => {
      srv.once("error", reject);
      srv.listen(this.udsPath, () => {
        srv.off("error", reject);
        resolve();
      });
    });
  }

  /** Stop listening and drop every connection. */
  close(): Promise<void> {
    this.dropAll();
    const srv = this.server;
    this.server = undefined;
    return new Promise((r) => (srv ? srv.close(() => r()) : r()));
  }

  get connectionCount(): number {
    return this.conns.size;
  }

  readConfig(offset: number, data: Buffer): void {
    readConfigBytes(this.config, offset, data);
  }
  writeConfig(): void {}

  activate(ctx: DeviceContext): void {
    this.ctx = ctx;
  }

  /**
   * VM paused: host data is buffered per connection (each host socket stops being read once the
   * guest's window is full, as always) and nothing is written into the rx or event queue.
   */
  pause(): void {
    this.vmPaused = true;
  }
  resume(): void {
    this.vmPaused = false;
    this.pumpRx();
    this.pumpEvents();
  }

  reset(): void {
    this.ctx = undefined;
    this.dropAll();
    this.control.length = 0;
  }

  private dropAll(): void {
    for (const c of this.conns.values()) c.socket.destroy();
    this.conns.clear();
  }

  /** Tell the driver every connection is gone (after a snapshot restore); sockets are closed. */
  transportReset(): void {
    this.dropAll();
    this.control.length = 0;
    this.pendingEvents++;
    this.pumpEvents();
  }

  queueNotify(queue: number): void {
    const ctx = this.ctx;
    if (ctx === undefined || this.vmPaused) return;
    if (queue === TXQ) {
      const more = drainQueue(ctx, TXQ, (c) => {
        const r = c.reader();
        if (r.remaining < HDR) throw new VirtqueueError("VIRTQ_CHAIN_SHORT", "vsock: tx packet shorter than its header");
        const hdr = r.readStruct(VirtioVsockHdrLayout);
        // A payload longer than what follows the header is a malformed packet: answered with RST below.
        const data = hdr.len <= r.remaining ? r.read(hdr.len) : undefined;
        this.fromGuest(hdr, data);
        return 0;
      });
      if (more) setImmediate(() => this.ctx === ctx && ctx.current && this.queueNotify(TXQ));
    }
    this.pumpRx();
    this.pumpEvents();
  }

  // ---- guest -> host ----

  private reply(hdr: VirtioVsockHdr, op: number, flags = 0): void {
    this.control.push({ hdr: this.header(hdr.dstPort, hdr.srcPort, op, 0, flags, undefined) });
  }

  private header(hostPort: number, guestPort: number, op: number, len: number, flags: number, c: Conn | undefined): VirtioVsockHdr {
    if (c !== undefined) c.fwdCntSent = c.fwdCnt;
    return {
      srcCid: BigInt(VMADDR_CID_HOST),
      dstCid: BigInt(this.guestCid),
      srcPort: hostPort,
      dstPort: guestPort,
      len,
      type: VIRTIO_VSOCK_TYPE_STREAM,
      op,
      flags,
      bufAlloc: this.bufAlloc,
      fwdCnt: c === undefined ? 0 : u32(c.fwdCnt),
    };
  }

  private fromGuest(hdr: VirtioVsockHdr, data: Buffer | undefined): void {
    if (hdr.srcCid !== BigInt(this.guestCid) || hdr.dstCid !== BigInt(VMADDR_CID_HOST)) return; // not for us: dropped (§5.10.6.3)
    const key = `${hdr.srcPort}:${hdr.dstPort}`;
    const c = this.conns.get(key);
    if (hdr.type !== VIRTIO_VSOCK_TYPE_STREAM || data === undefined) {
      if (hdr.op !== VIRTIO_VSOCK_OP_RST) this.reply(hdr, VIRTIO_VSOCK_OP_RST);
      return;
    }
    if (c !== undefined) {
      c.peerBufAlloc = hdr.bufAlloc;
      c.peerFwdCnt = hdr.fwdCnt;
    }
    switch (hdr.op) {
      case VIRTIO_VSOCK_OP_REQUEST: {
        if (c !== undefined) {
          // The guest no longer has this connection (it is connecting anew): reset and forget ours too.
          this.reply(hdr, VIRTIO_VSOCK_OP_RST);
          this.drop(c);
          return;
        }
        this.guestConnect(hdr);
        return;
      }
      case VIRTIO_VSOCK_OP_RESPONSE: {
        if (c === undefined || c.state !== "host-connecting") {
          this.reply(hdr, VIRTIO_VSOCK_OP_RST);
          if (c !== undefined) this.drop(c);
          return;
        }
        c.state = "established";
        c.socket.write(`OK ${c.hostPort}\n`);
        c.socket.resume();
        return;
      }
      case VIRTIO_VSOCK_OP_RW: {
        if (c === undefined || c.state !== "established") {
          this.reply(hdr, VIRTIO_VSOCK_OP_RST);
          // The guest takes our RST as the end of the connection: keeping it would leak its socket and answer later.
          if (c !== undefined) this.drop(c);
          return;
        }
        // The guest must stay inside the credit we gave; past it the stream is broken.
        const unforwarded = c.rxFromGuest - c.fwdCnt + data.length;
        if (unforwarded > this.bufAlloc) {
          this.reply(hdr, VIRTIO_VSOCK_OP_RST);
          this.drop(c);
          return;
        }
        c.rxFromGuest += data.length;
        c.socket.write(data, () => {
          c.fwdCnt += data.length;
          // Tell the guest about freed space once a quarter of the window is back.
          if (c.state === "established" && c.fwdCnt - c.fwdCntSent >= this.bufAlloc / 4) {
            this.control.push({ hdr: this.header(c.hostPort, c.guestPort, VIRTIO_VSOCK_OP_CREDIT_UPDATE, 0, 0, c) });
            this.pumpRx();
          }
        });
        return;
      }
      case VIRTIO_VSOCK_OP_CREDIT_UPDATE:
        if (c !== undefined) this.pumpRx();
        return;
      case VIRTIO_VSOCK_OP_CREDIT_REQUEST:
        if (c !== undefined) this.control.push({ hdr: this.header(c.hostPort, c.guestPort, VIRTIO_VSOCK_OP_CREDIT_UPDATE, 0, 0, c) });
        return;
      case VIRTIO_VSOCK_OP_SHUTDOWN: {
        if (c === undefined) return;
        if (hdr.flags & VIRTIO_VSOCK_SHUTDOWN_SEND) c.socket.end();
        if ((hdr.flags & (VIRTIO_VSOCK_SHUTDOWN_SEND | VIRTIO_VSOCK_SHUTDOWN_RCV)) === (VIRTIO_VSOCK_SHUTDOWN_SEND | VIRTIO_VSOCK_SHUTDOWN_RCV)) {
          // Both directions closed: finish with RST, as the Linux peer waits for one.
          this.reply(hdr, VIRTIO_VSOCK_OP_RST);
          this.conns.delete(c.key);
          c.state = "closing";
        }
        return;
      }
      case VIRTIO_VSOCK_OP_RST:
        if (c !== undefined) this.drop(c);
        return;
      default:
        this.reply(hdr, VIRTIO_VSOCK_OP_RST);
    }
  }

  private newConn(guestPort: number, hostPort: number, socket: Socket, state: ConnState): Conn {
    const c: Conn = {
      key: `${guestPort}:${hostPort}`,
      guestPort,
      hostPort,
      socket,
      state,
      toGuest: [],
      toGuestBytes: 0,
      txCnt: 0,
      peerBufAlloc: 0,
      peerFwdCnt: 0,
      fwdCnt: 0,
      fwdCntSent: 0,
      rxFromGuest: 0,
      hostEnded: false,
      shutdownSent: false,
      paused: false,
    };
    this.conns.set(c.key, c);
    socket.on("data", (d: Buffer) => this.hostData(c, d));
    socket.on("end", () => {
      c.hostEnded = true;
      this.pumpRx();
    });
    socket.on("close", () => {
      c.hostEnded = true;
      this.pumpRx();
    });
    socket.on("error", (e) => this.onErr?.(e));
    return c;
  }

  private guestConnect(hdr: VirtioVsockHdr): void {
    const sock = netConnect(`${this.udsPath}_${hdr.dstPort}`);
    const c = this.newConn(hdr.srcPort, hdr.dstPort, sock, "connecting");
    c.peerBufAlloc = hdr.bufAlloc;
    c.peerFwdCnt = hdr.fwdCnt;
    const ctx = this.ctx;
    sock.once("connect", () => {
      if (this.ctx !== ctx || this.conns.get(c.key) !== c) return;
      c.state = "established";
      this.control.push({ hdr: this.header(c.hostPort, c.guestPort, VIRTIO_VSOCK_OP_RESPONSE, 0, 0, c) });
      this.pumpRx();
    });
    sock.once("error", () => {
      if (c.state === "connecting" && this.conns.get(c.key) === c) {
        this.conns.delete(c.key);
        this.control.push({ hdr: this.header(c.hostPort, c.guestPort, VIRTIO_VSOCK_OP_RST, 0, 0, undefined) });
        this.pumpRx();
      }
    });
  }

  private drop(c: Conn): void {
    this.conns.delete(c.key);
    c.state = "closing";
    c.socket.destroy();
  }

  // ---- host -> guest ----

  private hostConnect(s: Socket): void {
    let line = "";
    const onData = (d: Buffer): void => {
      line += d.toString("latin1");
      const nl = line.indexOf("\n");
      if (nl < 0) {
        if (line.length > 64) s.destroy();
        return;
      }
      s.off("data", onData);
      s.pause();
      const m = /^CONNECT (\d+)$/.exec(line.slice(0, nl).trim());
      const port = m ? Number(m[1]) : -1;
      if (port < 0 || port > 0xffff_ffff || this.ctx === undefined || !this.ctx.current) {
        s.destroy();
        return;
      }
      let hp = this.nextHostPort;
      while (this.conns.has(`${port}:${hp}`)) hp = hp + 1 > 0xffff_fffe ? 1 << 30 : hp + 1;
      this.nextHostPort = hp + 1 > 0xffff_fffe ? 1 << 30 : hp + 1;
      const c = this.newConn(port, hp, s, "host-connecting");
      s.pause();
      const rest = Buffer.from(line.slice(nl + 1), "latin1");
      if (rest.length > 0) this.hostData(c, rest);
      this.control.push({ hdr: this.header(hp, port, VIRTIO_VSOCK_OP_REQUEST, 0, 0, c) });
      this.pumpRx();
    };
    s.on("data", onData);
    s.on("error", (e) => this.onErr?.(e));
  }

  private hostData(c: Conn, d: Buffer): void {
    c.toGuest.push(d);
    c.toGuestBytes += d.length;
    // Backpressure: stop reading the host socket while the guest is behind by more than its window.
    if (c.toGuestBytes > Math.max(c.peerBufAlloc, 64 * 1024) && !c.paused) {
      c.paused = true;
      c.socket.pause();
    }
    this.pumpRx();
  }

  private credit(c: Conn): number {
    return Math.max(0, c.peerBufAlloc - u32(c.txCnt - c.peerFwdCnt));
  }

  /** The next packet to give the guest, sized for a chain with `room` payload bytes. */
  private nextPacket(room: number): Packet | undefined {
    const ctl = this.control.shift();
    if (ctl !== undefined) return ctl;
    for (const c of this.conns.values()) {
      if (c.state !== "established") continue;
      if (c.toGuestBytes > 0) {
        const n = Math.min(c.toGuestBytes, this.credit(c), room);
        if (n === 0) continue;
        const data = Buffer.allocUnsafe(n);
        let off = 0;
        while (off < n) {
          const head = c.toGuest[0]!;
          const take = Math.min(head.length, n - off);
          head.copy(data, off, 0, take);
          off += take;
          if (take === head.length) c.toGuest.shift();
          else c.toGuest[0] = head.subarray(take);
        }
        c.toGuestBytes -= n;
        c.txCnt = u32(c.txCnt + n);
        if (c.paused && c.toGuestBytes < 32 * 1024) {
          c.paused = false;
          c.socket.resume();
        }
        return { hdr: this.header(c.hostPort, c.guestPort, VIRTIO_VSOCK_OP_RW, n, 0, c), data };
      }
      if (c.hostEnded && !c.shutdownSent) {
        c.shutdownSent = true;
        return { hdr: this.header(c.hostPort, c.guestPort, VIRTIO_VSOCK_OP_SHUTDOWN, 0, VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND, c) };
      }
    }
    return undefined;
  }

  private hasWork(): boolean {
    if (this.control.length > 0) return true;
    for (const c of this.conns.values()) {
      if (c.state !== "established") continue;
      if ((c.toGuestBytes > 0 && this.credit(c) > 0) || (c.hostEnded && !c.shutdownSent && c.toGuestBytes === 0)) return true;
    }
    return false;
  }

  private pumpRx(): void {
    const ctx = this.ctx;
    if (ctx === undefined || !ctx.current || this.vmPaused) return;
    const q = ctx.queues[RXQ]!;
    if (!q.active) return;
    try {
      let used = false;
      while (this.hasWork()) {
        const chain = q.pop();
        if (chain === null) break;
        const w = chain.writer();
        if (w.remaining < HDR) throw new VirtqueueError("VIRTQ_CHAIN_SHORT", "vsock: rx buffer smaller than a packet header");
        const p = this.nextPacket(w.remaining - HDR);
        if (p === undefined) {
          // Should not happen (hasWork said yes); give the buffer back empty rather than leak it.
          q.addUsed(chain, 0);
          used = true;
          break;
        }
        w.writeStruct(VirtioVsockHdrLayout, p.hdr);
        if (p.data !== undefined) w.write(p.data);
        q.addUsed(chain, w.written);
        used = true;
      }
      if (used) ctx.signalUsed(RXQ);
    } catch (e) {
      ctx.fail(e);
    }
  }

  private pumpEvents(): void {
    const ctx = this.ctx;
    if (ctx === undefined || !ctx.current || this.pendingEvents === 0 || this.vmPaused) return;
    const q = ctx.queues[EVQ]!;
    if (!q.active) return;
    try {
      let used = false;
      while (this.pendingEvents > 0) {
        const c = q.pop();
        if (c === null) break;
        const w = c.writer();
        w.writeStruct(VirtioVsockEventLayout, { id: VIRTIO_VSOCK_EVENT_TRANSPORT_RESET });
        q.addUsed(c, w.written);
        this.pendingEvents--;
        used = true;
      }
      if (used) ctx.signalUsed(EVQ);
    } catch (e) {
      ctx.fail(e);
    }
  }

  saveState(): { guestCid: number; udsPath: string } {
    return { guestCid: this.guestCid, udsPath: this.udsPath };
  }
  /** Connections do not survive a snapshot: the restored device sends TRANSPORT_RESET (§5.10.6.7). */
  restoreState(state: unknown): void {
    const s = state as { guestCid?: unknown } | null;
    if (s === null || typeof s !== "object" || s.guestCid !== this.guestCid) {
      throw new VirtioDeviceError("VIRTIO_DEVICE_BAD_STATE", "vsock: saved state is for another guest CID");
    }
    this.pendingEvents++;
  }
}
