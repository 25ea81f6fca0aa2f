import { bit, VIRTIO_CONSOLE_F_EMERG_WRITE, VIRTIO_CONSOLE_F_SIZE, VIRTIO_ID_CONSOLE } from "../constants.js";
import { type DeviceContext, drainQueue, readConfigBytes, type VirtioDevice } from "../device.js";
import { VirtioDeviceError } from "../errors.js";
import { VirtioConsoleConfigLayout } from "../layouts.js";

export interface VirtioConsoleOptions {
  /** Receives every byte the guest writes (transmitq, and the emergency-write register). */
  output: (data: Buffer) => void;
  /** Size of both queues (default 256). */
  queueSize?: number;
  /** Console size offered with VIRTIO_CONSOLE_F_SIZE (default 80x25). */
  cols?: number;
  rows?: number;
  /** Host input kept while the guest has posted no receive buffers (default 1 MiB); beyond it input is dropped and counted. */
  maxPendingInput?: number;
}

const RX = 0;
const TX = 1;
const EMERG_WR = VirtioConsoleConfigLayout.offsetOf("emergWr");

/**
 * virtio-console (virtio 1.2 §5.3) with one port and no multiport control queue: receiveq (0)
 * carries host input to the guest, transmitq (1) guest output to `output`.
 */
export class VirtioConsole implements VirtioDevice {
  readonly deviceId = VIRTIO_ID_CONSOLE;
  readonly name = "console";
  readonly queueMaxSizes: readonly number[];
  readonly features = bit(VIRTIO_CONSOLE_F_SIZE) | bit(VIRTIO_CONSOLE_F_EMERG_WRITE);
  readonly configSize = VirtioConsoleConfigLayout.size;
  private readonly output: (data: Buffer) => void;
  private readonly maxPending: number;
  private config: Buffer;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private ctx: DeviceContext | undefined;
  private paused = false;
  /** Input bytes dropped because the guest was not reading. */
  droppedInput = 0;

  constructor(opts: VirtioConsoleOptions) {
    this.output = opts.output;
    this.queueMaxSizes = [opts.queueSize ?? 256, opts.queueSize ?? 256];
    this.maxPending = opts.maxPendingInput ?? 1 << 20;
    this.config = VirtioConsoleConfigLayout.encode({ cols: opts.cols ?? 80, rows: opts.rows ?? 25, maxNrPorts: 1, emergWr: 0 });
  }

  readConfig(offset: number, data: Buffer): void {
    readConfigBytes(this.config, offset, data);
  }
  writeConfig(offset: number, data: Buffer): void {
    // §5.3.4: a write to emerg_wr sends its low byte out, usable before the queues are up.
    if (offset === EMERG_WR && data.length >= 1) this.output(Buffer.of(data[0]!));
  }

  /** The console was resized: update the config space and tell the driver. */
  resize(cols: number, rows: number): void {
    this.config = VirtioConsoleConfigLayout.encode({ cols, rows, maxNrPorts: 1, emergWr: 0 });
    this.ctx?.configChanged();
  }

  /** Bytes from the host for the guest; delivered now if it posted buffers, else when it does. */
  input(data: Uint8Array): void {
    if (data.length === 0) return;
    if (this.pendingBytes + data.length > this.maxPending) {
      this.droppedInput += data.length;
      return;
    }
    this.pending.push(Buffer.from(data));
    this.pendingBytes += data.length;
    this.deliver();
  }

  activate(ctx: DeviceContext): void {
    this.ctx = ctx;
  }

  /** VM paused: host input is held (within maxPending) instead of written into the receive queue. */
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
    this.deliver();
  }

  queueNotify(queue: number): void {
    const ctx = this.ctx;
    if (ctx === undefined || this.paused) return;
    if (queue === RX) this.deliver();
    else if (queue === TX) {
      const more = drainQueue(ctx, TX, (c) => {
        const r = c.reader();
        if (r.remaining > 0) this.output(r.read(r.remaining));
        return 0;
      });
      if (more) setImmediate(() => this.ctx === ctx && ctx.current && this.queueNotify(TX));
    }
  }

  private deliver(): void {
    const ctx = this.ctx;
    if (ctx === undefined || !ctx.current || this.pending.length === 0 || this.paused) return;
    const q = ctx.queues[RX]!;
    if (!q.active) return;
    try {
      let used = false;
      while (this.pending.length > 0) {
        const c = q.pop();
        if (c === null) break;
        const w = c.writer();
        while (this.pending.length > 0 && w.remaining > 0) {
          const head = this.pending[0]!;
          const n = w.writeSome(head);
          this.pendingBytes -= n;
          if (n === head.length) this.pending.shift();
          else this.pending[0] = head.subarray(n);
        }
        q.addUsed(c, w.written);
        used = true;
      }
      if (used) ctx.signalUsed(RX);
    } catch (e) {
      ctx.fail(e);
    }
  }

  reset(): void {
    this.ctx = undefined;
  }
  saveState(): { cols: number; rows: number; pendingInput: string } {
    const c = VirtioConsoleConfigLayout.decode(this.config);
    return { cols: c.cols, rows: c.rows, pendingInput: Buffer.concat(this.pending).toString("base64") };
  }
  restoreState(state: unknown): void {
    const s = state as { cols?: unknown; rows?: unknown; pendingInput?: unknown } | null;
    if (s === null || typeof s !== "object" || typeof s.cols !== "number" || typeof s.rows !== "number" || typeof s.pendingInput !== "string") {
      throw new VirtioDeviceError("VIRTIO_DEVICE_BAD_STATE", "console: saved state lacks cols/rows/pendingInput");
    }
    this.config = VirtioConsoleConfigLayout.encode({ cols: s.cols, rows: s.rows, maxNrPorts: 1, emergWr: 0 });
    const p = Buffer.from(s.pendingInput, "base64");
    this.pending = p.length > 0 ? [p] : [];
    this.pendingBytes = p.length;
  }
}
