import { randomFillSync } from "node:crypto";
import { VIRTIO_ID_RNG } from "../constants.js";
import { type DeviceContext, drainQueue, type VirtioDevice } from "../device.js";
import { VirtioDeviceError } from "../errors.js";

export interface VirtioRngOptions {
  /** Request queue size (default 256). */
  queueSize?: number;
  /** Bytes filled per request at most (default 64 KiB): the spec lets the device return fewer. */
  maxBytesPerRequest?: number;
}

/** virtio-rng (virtio 1.2 §5.4): each device-writable buffer is filled from the OS CSPRNG. */
export class VirtioRng implements VirtioDevice {
  readonly deviceId = VIRTIO_ID_RNG;
  readonly name = "rng";
  readonly queueMaxSizes: readonly number[];
  readonly features = 0n;
  readonly configSize = 0;
  private readonly maxBytes: number;
  private ctx: DeviceContext | undefined;
  /** Bytes handed to the guest since construction. */
  bytesServed = 0;

  constructor(opts: VirtioRngOptions = {}) {
    this.queueMaxSizes = [opts.queueSize ?? 256];
    this.maxBytes = opts.maxBytesPerRequest ?? 65536;
  }

  readConfig(_offset: number, data: Buffer): void {
    data.fill(0);
  }
  writeConfig(): void {}

  activate(ctx: DeviceContext): void {
    this.ctx = ctx;
  }

  queueNotify(queue: number): void {
    const ctx = this.ctx;
    if (ctx === undefined || queue !== 0) return;
    // Readable elements carry nothing for us (§5.4.6 forbids them); they are skipped, not fatal.
    const more = drainQueue(ctx, 0, (chain) => {
      const w = chain.writer();
      for (const v of w.views(Math.min(w.remaining, this.maxBytes))) randomFillSync(v);
      this.bytesServed += w.written;
      return w.written;
    });
    if (more) setImmediate(() => this.ctx === ctx && ctx.current && this.queueNotify(0));
  }

  reset(): void {
    this.ctx = undefined;
  }
  saveState(): { bytesServed: number } {
    return { bytesServed: this.bytesServed };
  }
  restoreState(state: unknown): void {
    const s = state as { bytesServed?: unknown } | null;
    if (s === null || typeof s !== "object" || typeof s.bytesServed !== "number") {
      throw new VirtioDeviceError("VIRTIO_DEVICE_BAD_STATE", "rng: saved state has no bytesServed");
    }
    this.bytesServed = s.bytesServed;
  }
}
