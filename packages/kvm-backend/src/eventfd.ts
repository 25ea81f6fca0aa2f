import { ERRNO } from "./errno.js";
import { KvmError, syscallError } from "./errors.js";
import { native } from "./native.js";

/** An eventfd, for ioeventfd (guest write -> host event) and irqfd (host write -> guest IRQ). */
export class EventFd {
  private fdValue: number;
  private readonly scratch = Buffer.alloc(8);

  constructor(options: { initval?: number; semaphore?: boolean } = {}) {
    const n = native();
    const flags = n.constants.EFD_NONBLOCK | (options.semaphore ? n.constants.EFD_SEMAPHORE : 0);
    const fd = n.eventfd(options.initval ?? 0, flags);
    if (fd < 0) throw syscallError("eventfd", fd);
    this.fdValue = fd;
  }

  get fd(): number {
    if (this.fdValue < 0) throw new KvmError("KVM_CLOSED", "eventfd is closed");
    return this.fdValue;
  }

  /** Add `value` to the counter (signals the other side). */
  write(value: bigint | number = 1n): void {
    this.scratch.writeBigUInt64LE(BigInt(value));
    const r = native().write(this.fd, this.scratch);
    if (r < 0) throw syscallError("write", r, "eventfd");
  }

  /** Read and reset the counter; undefined when it is zero (non-blocking). */
  read(): bigint | undefined {
    const r = native().read(this.fd, this.scratch);
    if (r === -ERRNO.EAGAIN) return undefined;
    if (r < 0) throw syscallError("read", r, "eventfd");
    return this.scratch.readBigUInt64LE();
  }

  close(): void {
    if (this.fdValue < 0) return;
    native().close(this.fdValue);
    this.fdValue = -1;
  }
  [Symbol.dispose](): void {
    this.close();
  }
}
