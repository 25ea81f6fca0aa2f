import type { GuestMemory } from "@tsvmm/abi";
import type { MmioBus } from "@tsvmm/devices";
import { EventFd, FdWatch, readNoWait, Tap, type Vm } from "@tsvmm/kvm-backend";
import {
  MmioTransport, type NetBackend, RawFileBackend, VIRTIO_MMIO_WINDOW_SIZE, VirtioBlk, VirtioConsole, type VirtioDevice, VirtioNet, VirtioRng,
  VirtioVsock,
} from "@tsvmm/virtio";
import { VmmError } from "./errors.js";

/** A virtio device the builder attaches, as the config and the CLI name it. */
export type VirtioDeviceSpec =
  /** virtio-blk over a raw image file (`--disk FILE[,ro]`). */
  | { readonly kind: "blk"; readonly path: string; readonly readOnly?: boolean }
  /** virtio-net over an existing TAP interface in this network namespace (`--net tap=NAME`). */
  | { readonly kind: "net"; readonly tap: string; readonly mac?: readonly number[] }
  /** virtio-vsock, Firecracker's hybrid model over Unix sockets (`--vsock CID,UDS_PATH`). */
  | { readonly kind: "vsock"; readonly cid: number; readonly uds: string }
  /** virtio-console: one port carrying the VMM's console stream (`--console virtio`). */
  | { readonly kind: "console" }
  /** virtio-rng from the OS CSPRNG (`--rng`). */
  | { readonly kind: "rng" };

/** Where virtio-mmio windows go: in the 32-bit hole below the IOAPIC, one 4 KiB window each. */
export const VIRTIO_MMIO_BASE = 0xd000_0000;
/** Their interrupts: IOAPIC pins 16..23 (above the ISA IRQs), level-triggered, active-high. */
export const VIRTIO_GSI_BASE = 16;
export const VIRTIO_MAX_DEVICES = 8;

/** One attached device, as the firmware tables and the kernel command line describe it. */
export interface AttachedVirtio {
  readonly spec: VirtioDeviceSpec;
  readonly address: number;
  readonly size: number;
  readonly gsi: number;
  readonly transport: MmioTransport;
  readonly device: VirtioDevice;
}

/** The place of the `index`th device. */
export function virtioSlot(index: number): { address: number; size: number; gsi: number } {
  return { address: VIRTIO_MMIO_BASE + index * VIRTIO_MMIO_WINDOW_SIZE, size: VIRTIO_MMIO_WINDOW_SIZE, gsi: VIRTIO_GSI_BASE + index };
}

/** `virtio_mmio.device=` arguments for kernels built with CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES. */
export function virtioCmdline(devices: readonly { address: number; size: number; gsi: number }[]): string {
  return devices.map((d) => `virtio_mmio.device=${d.size / 1024}K@0x${d.address.toString(16)}:${d.gsi}`).join(" ");
}

/** A TAP interface as virtio-net's backend: frames without the virtio header, rx through an FdWatch. */
class TapBackend implements NetBackend {
  private watch: FdWatch | undefined;
  private cb: ((frame: Buffer) => void) | undefined;
  private paused = false;
  private closed = false;
  private readonly buf = Buffer.alloc(65536 + 14);
  constructor(
    private readonly tap: Tap,
    private readonly onError: (e: unknown) => void,
  ) {}
  write(frame: Buffer): void {
    this.tap.write(frame);
  }
  onFrame(cb: (frame: Buffer) => void): void {
    this.cb = cb;
    this.watchTap();
  }
  private watchTap(): void {
    this.watch?.close();
    this.watch = undefined;
    const cb = this.cb;
    if (cb === undefined || this.paused || this.closed) return;
    this.watch = new FdWatch(
      this.tap.fd,
      () => {
        // Drain what is waiting (the watch is level-triggered), unless a frame paused the VM meanwhile.
        for (let n = this.tap.read(this.buf); n !== undefined; n = this.paused ? undefined : this.tap.read(this.buf)) cb(Buffer.from(this.buf.subarray(0, n)));
      },
      this.onError,
    );
  }
  /** VM paused: stop reading the TAP; frames wait in the kernel's queue (it drops beyond txqueuelen). */
  pause(): void {
    this.paused = true;
    this.watch?.close();
    this.watch = undefined;
  }
  resume(): void {
    this.paused = false;
    this.watchTap();
  }
  close(): void {
    this.closed = true;
    this.watch?.close();
    this.tap.close();
  }
}

export interface VirtioAttachOptions {
  readonly vm: Vm;
  readonly memory: GuestMemory;
  readonly mmio: MmioBus;
  /** Console bytes from a virtio-console. */
  readonly console: (bytes: Buffer) => void;
  /** Contained errors of a device or transport (a driver bug, a socket failing): for the log, never thrown. */
  readonly onError: (e: unknown) => void;
}

/**
 * Make each device, put its transport on the MMIO bus, wire its interrupt to its IOAPIC pin
 * (level: raised while InterruptStatus is non-zero) and its queue doorbells to ioeventfds, so a
 * notification never exits to the run loop. Returns the devices and the closers that release
 * what was opened (files, sockets, TAPs, eventfds), in reverse order; on error, what was made is
 * released before throwing.
 */
export function attachVirtio(
  specs: readonly VirtioDeviceSpec[],
  o: VirtioAttachOptions,
): { attached: AttachedVirtio[]; closers: Array<() => void | Promise<void>>; ready: Promise<void>[] } {
  if (specs.length > VIRTIO_MAX_DEVICES) throw new VmmError("VMM_BUILD_INVALID", `at most ${VIRTIO_MAX_DEVICES} virtio devices, got ${specs.length}`);
  const closers: Array<() => void | Promise<void>> = [];
  const attached: AttachedVirtio[] = [];
  const ready: Promise<void>[] = [];
  try {
    for (const [i, spec] of specs.entries()) {
      const slot = virtioSlot(i);
      const device = makeDevice(spec, o, closers, ready);
      const gsi = slot.gsi;
      const transport = new MmioTransport(device, {
        mem: o.memory,
        interrupt: { trigger: () => o.vm.irqLine(gsi, true), lower: () => o.vm.irqLine(gsi, false) },
        onError: o.onError,
      });
      o.mmio.register(slot.address, slot.size, transport);
      for (const r of transport.notifyRegisters()) {
        const efd = new EventFd();
        closers.push(() => efd.close());
        const where = { addr: slot.address + r.offset, len: r.size, pio: false, datamatch: BigInt(r.value) };
        o.vm.registerIoeventfd(efd, where);
        const watch = new FdWatch(
          efd.fd,
          () => {
            if (efd.read() !== undefined) transport.notify(r.queue);
          },
          o.onError,
        );
        closers.push(() => watch.close());
      }
      attached.push({ spec, ...slot, transport, device });
    }
    return { attached, closers, ready };
  } catch (e) {
    for (const c of closers.reverse()) {
      try {
        void Promise.resolve(c()).catch(() => {});
      } catch {
        // Releasing after a failure: the first error is the one to report.
      }
    }
    throw e;
  }
}

function makeDevice(spec: VirtioDeviceSpec, o: VirtioAttachOptions, closers: Array<() => void | Promise<void>>, ready: Promise<void>[]): VirtioDevice {
  switch (spec.kind) {
    case "blk": {
      // Small reads whose data is in the page cache are done inline; RWF_NOWAIT keeps a miss off the event loop.
      const backend = RawFileBackend.open(spec.path, { readOnly: spec.readOnly ?? false, readNoWait });
      closers.push(() => backend.close());
      return new VirtioBlk({ backend, id: spec.path.slice(-20) });
    }
    case "net": {
      const tap = Tap.open(spec.tap, { vnetHdr: false });
      const backend = new TapBackend(tap, o.onError);
      closers.push(() => backend.close());
      return new VirtioNet({ backend, ...(spec.mac !== undefined ? { mac: spec.mac } : {}) });
    }
    case "vsock": {
      const dev = new VirtioVsock({ guestCid: spec.cid, udsPath: spec.uds, onError: o.onError });
      closers.push(() => dev.close());
      // The host listener is up before the first vCPU runs (Vmm.run waits for it).
      ready.push(dev.listen());
      return dev;
    }
    case "console":
      return new VirtioConsole({ output: o.console });
    case "rng":
      return new VirtioRng();
  }
}
