import { readdirSync } from "node:fs";
import { EventFd, FdWatch } from "@tsvmm/kvm-backend";
import { describe, expect, it } from "vitest";

const openFds = () => readdirSync("/proc/self/fd").length;

describe("FdWatch", () => {
  it("runs the callback on the JS thread when an eventfd is signalled, until drained; close stops it", async () => {
    const fds0 = openFds();
    const efd = new EventFd();
    const seen: bigint[] = [];
    const w = new FdWatch(efd.fd, () => {
      const v = efd.read();
      if (v !== undefined) seen.push(v);
    });
    efd.write(3n);
    await new Promise((r) => setTimeout(r, 30));
    efd.write(4n);
    await new Promise((r) => setTimeout(r, 30));
    expect(seen).toEqual([3n, 4n]);
    w.close();
    expect(w.active).toBe(false);
    efd.write(5n);
    await new Promise((r) => setTimeout(r, 30));
    expect(seen).toEqual([3n, 4n]);
    expect(efd.read()).toBe(5n);
    w.close();
    efd.close();
    expect(openFds()).toBe(fds0);
  });

  it("an exception in the callback goes to onError, and watching goes on", async () => {
    const efd = new EventFd();
    const errors: string[] = [];
    let calls = 0;
    const w = new FdWatch(
      efd.fd,
      () => {
        calls++;
        efd.read();
        throw new Error(`boom ${calls}`);
      },
      (e) => errors.push((e as Error).message),
    );
    efd.write(1n);
    await new Promise((r) => setTimeout(r, 30));
    efd.write(1n);
    await new Promise((r) => setTimeout(r, 30));
    expect(errors).toEqual(["boom 1", "boom 2"]);
    w.close();
    efd.close();
  });

  it("a bad fd is a typed error", () => {
    expect(() => new FdWatch(-1, () => {})).toThrow(expect.objectContaining({ code: expect.stringMatching(/^KVM_/) }));
  });
});
