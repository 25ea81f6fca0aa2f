import { bit, VIRTIO_ID_NET, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_MTU, VIRTIO_NET_F_STATUS, VIRTIO_NET_S_LINK_UP } from "../constants.js";
import { type DeviceContext, drainQueue, readConfigBytes, type VirtioDevice } from "../device.js";
import { VirtioDeviceError, VirtqueueError } from "../errors.js";
import { VirtioNetConfigLayout, VirtioNetHdrV1Layout } from "../layouts.js";
import type { DescriptorChain } from "../queue/chain.js";

/**
 * Where frames go and come from. The VMM gives a TAP backend (its fd opened through the native
 * addon); tests use any pair of connected sockets. Frames are whole Ethernet frames without the
 * virtio header.
 */
export interface NetBackend {
  /** Send one frame from the guest. */
  write(frame: Buffer): void;
  /** Register the receiver of host frames for the guest (called once, by the device). */
  onFrame(cb: (frame: Buffer) => void): void;
  /** Stop reading host frames until `resume` (frames then wait in the host, e.g. the TAP's queue). */
  pause?(): void;
  resume?(): void;
}

export interface VirtioNetOptions {
  backend: NetBackend;
  /** 6-byte MAC offered with VIRTIO_NET_F_MAC (default 52:54:00:12:34:56). */
  mac?: Uint8Array | readonly number[];
  /** MTU offered with VIRTIO_NET_F_MTU (default 1500). */
  mtu?: number;
  queueSize?: number;
  /** Host frames held while the guest has no rx buffers (default 256); more are dropped. */
  maxPendingFrames?: number;
}

const RXQ = 0;
const TXQ = 1;
const HDR = VirtioNetHdrV1Layout.size;
/** Largest frame accepted from the guest: 64 KiB plus an Ethernet + VLAN header, as Linux's TAP. */
const MAX_FRAME = 65550;

/**
 * virtio-net (virtio 1.2 §5.1), one queue pair, no offloads, no control queue. Every frame
 * carries the 12-byte virtio_net_hdr_v1. With VIRTIO_NET_F_MRG_RXBUF a frame may span several
 * receive chains (num_buffers says how many); without it a frame that does not fit one chain is
 * dropped and counted.
 */
export class VirtioNet implements VirtioDevice {
  readonly deviceId = VIRTIO_ID_NET;
  readonly name = "net";
  readonly queueMaxSizes: readonly number[];
  readonly features = bit(VIRTIO_NET_F_MAC) | bit(VIRTIO_NET_F_MRG_RXBUF) | bit(VIRTIO_NET_F_STATUS) | bit(VIRTIO_NET_F_MTU);
  readonly configSize = VirtioNetConfigLayout.offsetOf("speed");
  readonly mac: Buffer;
  private readonly backend: NetBackend;
  private readonly config: Buffer;
  private readonly maxPending: number;
  private pending: Buffer[] = [];
  private ctx: DeviceContext | undefined;
  private paused = false;
  readonly stats = { txFrames: 0, rxFrames: 0, rxDropped: 0, txDropped: 0 };

  constructor(opts: VirtioNetOptions) {
    this.backend = opts.backend;
    this.mac = Buffer.from(opts.mac ?? [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    if (this.mac.length !== 6) throw new VirtioDeviceError("VIRTIO_DEVICE_BAD_CONFIG", "net: a MAC is 6 bytes");
    const qs = opts.queueSize ?? 256;
    this.queueMaxSizes = [qs, qs];
    this.maxPending = opts.maxPendingFrames ?? 256;
    this.config = VirtioNetConfigLayout.encode({
      mac: this.mac,
      status: VIRTIO_NET_S_LINK_UP,
      maxVirtqueuePairs: 1,
      mtu: opts.mtu ?? 1500,
      speed: 0,
      duplex: 0,
      rssMaxKeySize: 0,
      rssMaxIndirectionTableLength: 0,
      supportedHashTypes: 0,
    });
    this.backend.onFrame((f) => this.receive(f));
  }

  readConfig(offset: number, data: Buffer): void {
    readConfigBytes(this.config.subarray(0, this.configSize), offset, data);
  }
  writeConfig(): void {
    // The MAC is writable only on legacy devices; nothing else is.
  }

  activate(ctx: DeviceContext): void {
    this.ctx = ctx;
  }
  reset(): void {
    this.ctx = undefined;
    this.pending = [];
  }

  /**
   * VM paused: nothing is written into the receive queue and nothing taken from the transmit
   * queue until resume(). The backend stops reading (a TAP's frames wait in the kernel's queue,
   * which drops beyond its txqueuelen); frames a backend still hands over are held, up to
   * `maxPendingFrames`, and dropped (counted in `stats.rxDropped`) beyond.
   */
  pause(): void {
    this.paused = true;
    this.backend.pause?.();
  }
  resume(): void {
    this.paused = false;
    this.backend.resume?.();
    this.deliver();
  }

  private get mergeable(): boolean {
    return this.ctx !== undefined && (this.ctx.features & bit(VIRTIO_NET_F_MRG_RXBUF)) !== 0n;
  }

  /** Host frames waiting for guest receive buffers. */
  get pendingFrames(): number {
    return this.pending.length;
  }

  /** A frame from the host for the guest. */
  receive(frame: Buffer): void {
    if (this.ctx === undefined || !this.ctx.current) {
      this.stats.rxDropped++;
      return;
    }
    if (this.pending.length >= this.maxPending) {
      this.stats.rxDropped++;
      return;
    }
    this.pending.push(frame);
    if (!this.paused) this.deliver();
  }

  queueNotify(queue: number): void {
    const ctx = this.ctx;
    if (ctx === undefined || this.paused) return;
    if (queue === TXQ) {
      const more = drainQueue(ctx, TXQ, (c) => {
        const r = c.reader();
        // A chain without a full header, or a giant frame, is dropped: the guest is only hurting itself.
        if (r.remaining < HDR || r.remaining - HDR > MAX_FRAME) {
          this.stats.txDropped++;
          return 0;
        }
        r.skip(HDR);
        const frame = r.read(r.remaining);
        this.stats.txFrames++;
        this.backend.write(frame);
        return 0;
      });
      if (more) setImmediate(() => this.ctx === ctx && ctx.current && this.queueNotify(TXQ));
    } else if (queue === RXQ) this.deliver();
  }

  private deliver(): void {
    const ctx = this.ctx;
    if (ctx === undefined || !ctx.current || this.paused) return;
    const q = ctx.queues[RXQ]!;
    if (!q.active) return;
    try {
      let used = false;
      while (this.pending.length > 0) {
        const frame = this.pending[0]!;
        const need = HDR + frame.length;
        const cp = q.checkpoint();
        const chains: DescriptorChain[] = [];
        let room = 0;
        let c = q.pop();
        if (c === null) break;
        chains.push(c);
        room += c.writableLength;
        if (this.mergeable) {
          // §5.1.6.3.1: each mergeable buffer MUST hold at least a header; num_buffers could not be read otherwise.
          const whole = (ch: DescriptorChain): DescriptorChain => {
            if (ch.writableLength < HDR) throw new VirtqueueError("VIRTQ_CHAIN_SHORT", `net: receive buffer of ${ch.writableLength} bytes is smaller than the ${HDR}-byte header`, RXQ);
            return ch;
          };
          whole(c);
          while (room < need && chains.length < 0xffff) {
            c = q.pop();
            if (c === null) break;
            chains.push(whole(c));
            room += c.writableLength;
          }
          if (room < need) {
            // Not enough buffers yet: put them back and wait for the driver to post more.
            q.rewind(cp);
            break;
          }
        } else if (room < need) {
          this.pending.shift();
          this.stats.rxDropped++;
          q.addUsed(chains[0]!, 0);
          used = true;
          continue;
        }
        this.pending.shift();
        const hdr = VirtioNetHdrV1Layout.encode({ flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0, numBuffers: chains.length });
        const whole = Buffer.concat([hdr, frame] as Uint8Array[]);
        let off = 0;
        const lens: number[] = [];
        for (const ch of chains) {
          const w = ch.writer();
          const n = w.writeSome(whole.subarray(off));
          off += n;
          lens.push(n);
        }
        // Every element is written before the first used entry appears, so the driver never sees half a frame.
        chains.forEach((ch, i) => {
          q.addUsed(ch, lens[i]!);
        });
        this.stats.rxFrames++;
        used = true;
      }
      if (used) ctx.signalUsed(RXQ);
    } catch (e) {
      ctx.fail(e);
    }
  }

  saveState(): { mac: string } {
    return { mac: this.mac.toString("hex") };
  }
  restoreState(state: unknown): void {
    const s = state as { mac?: unknown } | null;
    if (s === null || typeof s !== "object" || s.mac !== this.mac.toString("hex")) {
      throw new VirtioDeviceError("VIRTIO_DEVICE_BAD_STATE", "net: saved state is for another MAC");
    }
  }
}
