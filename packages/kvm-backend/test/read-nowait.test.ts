import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, fsyncSync, mkdirSync, mkdtempSync, openSync, readSync, rmSync, writeFileSync } from "node:fs";
import { constants } from "node:os";
import { join } from "node:path";
import { ERRNO, KvmError, readNoWait } from "@tsvmm/kvm-backend";
import { afterAll, describe, expect, it } from "vitest";

// readNoWait: preadv2(RWF_NOWAIT) on a real file on disk (not tmpfs, whose pages are the storage
// and never leave the cache). The data is pushed out of the page cache with
// fsync + POSIX_FADV_DONTNEED (GNU dd's iflag=nocache count=0 advises it for the whole file), which
// touches this file only, not the machine's whole cache as drop_caches would.

const { EBADF, EOPNOTSUPP } = constants.errno;
// Under the package's build/ (git-ignored, on the work tree's disk) rather than os.tmpdir(), which may be tmpfs.
const dir = mkdtempSync(join(import.meta.dirname, "..", "build", "read-nowait-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function evict(path: string): void {
  const fd = openSync(path, "r+");
  fsyncSync(fd); // DONTNEED leaves dirty pages where they are
  closeSync(fd);
  execFileSync("dd", [`if=${path}`, "iflag=nocache", "count=0", "status=none"]);
}

describe("readNoWait", () => {
  it("reads what the page cache holds; after the file left the cache it answers 'again' at once; a blocking read brings it back", () => {
    const path = join(dir, "cold");
    const content = randomBytes(256 * 1024);
    writeFileSync(path, content);
    const fd = openSync(path, "r");
    try {
      const into = Buffer.alloc(4096);
      expect(readNoWait(fd, into, 8192)).toBe(4096);
      expect(into.equals(content.subarray(8192, 8192 + 4096))).toBe(true);
      // A view into a larger buffer: its own bounds are the read's.
      const big = Buffer.alloc(1000, 0xee);
      expect(readNoWait(fd, big.subarray(100, 612), 3)).toBe(512);
      expect(big.subarray(100, 612).equals(content.subarray(3, 515))).toBe(true);
      expect([big[99], big[612]]).toEqual([0xee, 0xee]);

      evict(path);
      const cold = Buffer.alloc(4096, 0xaa);
      // Far from the start, so no readahead the eviction's own reads might have started covers it.
      expect(readNoWait(fd, cold, 200 * 1024)).toBe("again");
      readSync(fd, Buffer.alloc(4096), 0, 4096, 200 * 1024);
      expect(readNoWait(fd, cold, 200 * 1024)).toBe(4096);
      expect(cold.equals(content.subarray(200 * 1024, 204 * 1024))).toBe(true);
    } finally {
      closeSync(fd);
    }
  });

  it("a read past the end is short, at the end 0", () => {
    const path = join(dir, "short");
    writeFileSync(path, randomBytes(6000));
    const fd = openSync(path, "r");
    try {
      expect(readNoWait(fd, Buffer.alloc(8192), 0)).toBe(6000);
      expect(readNoWait(fd, Buffer.alloc(8192), 6000)).toBe(0);
    } finally {
      closeSync(fd);
    }
  });

  it("typed errors: a closed fd, a directory (no RWF_NOWAIT there: EOPNOTSUPP), a bad position or a SharedArrayBuffer view (before the call)", () => {
    const path = join(dir, "errs");
    writeFileSync(path, randomBytes(4096));
    const fd = openSync(path, "r");
    closeSync(fd);
    const err = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return e instanceof KvmError ? [e.code, e.errno] : e;
      }
      return "no error";
    };
    expect(err(() => readNoWait(fd, Buffer.alloc(16), 0))).toEqual(["KVM_SYSCALL_FAILED", EBADF]);
    const sub = join(dir, "subdir");
    mkdirSync(sub);
    const dfd = openSync(sub, "r");
    try {
      expect(err(() => readNoWait(dfd, Buffer.alloc(16), 0))).toEqual(["KVM_SYSCALL_FAILED", EOPNOTSUPP]);
    } finally {
      closeSync(dfd);
    }
    const ok = openSync(path, "r");
    try {
      for (const pos of [-1, 0.5, Number.NaN, 2 ** 53]) expect(err(() => readNoWait(ok, Buffer.alloc(16), pos))).toEqual(["KVM_INVALID_ARGUMENT", undefined]);
      expect(err(() => readNoWait(ok, new Uint8Array(new SharedArrayBuffer(16)), 0))).toEqual(["KVM_INVALID_ARGUMENT", undefined]);
      expect(readNoWait(ok, new Uint8Array(0), 0)).toBe(0);
      expect(ERRNO.EAGAIN).toBeGreaterThan(0);
    } finally {
      closeSync(ok);
    }
  });
});
