import { KvmError, syscallError } from "./errors.js";
import { type NativeAddon, native } from "./native.js";

/** The addon's compare-exchange (native/addon.cc): 1 stored, 0 not (expected then holds the old bytes), or -errno. */
type NativeCompareExchange = (view: Uint8Array, offset: number, expected: Uint8Array, desired: Uint8Array) => number;
const nativeCas = (): NativeCompareExchange => (native() as NativeAddon & { compareExchange: NativeCompareExchange }).compareExchange;

/** What {@link compareExchange} found: the bytes that were there, and whether `desired` replaced them. */
export interface CompareExchangeResult {
  readonly swapped: boolean;
  readonly old: Uint8Array;
}

/**
 * One locked compare-exchange of 8 or 16 bytes at `view[offset]`, atomic against every other
 * thread and every vCPU running natively on the same memory (LOCK CMPXCHG / LOCK CMPXCHG16B on
 * the host). `view` is any view of host memory: a GuestRam's buffer, or a slot's Buffer from
 * GuestMemory.slice(). The address must be aligned to the size (KVM_INVALID_ARGUMENT otherwise),
 * and the operand must lie inside `view` (KVM_INVALID_ARGUMENT).
 */
export function compareExchange(view: Uint8Array, offset: number, expected: Uint8Array, desired: Uint8Array): CompareExchangeResult {
  const size = expected.length;
  if ((size !== 8 && size !== 16) || desired.length !== size) {
    throw new KvmError("KVM_INVALID_ARGUMENT", `compareExchange takes 8 or 16 bytes (got ${expected.length} expected, ${desired.length} desired)`);
  }
  // N-API cannot hand the addon a pointer into a SharedArrayBuffer (guest RAM is never one).
  if (typeof SharedArrayBuffer !== "undefined" && view.buffer instanceof SharedArrayBuffer) {
    throw new KvmError("KVM_INVALID_ARGUMENT", "compareExchange takes a view of mapped memory, not of a SharedArrayBuffer");
  }
  if (!Number.isSafeInteger(offset) || offset < 0 || offset + size > view.length) {
    throw new KvmError("KVM_INVALID_ARGUMENT", `compareExchange at ${String(offset)}+${size} is outside the ${view.length}-byte view`);
  }
  const old = Uint8Array.from(expected);
  const r = nativeCas()(view, offset, old, desired);
  if (r < 0) throw new KvmError("KVM_INVALID_ARGUMENT", `compareExchange at ${offset}+${size}: ${r === -22 ? "not aligned to its size" : `errno ${-r}`}`, { errno: -r });
  return { swapped: r === 1, old };
}

/**
 * Host memory that can back memory slots of several VMs at once (a shared region, as in
 * Jailhouse's inter-cell communication or ivshmem). A VM that uses it does not unmap it on close;
 * `close()` here does, after zeroing it, and must come after every VM using it has closed.
 *
 * When the last VM using it releases it, it is zeroed (Jailhouse's rule: clear a memory region
 * before it can be reassigned), so the next VM it is given to never sees the previous guests'
 * data. `{ clearOnRelease: false }` keeps the contents for regions meant to persist across VMs.
 */
export class GuestRam {
  readonly size: number;
  private ab: ArrayBuffer | undefined;
  private view: Buffer;
  private users = 0;
  private readonly clearOnRelease: boolean;

  constructor(size: number, options: { clearOnRelease?: boolean } = {}) {
    this.clearOnRelease = options.clearOnRelease ?? true;
    if (!Number.isSafeInteger(size) || size <= 0 || size % 4096 !== 0) {
      throw new KvmError("KVM_INVALID_ARGUMENT", `GuestRam size ${size} must be a positive multiple of 4096`);
    }
    const n = native();
    const c = n.constants;
    const ab = n.mmap(-1, size, c.PROT_READ | c.PROT_WRITE, c.MAP_SHARED | c.MAP_ANONYMOUS | c.MAP_NORESERVE, 0);
    if (typeof ab === "number") throw syscallError("mmap", ab, `${size} bytes of shared guest memory`);
    this.size = size;
    this.ab = ab;
    this.view = Buffer.from(ab);
  }

  get buffer(): Buffer {
    if (this.ab === undefined) throw new KvmError("KVM_CLOSED", "GuestRam is closed");
    return this.view;
  }

  /** @internal The host address KVM is given. */
  address(): bigint {
    if (this.ab === undefined) throw new KvmError("KVM_CLOSED", "GuestRam is closed");
    return native().address(this.ab);
  }
  /** @internal */
  acquire(): void {
    this.users++;
  }
  /** @internal */
  release(): void {
    this.users--;
    if (this.users === 0 && this.clearOnRelease && this.ab !== undefined) this.view.fill(0);
  }

  /**
   * {@link compareExchange} on any view of mapped host memory (a slot's Buffer from
   * GuestMemory.slice(), as the vmm's emulator uses for LOCK CMPXCHG16B).
   */
  static compareExchangeAt(view: Uint8Array, offset: number, expected: Uint8Array, desired: Uint8Array): CompareExchangeResult {
    return compareExchange(view, offset, expected, desired);
  }

  /** {@link compareExchange} at `offset` of this region: atomic against the vCPUs of every VM using it. */
  compareExchange(offset: number, expected: Uint8Array, desired: Uint8Array): CompareExchangeResult {
    return compareExchange(this.buffer, offset, expected, desired);
  }

  /** How many VMs have it as a memory slot now. */
  get inUse(): number {
    return this.users;
  }

  close(): void {
    if (this.ab === undefined) return;
    if (this.users > 0) throw new KvmError("KVM_INVALID_ARGUMENT", `GuestRam is still a memory slot of ${this.users} VM(s)`);
    this.view.fill(0);
    native().munmap(this.ab);
    this.ab = undefined;
  }
  [Symbol.dispose](): void {
    this.close();
  }
}
