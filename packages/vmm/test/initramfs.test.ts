import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { busyboxInitramfs } from "../src/initramfs.js";

// Extra files of a busybox initramfs (kernel modules, test programs): read back by busybox's own cpio.
const BUSYBOX = "/bin/busybox";
const cpio = (args: string[], input: Buffer, cwd?: string) => spawnSync(BUSYBOX, ["cpio", ...args], { input, cwd, maxBuffer: 64 << 20 });

describe("busyboxInitramfs with extra files", () => {
  it("carries each file with its bytes and mode, after the directories above it, and /init last", () => {
    const ko = Buffer.from([0x7f, 0x45, 0x4c, 0x46, 1, 2, 3]);
    const prog = Buffer.from("#!/bin/sh\necho hi\n");
    const rd = busyboxInitramfs({
      busyboxPath: BUSYBOX,
      script: "#!/bin/busybox sh\n",
      files: [
        { path: "lib/modules/virtio_blk.ko", data: ko },
        { path: "lib/modules/order", data: Buffer.from("virtio_blk\n") },
        { path: "bin/vsock", data: prog, mode: 0o755 },
      ],
    });
    const names = cpio(["-t"], rd).stdout.toString().trim().split("\n");
    expect(names).toEqual(["bin", "bin/busybox", "bin/sh", "dev", "dev/console", "proc", "sys", "lib", "lib/modules", "lib/modules/virtio_blk.ko", "lib/modules/order", "bin/vsock", "init"]);
    const dir = mkdtempSync(join(tmpdir(), "tsvmm-initramfs-"));
    try {
      expect(cpio(["-i", "-d"], rd, dir).status).toBe(0);
      expect(readFileSync(join(dir, "lib/modules/virtio_blk.ko")).equals(ko)).toBe(true);
      expect(readFileSync(join(dir, "bin/vsock")).equals(prog)).toBe(true);
      expect(statSync(join(dir, "bin/vsock")).mode & 0o777).toBe(0o755);
      expect(statSync(join(dir, "lib/modules/order")).mode & 0o777).toBe(0o644);
      expect(statSync(join(dir, "lib/modules")).isDirectory()).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses absolute paths, empty, . and .. parts, and a path already in the archive", () => {
    for (const path of ["/lib/x", "lib//x", "lib/./x", "../x", "lib/", "init", "bin/busybox", "dev"]) {
      expect(() => busyboxInitramfs({ busyboxPath: BUSYBOX, script: "", files: [{ path, data: new Uint8Array(1) }] }), path).toThrow(
        expect.objectContaining({ code: "VMM_BUILD_INVALID" }),
      );
    }
    expect(() =>
      busyboxInitramfs({ busyboxPath: BUSYBOX, script: "", files: [{ path: "a/b", data: new Uint8Array(1) }, { path: "a/b", data: new Uint8Array(1) }] }),
    ).toThrow(expect.objectContaining({ code: "VMM_BUILD_INVALID" }));
  });

  it("any set of distinct nested files lists back in order, each once, with each parent before it", () => {
    const seg = fc.stringMatching(/^[a-z0-9_]{1,6}$/);
    fc.assert(
      fc.property(fc.uniqueArray(fc.array(seg, { minLength: 1, maxLength: 4 }).map((p) => `x/${p.join("/")}`), { maxLength: 8 }), (paths) => {
        // A path that is also another's directory cannot be both a file and a directory.
        const files = paths.filter((p) => !paths.some((q) => q.startsWith(`${p}/`)));
        const rd = busyboxInitramfs({ busyboxPath: BUSYBOX, script: "", files: files.map((path) => ({ path, data: Buffer.from(path) })) });
        const names = cpio(["-t"], rd).stdout.toString().trim().split("\n");
        expect(new Set(names).size).toBe(names.length);
        expect(names.filter((n) => files.includes(n))).toEqual(files);
        for (const n of names) {
          const parent = n.split("/").slice(0, -1).join("/");
          if (parent !== "") expect(names.indexOf(parent)).toBeLessThan(names.indexOf(n));
        }
        expect(names.at(-1)).toBe("init");
      }),
      { numRuns: 30 },
    );
  });
});
