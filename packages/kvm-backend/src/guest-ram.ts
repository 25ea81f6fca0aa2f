import { KvmError, syscallError } from "./errors.js";
import { native } from "./native.js";

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
