import { TsvmmError } from "@tsvmm/abi";
import { ERRNO } from "./errno.js";
import { errnoName } from "./errors.js";
import { native } from "./native.js";

/** <linux/if_tun.h> interface flags for TUNSETIFF (checked against the header by the tests). */
export const IFF = { TUN: 0x0001, TAP: 0x0002, NO_PI: 0x1000, VNET_HDR: 0x4000, MULTI_QUEUE: 0x0100 } as const;
/** <linux/if_tun.h> TUNSETOFFLOAD flags: what the reader of the TAP fd can take (and must then handle). */
export const TUN_F = { CSUM: 0x01, TSO4: 0x02, TSO6: 0x04, TSO_ECN: 0x08, UFO: 0x10 } as const;
/** <linux/if.h> IFNAMSIZ: interface names are at most IFNAMSIZ - 1 bytes. */
export const IFNAMSIZ = 16;

export type TapErrorCode =
  /** The interface name is empty, too long, or contains a '/' or NUL. */
  | "TAP_INVALID_NAME"
  /** /dev/net/tun does not exist. */
  | "TAP_NOT_FOUND"
  /** Creating or attaching the interface needs CAP_NET_ADMIN (or the interface belongs to another user). */
  | "TAP_PERMISSION_DENIED"
  /** The interface exists and is attached to another fd, or exists with other flags. */
  | "TAP_BUSY"
  /** Opening /dev/net/tun or TUNSETIFF failed otherwise. */
  | "TAP_OPEN_FAILED"
  /** TUNSETVNETHDRSZ / TUNSETOFFLOAD / TUNGETIFF was refused. */
  | "TAP_IOCTL_FAILED"
  /** read or write on the TAP fd failed. */
  | "TAP_IO_FAILED"
  /** The Tap was closed. */
  | "TAP_CLOSED";

export class TapError extends TsvmmError<TapErrorCode> {
  readonly errno: number | undefined;
  readonly errnoName: string | undefined;
  constructor(code: TapErrorCode, message: string, errno?: number) {
    super(code, message);
    this.errno = errno;
    this.errnoName = errno === undefined ? undefined : errnoName(errno);
  }
}

export interface TapOptions {
  /** Frames carry a virtio-net header in front (IFF_VNET_HDR). */
  vnetHdr?: boolean;
  /** TUNSETVNETHDRSZ: 10 (virtio_net_hdr, the default) or 12 (with num_buffers), ... */
  vnetHdrSize?: number;
  /** TUNSETOFFLOAD with TUN_F_* flags. */
  offload?: number;
}

/**
 * A TAP interface attached to a non-blocking fd (IFF_TAP | IFF_NO_PI, plus IFF_VNET_HDR when
 * asked): each read returns one Ethernet frame the host sent to the interface, each write injects
 * one frame as if it arrived on it. Poll the fd or retry reads; they never block.
 */
export class Tap {
  private fdValue: number;
  /** The interface name the kernel gave (the one asked for, or e.g. `tap0` for a `tap%d` pattern). */
  readonly name: string;
  readonly vnetHdr: boolean;

  private constructor(fd: number, name: string, vnetHdr: boolean) {
    this.fdValue = fd;
    this.name = name;
    this.vnetHdr = vnetHdr;
  }

  /** Create (or attach to) the TAP interface `name`. Throws TapError; no fd outlives a failure. */
  static open(name: string, options: TapOptions = {}): Tap {
    if (name.length === 0 || Buffer.byteLength(name) >= IFNAMSIZ || /[/\0\s]/.test(name)) {
      throw new TapError("TAP_INVALID_NAME", `TAP interface name ${JSON.stringify(name)} must be 1..${IFNAMSIZ - 1} bytes without '/', NUL or spaces`);
    }
    const vnetHdr = options.vnetHdr ?? options.vnetHdrSize !== undefined;
    const r = native().openTap(name, IFF.TAP | IFF.NO_PI | (vnetHdr ? IFF.VNET_HDR : 0));
    if (typeof r === "number") throw openError(name, -r);
    const tap = new Tap(r.fd, r.name, vnetHdr);
    try {
      if (options.vnetHdrSize !== undefined) tap.setVnetHdrSize(options.vnetHdrSize);
      if (options.offload !== undefined) tap.setOffload(options.offload);
    } catch (e) {
      tap.close();
      throw e;
    }
    return tap;
  }

  get fd(): number {
    if (this.fdValue < 0) throw new TapError("TAP_CLOSED", `TAP ${this.name} is closed`);
    return this.fdValue;
  }
  get closed(): boolean {
    return this.fdValue < 0;
  }

  /** TUNGETIFF: the interface's name and IFF_* flags as the kernel holds them. */
  info(): { name: string; flags: number } {
    const r = native().tapGetIff(this.fd);
    if (typeof r === "number") throw ioctlFailed("TUNGETIFF", this.name, -r);
    return r;
  }

  /** TUNSETVNETHDRSZ (the kernel takes 10 and up; virtio 1.x devices use 12). */
  setVnetHdrSize(size: number): void {
    if (!Number.isInteger(size) || size < 0 || size > 0x7fffffff) throw new TapError("TAP_IOCTL_FAILED", `vnet header size ${size} is not an int`, ERRNO.EINVAL);
    const r = native().tapSetVnetHdrSize(this.fd, size);
    if (r < 0) throw ioctlFailed("TUNSETVNETHDRSZ", this.name, -r);
  }
  vnetHdrSize(): number {
    const r = native().tapGetVnetHdrSize(this.fd);
    if (r < 0) throw ioctlFailed("TUNGETVNETHDRSZ", this.name, -r);
    return r;
  }

  /** TUNSETOFFLOAD: the TUN_F_* offloads the reader accepts (checksum, TSO, ...). */
  setOffload(flags: number): void {
    if (!Number.isInteger(flags) || flags < 0 || flags > 0xffffffff) throw new TapError("TAP_IOCTL_FAILED", `offload flags ${flags} are not a u32`, ERRNO.EINVAL);
    const r = native().tapSetOffload(this.fd, flags);
    if (r < 0) throw ioctlFailed("TUNSETOFFLOAD", this.name, -r);
  }

  /**
   * Read one frame (with its vnet header first when `vnetHdr`) into `buf`: its length, or
   * undefined when none is waiting. A frame longer than `buf` is cut to fit.
   */
  read(buf: Uint8Array): number | undefined {
    const r = native().read(this.fd, buf);
    if (r === -ERRNO.EAGAIN) return undefined;
    if (r < 0) throw new TapError("TAP_IO_FAILED", `read from TAP ${this.name} failed: ${errnoName(-r)}`, -r);
    return r;
  }

  /** Write one frame (vnet header first when `vnetHdr`); returns the bytes taken. */
  write(frame: Uint8Array): number {
    const r = native().write(this.fd, frame);
    if (r < 0) throw new TapError("TAP_IO_FAILED", `write to TAP ${this.name} failed: ${errnoName(-r)}`, -r);
    return r;
  }

  /** Close the fd; the kernel removes the interface unless it was made persistent. Idempotent. */
  close(): void {
    if (this.fdValue < 0) return;
    native().close(this.fdValue);
    this.fdValue = -1;
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

function openError(name: string, errno: number): TapError {
  const why = `TAP ${name}: ${errnoName(errno)}`;
  if (errno === ERRNO.ENOENT || errno === ERRNO.ENODEV) return new TapError("TAP_NOT_FOUND", `${why} (no /dev/net/tun)`, errno);
  if (errno === ERRNO.EPERM || errno === ERRNO.EACCES) return new TapError("TAP_PERMISSION_DENIED", `${why} (needs CAP_NET_ADMIN)`, errno);
  if (errno === ERRNO.EBUSY) return new TapError("TAP_BUSY", `${why} (attached elsewhere, or exists with other flags)`, errno);
  if (errno === ERRNO.EINVAL) return new TapError("TAP_OPEN_FAILED", `${why} (the kernel refused the name or flags)`, errno);
  return new TapError("TAP_OPEN_FAILED", why, errno);
}

function ioctlFailed(ioctl: string, name: string, errno: number): TapError {
  return new TapError("TAP_IOCTL_FAILED", `${ioctl} on TAP ${name} failed: ${errnoName(errno)}`, errno);
}
