import type { GuestMemory } from "@tsvmm/abi";
import type { DescriptorChain } from "./queue/chain.js";
import type { Queue } from "./queue/queue.js";

/**
 * What a transport hands a device at DRIVER_OK. A context belongs to one activation: after a
 * reset (or DEVICE_NEEDS_RESET) `current` is false for ever and every method is a no-op, so an
 * asynchronous completion that arrives late can ask `current` and drop its result instead of
 * writing into guest memory the driver may have reused.
 */
export interface DeviceContext {
  readonly mem: GuestMemory;
  readonly queues: readonly Queue[];
  /** Features the driver accepted (device-specific and ring bits). */
  readonly features: bigint;
  /** True while this activation stands. */
  readonly current: boolean;
  /** After addUsed on `queue`: raise the used-buffer interrupt if the driver wants one. */
  signalUsed(queue: number): void;
  /** The device changed its configuration space: bump the generation, raise the config interrupt. */
  configChanged(): void;
  /** The driver broke the protocol (or the device cannot go on): DEVICE_NEEDS_RESET. */
  fail(error: unknown): void;
}

/**
 * A virtio device model behind a transport. The transport owns feature negotiation, the status
 * machine and the queues' configuration; the device owns its config space and the requests.
 * Methods may throw typed errors: the transport catches them and sets DEVICE_NEEDS_RESET.
 */
export interface VirtioDevice {
  /** Virtio device id (VIRTIO_ID_*). */
  readonly deviceId: number;
  /** Short name for logs and bus registration. */
  readonly name: string;
  /** Maximum size of each of the device's queues; the length is the queue count. */
  readonly queueMaxSizes: readonly number[];
  /** Device-specific feature bits offered (the transport adds VERSION_1 and the ring features). */
  readonly features: bigint;
  /** Size of the device configuration space in bytes. */
  readonly configSize: number;
  readConfig(offset: number, data: Buffer): void;
  writeConfig(offset: number, data: Buffer): void;
  /** DRIVER_OK: the queues the driver made ready are activated. */
  activate(ctx: DeviceContext): void;
  /** The driver notified `queue` (QueueNotify write, or an ioeventfd the VMM wired to the transport). */
  queueNotify(queue: number): void;
  /** Device reset: drop every request in flight; the old context is already dead. */
  reset(): void;
  /**
   * The VM is pausing: from now until `resume` the device writes nothing into guest memory and
   * takes nothing from its queues (host input it receives meanwhile is held, or dropped and
   * counted where the device says so). Resolves once everything it had started is complete in
   * guest memory. The transport holds queue notifications meanwhile. Devices that only act on
   * notifications need not implement it.
   */
  pause?(): Promise<void> | void;
  /** The VM resumes: deliver what was held; the transport then looks at every queue once. */
  resume?(): void;
  /** JSON-able device state (configuration the guest can change, identity); never in-flight I/O. */
  saveState(): unknown;
  restoreState(state: unknown): void;
}

/** Read `data.length` bytes at `offset` of an encoded config space; bytes past its end read as zero. */
export function readConfigBytes(config: Buffer, offset: number, data: Buffer): void {
  data.fill(0);
  if (offset < 0 || offset >= config.length) return;
  config.copy(data, 0, offset, Math.min(config.length, offset + data.length));
}

/**
 * The usual device loop over one queue (notification suppression handled): `handle` gets each
 * chain and returns the bytes it wrote (the chain is returned at once), or null when it keeps the
 * chain for an asynchronous completion (it then calls `queue.addUsed` and `ctx.signalUsed` itself,
 * after checking `ctx.current`). At most `limit` chains are taken per call so one busy queue cannot
 * hold the event loop; the return value says whether chains were left (call again later).
 */
export function drainQueue(ctx: DeviceContext, index: number, handle: (chain: DescriptorChain) => number | null, limit = 1024): boolean {
  const q = ctx.queues[index];
  if (q === undefined || !q.active || !ctx.current) return false;
  let n = 0;
  let used = false;
  let more = false;
  outer: do {
    q.disableNotification();
    for (let c = q.pop(); c !== null; c = q.pop()) {
      const written = handle(c);
      if (written !== null) {
        q.addUsed(c, written);
        used = true;
      }
      if (++n >= limit) {
        more = q.hasAvailable();
        break outer;
      }
    }
  } while (q.enableNotification());
  if (used) ctx.signalUsed(index);
  return more;
}
