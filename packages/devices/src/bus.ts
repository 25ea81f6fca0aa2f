import { BusError, BusOverlapError, DeviceFaultError, hex } from "./errors.js";

/**
 * A device model on a bus. `offset` is relative to the base of the range the device was
 * registered on; `data.length` is the access size (1, 2, 4 or 8 in practice). `read` fills
 * `data`, `write` consumes it; neither may keep `data` after returning (the bus reuses it).
 */
/** Anything ranges can be registered on (a PioBus, or a test double); what `attach` methods take. */
export interface RegisterTarget {
  register(base: number, length: number, device: Device): void;
}

/**
 * Who made an access. The bus hands the same frozen object to every access of one vCPU, so a
 * device may compare or index by it but must not keep per-access data in it.
 */
export interface AccessContext {
  /** Index of the vCPU whose exit this access is (0 for accesses made by the VMM itself). */
  readonly vcpu: number;
}

export interface Device {
  readonly name: string;
  /**
   * For one face of a device that spans several ranges (i8042, pc-testdev, the ACPI PM blocks):
   * the object whose `saveState`/`restoreState` covers all of them. A snapshot saves that object
   * once instead of asking each face.
   */
  readonly stateOwner?: object;
  read(offset: number, data: Buffer, ctx: AccessContext): void;
  write(offset: number, data: Buffer, ctx: AccessContext): void;
}

const contexts: AccessContext[] = [];
/** The shared context object of vCPU `vcpu` (allocated once per index). */
export function accessContext(vcpu: number): AccessContext {
  let c = contexts[vcpu];
  if (c === undefined) {
    if (!Number.isInteger(vcpu) || vcpu < 0 || vcpu > 0xffff) throw new BusError("BUS_INVALID_ACCESS", `vCPU index ${String(vcpu)} is not an integer 0..65535`);
    c = Object.freeze({ vcpu });
    contexts[vcpu] = c;
  }
  return c;
}

/**
 * Which port accesses the VMM intercepts. The VMX I/O bitmap and the SVM IOPM of
 * `@tsvmm/msr-io-bitmaps` have this shape; any object with it will do.
 */
export interface IoInterceptPolicy {
  intercepts(port: number, size: number): boolean;
}

/**
 * Why an access reached the default handler:
 * - `unclaimed`: no device holds the first byte;
 * - `straddles`: a device holds the first byte but the access runs past the end of its range;
 * - `not-intercepted`: the PIO bus's intercept policy does not intercept the port;
 * - `device-fault`: the device threw (reads then show the default value).
 */
export type UnclaimedReason = "unclaimed" | "straddles" | "not-intercepted" | "device-fault";

/** What the bus does with accesses no device takes. Must fill `data` on reads. */
export interface DefaultHandler {
  read(address: number, data: Buffer, reason: UnclaimedReason): void;
  write(address: number, data: Buffer, reason: UnclaimedReason): void;
}

/** One access handed to a default handler's log callback. `data` is a copy. */
export interface UnclaimedAccess {
  readonly address: number;
  readonly size: number;
  readonly isWrite: boolean;
  /** Bytes written, or bytes the guest is given on a read. */
  readonly data: Buffer;
  readonly reason: UnclaimedReason;
}

/**
 * A default handler whose reads return `fill` in every byte (0xff: an empty ISA bus, the usual
 * choice; 0x00: "reads as zero") and whose writes are dropped. `log`, when given, sees each access.
 */
export function fillDefaultHandler(fill: number, log?: (access: UnclaimedAccess) => void): DefaultHandler {
  if (!Number.isInteger(fill) || fill < 0 || fill > 0xff) {
    throw new BusError("BUS_INVALID_ACCESS", `default fill byte must be an integer 0..255, got ${String(fill)}`);
  }
  return {
    read(address, data, reason) {
      data.fill(fill);
      if (log !== undefined) log({ address, size: data.length, isWrite: false, data: Buffer.from(data), reason });
    },
    write(address, data, reason) {
      if (log !== undefined) log({ address, size: data.length, isWrite: true, data: Buffer.from(data), reason });
    },
  };
}

/** Sees every access after it was handled: reads carry the bytes the guest got. */
export type BusObserver = (address: number, data: Buffer, isWrite: boolean, vcpu: number) => void;

export interface BusOptions {
  /** Handles unclaimed accesses; default: reads all-ones, writes dropped, nothing logged. */
  defaultHandler?: DefaultHandler;
  /** Receives each device fault; default: faults are only counted (`faultCount`, `lastFault`). */
  onDeviceFault?: (error: DeviceFaultError) => void;
}

export interface PioBusOptions extends BusOptions {
  /** Ports the policy does not intercept go to the default handler (see README). */
  policy?: IoInterceptPolicy | null;
}

/** One registered range, as returned by `entries()`. */
export interface BusEntry {
  readonly base: number;
  readonly length: number;
  readonly device: Device;
}

const PORT_SPACE = 0x10000;
/** Addresses above this lose precision as a JS number; physical addresses are at most 52 bits. */
const MMIO_LIMIT = 2 ** 53;
const FAULT_NAME_DEFAULT = "<default handler>";

abstract class Bus {
  /** Called after every access; `null` costs nothing. */
  observer: BusObserver | null = null;
  defaultHandler: DefaultHandler;
  onDeviceFault: ((error: DeviceFaultError) => void) | null;
  faultCount = 0;
  lastFault: DeviceFaultError | null = null;

  // The lookup leaves its result here so the hot path allocates nothing.
  protected hit: BusEntry | null = null;
  protected hitOffset = 0;
  private readonly scratch: Buffer[] = [];
  protected abstract readonly space: string;

  constructor(options: BusOptions) {
    this.defaultHandler = options.defaultHandler ?? fillDefaultHandler(0xff);
    this.onDeviceFault = options.onDeviceFault ?? null;
    for (const size of [1, 2, 4, 8]) this.scratch[size] = Buffer.alloc(size);
  }

  /** Resolves `address`: sets `hit`/`hitOffset` and returns null, or returns why nobody takes it. */
  protected abstract lookup(address: number, size: number): UnclaimedReason | null;
  protected abstract checkAddress(address: number | bigint): number;

  /**
   * Reads `size` bytes at `address` into a scratch Buffer owned by the bus, valid until the next
   * access on this bus. Sizes other than 1/2/4/8 get a fresh Buffer.
   */
  read(address: number | bigint, size: number, vcpu = 0): Buffer {
    if (size !== 1 && size !== 2 && size !== 4 && size !== 8) {
      if (!Number.isInteger(size) || size < 1 || size > 0x10000) {
        throw new BusError("BUS_INVALID_ACCESS", `access size must be a positive integer, got ${String(size)}`);
      }
      const data = Buffer.alloc(size);
      this.readInto(address, data, vcpu);
      return data;
    }
    const data = this.scratch[size]!;
    this.readInto(address, data, vcpu);
    return data;
  }

  /** Reads `data.length` bytes at `address` into `data` (e.g. straight into kvm_run's data area). */
  readInto(address: number | bigint, data: Buffer, vcpu = 0): void {
    const addr = this.checkAddress(address);
    checkData(data);
    const reason = this.lookup(addr, data.length);
    if (reason === null) {
      const entry = this.hit!;
      try {
        entry.device.read(this.hitOffset, data, accessContext(vcpu));
      } catch (e) {
        this.fault(entry.device.name, addr, data, false, e);
        this.defaultRead(addr, data, "device-fault");
      }
    } else {
      this.defaultRead(addr, data, reason);
    }
    if (this.observer !== null) this.observer(addr, data, false, vcpu);
  }

  /** Reads 1, 2 or 4 bytes at `address` as a little-endian unsigned number. */
  readValue(address: number | bigint, size: 1 | 2 | 4, vcpu = 0): number {
    if (size !== 1 && size !== 2 && size !== 4) {
      throw new BusError("BUS_INVALID_ACCESS", `readValue takes size 1, 2 or 4, got ${String(size)}`);
    }
    return this.read(address, size, vcpu).readUIntLE(0, size);
  }

  /** Writes `data` (its length is the access size) at `address`. */
  write(address: number | bigint, data: Buffer, vcpu = 0): void {
    const addr = this.checkAddress(address);
    checkData(data);
    const reason = this.lookup(addr, data.length);
    if (reason === null) {
      const entry = this.hit!;
      try {
        entry.device.write(this.hitOffset, data, accessContext(vcpu));
      } catch (e) {
        this.fault(entry.device.name, addr, data, true, e);
        this.defaultWrite(addr, data, "device-fault");
      }
    } else {
      this.defaultWrite(addr, data, reason);
    }
    if (this.observer !== null) this.observer(addr, data, true, vcpu);
  }

  /** Writes a 1-, 2- or 4-byte little-endian value at `address`. */
  writeValue(address: number | bigint, size: 1 | 2 | 4, value: number, vcpu = 0): void {
    if (size !== 1 && size !== 2 && size !== 4) {
      throw new BusError("BUS_INVALID_ACCESS", `writeValue takes size 1, 2 or 4, got ${String(size)}`);
    }
    if (!Number.isInteger(value) || value < 0 || value >= 2 ** (8 * size)) {
      throw new BusError("BUS_INVALID_ACCESS", `value ${String(value)} does not fit in ${size} byte(s)`);
    }
    const data = this.scratch[size]!;
    data.writeUIntLE(value, 0, size);
    this.write(address, data, vcpu);
  }

  private defaultRead(addr: number, data: Buffer, reason: UnclaimedReason): void {
    try {
      this.defaultHandler.read(addr, data, reason);
    } catch (e) {
      data.fill(0xff);
      this.fault(FAULT_NAME_DEFAULT, addr, data, false, e);
    }
  }

  private defaultWrite(addr: number, data: Buffer, reason: UnclaimedReason): void {
    try {
      this.defaultHandler.write(addr, data, reason);
    } catch (e) {
      this.fault(FAULT_NAME_DEFAULT, addr, data, true, e);
    }
  }

  private fault(name: string, addr: number, data: Buffer, isWrite: boolean, cause: unknown): void {
    const error = new DeviceFaultError(name, addr, data.length, isWrite, cause);
    this.faultCount++;
    this.lastFault = error;
    if (this.onDeviceFault !== null) {
      try {
        this.onDeviceFault(error);
      } catch {
        // A throwing fault callback must not take the VMM down either; the fault is recorded above.
      }
    }
  }

  protected checkRange(base: number | bigint, length: number | bigint, limit: number): [number, number] {
    const b = typeof base === "bigint" ? Number(base) : base;
    const l = typeof length === "bigint" ? Number(length) : length;
    if (!Number.isSafeInteger(b) || b < 0 || !Number.isSafeInteger(l) || l < 1 || l > limit - b) {
      throw new BusError(
        "BUS_INVALID_RANGE",
        `${this.space} range base ${String(base)} length ${String(length)} is not a non-empty range inside 0..${hex(limit)}`,
      );
    }
    return [b, l];
  }
}

function checkData(data: Buffer): void {
  if (!(data instanceof Uint8Array) || data.length === 0) {
    throw new BusError("BUS_INVALID_ACCESS", "access data must be a non-empty Buffer");
  }
}

function checkDevice(device: Device): void {
  if (
    device === null ||
    typeof device !== "object" ||
    typeof device.read !== "function" ||
    typeof device.write !== "function" ||
    typeof device.name !== "string"
  ) {
    throw new BusError("BUS_INVALID_RANGE", "a device must have a string name and read/write methods");
  }
}

/**
 * The x86 port-I/O space (ports 0..0xffff). Lookup is one Uint16Array index: the table maps each
 * port to its registration slot.
 */
export class PioBus extends Bus {
  protected readonly space = "port";
  /** Ports it does not intercept read/write through the default handler. `null`: intercept all. */
  policy: IoInterceptPolicy | null;
  private readonly table = new Uint16Array(PORT_SPACE);
  private readonly slots: (BusEntry | undefined)[] = [undefined];
  private readonly freeSlots: number[] = [];

  constructor(options: PioBusOptions = {}) {
    super(options);
    this.policy = options.policy ?? null;
  }

  /** Puts `device` on ports `base .. base+length-1`. Throws BUS_OVERLAP naming both devices (the lowest-addressed one overlapped). */
  register(base: number, length: number, device: Device): void {
    const [b, l] = this.checkRange(base, length, PORT_SPACE);
    checkDevice(device);
    for (let p = b; p < b + l; p++) {
      const s = this.table[p]!;
      if (s !== 0) {
        const other = this.slots[s]!;
        throw new BusOverlapError(device.name, b, l, other.device.name, other.base, other.length, this.space);
      }
    }
    let slot = this.freeSlots.pop();
    if (slot === undefined) {
      slot = this.slots.length;
      if (slot >= PORT_SPACE) throw new BusError("BUS_INVALID_RANGE", "too many port registrations");
      this.slots.push(undefined);
    }
    this.slots[slot] = { base: b, length: l, device };
    this.table.fill(slot, b, b + l);
  }

  /** Removes the range that starts at `base` and returns its device. */
  unregister(base: number): Device {
    const s = Number.isInteger(base) && base >= 0 && base < PORT_SPACE ? this.table[base]! : 0;
    const entry = this.slots[s];
    if (s === 0 || entry === undefined || entry.base !== base) {
      throw new BusError("BUS_NOT_REGISTERED", `no port range starts at ${hex(Number(base))}`);
    }
    this.table.fill(0, entry.base, entry.base + entry.length);
    this.slots[s] = undefined;
    this.freeSlots.push(s);
    return entry.device;
  }

  /** The registered ranges, sorted by base. */
  entries(): BusEntry[] {
    return this.slots.filter((e): e is BusEntry => e !== undefined).sort((a, b) => a.base - b.base);
  }

  protected checkAddress(address: number | bigint): number {
    const a = typeof address === "bigint" ? Number(address) : address;
    if (!Number.isInteger(a) || a < 0 || a >= PORT_SPACE) {
      throw new BusError("BUS_INVALID_ACCESS", `port ${String(address)} is not in 0..0xffff`);
    }
    return a;
  }

  protected lookup(port: number, size: number): UnclaimedReason | null {
    if (this.policy !== null && !this.policy.intercepts(port, size)) return "not-intercepted";
    const s = this.table[port]!;
    if (s === 0) return "unclaimed";
    const entry = this.slots[s]!;
    const offset = port - entry.base;
    if (offset + size > entry.length) return "straddles";
    this.hit = entry;
    this.hitOffset = offset;
    return null;
  }
}

/**
 * Memory-mapped I/O space (guest-physical addresses below 2^53). Ranges are kept sorted and found
 * by binary search, with the last hit checked first.
 */
export class MmioBus extends Bus {
  protected readonly space = "MMIO";
  private ranges: BusEntry[] = [];
  private last: BusEntry | null = null;

  constructor(options: BusOptions = {}) {
    super(options);
  }

  /** Puts `device` on `base .. base+length-1`. Throws BUS_OVERLAP naming both devices (the lowest-addressed one overlapped). */
  register(base: number | bigint, length: number | bigint, device: Device): void {
    const [b, l] = this.checkRange(base, length, MMIO_LIMIT);
    checkDevice(device);
    const i = this.upperBound(b);
    // Only the neighbours can overlap: the ranges are sorted and disjoint.
    const before = this.ranges[i - 1];
    const after = this.ranges[i];
    for (const other of [before, after]) {
      if (other !== undefined && other.base < b + l && b < other.base + other.length) {
        throw new BusOverlapError(device.name, b, l, other.device.name, other.base, other.length, this.space);
      }
    }
    this.ranges.splice(i, 0, { base: b, length: l, device });
  }

  /** Removes the range that starts at `base` and returns its device. */
  unregister(base: number | bigint): Device {
    const b = typeof base === "bigint" ? Number(base) : base;
    const i = this.upperBound(b) - 1;
    const entry = this.ranges[i];
    if (entry === undefined || entry.base !== b) {
      throw new BusError("BUS_NOT_REGISTERED", `no MMIO range starts at ${String(base)}`);
    }
    this.ranges.splice(i, 1);
    this.last = null;
    return entry.device;
  }

  entries(): BusEntry[] {
    return [...this.ranges];
  }

  protected checkAddress(address: number | bigint): number {
    const a = typeof address === "bigint" ? Number(address) : address;
    if (!Number.isInteger(a) || a < 0) {
      throw new BusError("BUS_INVALID_ACCESS", `MMIO address ${String(address)} is not a non-negative integer`);
    }
    // Addresses past 2^53 hold no device (registration refuses them); they stay unclaimed.
    return a;
  }

  protected lookup(addr: number, size: number): UnclaimedReason | null {
    let entry = this.last;
    if (entry === null || addr < entry.base || addr >= entry.base + entry.length) {
      if (addr >= MMIO_LIMIT) return "unclaimed";
      const found = this.ranges[this.upperBound(addr) - 1];
      if (found === undefined || addr >= found.base + found.length) return "unclaimed";
      entry = found;
      this.last = found;
    }
    const offset = addr - entry.base;
    if (offset + size > entry.length) return "straddles";
    this.hit = entry;
    this.hitOffset = offset;
    return null;
  }

  /** Index of the first range whose base is greater than `addr`. */
  private upperBound(addr: number): number {
    const r = this.ranges;
    let lo = 0;
    let hi = r.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (r[mid]!.base <= addr) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
