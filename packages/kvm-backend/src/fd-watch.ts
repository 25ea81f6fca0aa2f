import { syscallError } from "./errors.js";
import { native } from "./native.js";

/**
 * Calls `onReadable` on the JavaScript thread whenever `fd` is readable (level-triggered: it
 * keeps firing until the fd is drained). For ioeventfds (a guest doorbell that never exits to the
 * VMM's run loop) and TAP devices. An exception from the callback is passed to `onError` (default:
 * rethrown), never lost. `close()` stops watching; the fd itself is not closed.
 */
export class FdWatch {
  private handle: object | undefined;

  constructor(fd: number, onReadable: () => void, onError: (e: unknown) => void = (e) => { throw e; }) {
    const h = native().watchFd(fd, (status) => {
      if (this.handle === undefined) return;
      if (status < 0) {
        onError(syscallError("poll", status, "fd watch"));
        return;
      }
      try {
        onReadable();
      } catch (e) {
        onError(e);
      }
    });
    if (typeof h === "number") throw syscallError("poll", h, "fd watch");
    this.handle = h;
  }

  get active(): boolean {
    return this.handle !== undefined;
  }

  close(): void {
    if (this.handle === undefined) return;
    native().unwatchFd(this.handle);
    this.handle = undefined;
  }
  [Symbol.dispose](): void {
    this.close();
  }
}
