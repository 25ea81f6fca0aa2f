import { readFileSync } from "node:fs";
import { VmmError } from "./errors.js";

// The "newc" cpio format the Linux initramfs unpacker reads (the kernel's
// Documentation/driver-api/early-userspace/buffer-format.rst): a 110-byte ASCII header of
// "070701" and thirteen 8-digit hex fields, the NUL-terminated name padded to 4 bytes, the data
// padded to 4 bytes; the archive ends with an entry named TRAILER!!!.

export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFCHR = 0o020000;
export const S_IFLNK = 0o120000;

export interface CpioEntry {
  /** Path inside the archive, without a leading slash ("init", "bin/busybox"). */
  readonly path: string;
  /** File type and permission bits (S_IFREG | 0o755, ...). */
  readonly mode: number;
  /** Contents of a regular file, or the target of a symbolic link. */
  readonly data?: Uint8Array;
  /** Device number of a character or block device node. */
  readonly rdev?: { readonly major: number; readonly minor: number };
}

const pad4 = (n: number) => (4 - (n % 4)) % 4;

function header(ino: number, e: CpioEntry, size: number, nameSize: number): string {
  const f = [ino, e.mode, 0, 0, (e.mode & S_IFDIR) === S_IFDIR ? 2 : 1, 0, size, 0, 0, e.rdev?.major ?? 0, e.rdev?.minor ?? 0, nameSize, 0];
  return `070701${f.map((v) => (v >>> 0).toString(16).padStart(8, "0")).join("")}`;
}

/** A newc cpio archive of `entries`, in order (give parent directories before their contents). */
export function newcArchive(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  const all = [...entries, { path: "TRAILER!!!", mode: 0 }];
  all.forEach((e, i) => {
    if (e.path.length === 0 || e.path.startsWith("/")) throw new VmmError("VMM_BUILD_INVALID", `cpio path ${JSON.stringify(e.path)}: give a relative path`);
    const name = Buffer.from(`${e.path}\0`, "utf8");
    const data = Buffer.from(e.data ?? new Uint8Array(0));
    const head = Buffer.from(header(i + 1, e, data.length, name.length), "latin1");
    parts.push(head, name, Buffer.alloc(pad4(head.length + name.length)), data, Buffer.alloc(pad4(data.length)));
  });
  return Buffer.concat(parts);
}

/** A file an initramfs carries besides busybox and /init (a kernel module, a test program). */
export interface InitramfsFile {
  /** Path inside the archive, without a leading slash ("lib/modules/virtio_blk.ko"). */
  readonly path: string;
  readonly data: Uint8Array;
  /** Permission bits; 0o644 unless given (0o755 for a program). */
  readonly mode?: number;
}

/**
 * An initramfs whose /init is a busybox shell script: /bin/busybox (a static busybox, e.g. Debian's
 * busybox-static), /dev/console (so init has a console before devtmpfs), /proc, /sys, and /init;
 * then `files`, each after the directories above it (made here when not given).
 */
export function busyboxInitramfs(options: { busyboxPath: string; script: string; files?: readonly InitramfsFile[] }): Buffer {
  const busybox = readFileSync(options.busyboxPath);
  const entries: CpioEntry[] = [
    { path: "bin", mode: S_IFDIR | 0o755 },
    { path: "bin/busybox", mode: S_IFREG | 0o755, data: busybox },
    { path: "bin/sh", mode: S_IFLNK | 0o777, data: Buffer.from("busybox") },
    { path: "dev", mode: S_IFDIR | 0o755 },
    { path: "dev/console", mode: S_IFCHR | 0o600, rdev: { major: 5, minor: 1 } },
    { path: "proc", mode: S_IFDIR | 0o755 },
    { path: "sys", mode: S_IFDIR | 0o755 },
  ];
  const taken = new Set(entries.map((e) => e.path));
  taken.add("init");
  for (const f of options.files ?? []) {
    const parts = f.path.split("/");
    if (f.path.startsWith("/") || parts.some((p) => p === "" || p === "." || p === "..")) {
      throw new VmmError("VMM_BUILD_INVALID", `initramfs file ${JSON.stringify(f.path)}: give a relative path without empty, . or .. parts`);
    }
    if (taken.has(f.path)) throw new VmmError("VMM_BUILD_INVALID", `initramfs file ${JSON.stringify(f.path)}: already in the archive`);
    for (let i = 1; i < parts.length; i++) {
      const d = parts.slice(0, i).join("/");
      if (!taken.has(d)) {
        taken.add(d);
        entries.push({ path: d, mode: S_IFDIR | 0o755 });
      }
    }
    taken.add(f.path);
    entries.push({ path: f.path, mode: S_IFREG | ((f.mode ?? 0o644) & 0o7777), data: f.data });
  }
  entries.push({ path: "init", mode: S_IFREG | 0o755, data: Buffer.from(options.script) });
  return newcArchive(entries);
}
