import { createHash } from "node:crypto";
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { join } from "node:path";
import { decodeValue } from "./codec.js";
import { SnapshotError } from "./errors.js";
import type { SnapshotState } from "./state.js";

/** The header's first field; anything else is not a tsvmm snapshot. */
export const SNAPSHOT_MAGIC = "TSVMM-SNAPSHOT";
/** The one format this tsvmm writes and reads. A reader refuses every other number. */
export const SNAPSHOT_FORMAT_VERSION = 1;
export const HEADER_FILE = "header.json";
export const STATE_FILE = "state.json";
export const MEMORY_FILE = "memory.bin";
export const PAGE_SIZE = 4096;

const HEADER_MAX = 64 * 1024;
const STATE_MAX = 64 * 2 ** 20;

/** header.json: small, written last, so a snapshot without one was never finished. */
export interface SnapshotHeader {
  magic: typeof SNAPSHOT_MAGIC;
  formatVersion: number;
  tsvmmVersion: string;
  createdAt: string;
  /** SHA-256 of this host's supported CPUID table, KVM capabilities and saveable MSR list. */
  host: { fingerprint: string; vendor: string; kvmApi: number };
  state: { file: typeof STATE_FILE; bytes: number; sha256: string };
  /**
   * `bytes`: the file's length (every slot, back to back); `dataBytes`: pages actually written
   * (the rest are holes); `sha256`: over the written pages, in file order.
   */
  memory: { file: typeof MEMORY_FILE; bytes: number; dataBytes: number; sha256: string };
  /** SHA-256 of this header serialized with `headerSha256` set to "". */
  headerSha256: string;
}

export function sha256(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex");
}

/** The header's bytes, checksummed over the same serialization with its own sum blank. */
export function serializeHeader(h: Omit<SnapshotHeader, "headerSha256">): string {
  const blank = JSON.stringify({ ...h, headerSha256: "" }, null, 2);
  return `${JSON.stringify({ ...h, headerSha256: sha256(blank) }, null, 2)}\n`;
}

/** Read a whole file (at most `max` bytes), naming it in the error. */
export function readCapped(path: string, max: number, what: string): Buffer {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    throw new SnapshotError("SNAPSHOT_NOT_FOUND", `${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new SnapshotError("SNAPSHOT_NOT_FOUND", `${what} ${path} is not a regular file`);
    if (st.size > max) throw new SnapshotError("SNAPSHOT_TRUNCATED", `${what} ${path} is ${st.size} bytes, more than any ${what} can be (${max})`);
    const buf = Buffer.alloc(st.size);
    let off = 0;
    while (off < buf.length) {
      const n = readSync(fd, buf, off, buf.length - off, off);
      if (n === 0) break;
      off += n;
    }
    return buf.subarray(0, off);
  } finally {
    closeSync(fd);
  }
}

const HEX64 = /^[0-9a-f]{64}$/;

/** Parse and check header.json: magic, version, its own checksum, field types. */
export function readHeader(dir: string): SnapshotHeader {
  const path = join(dir, HEADER_FILE);
  const raw = readCapped(path, HEADER_MAX, "snapshot header");
  let h: Record<string, unknown>;
  try {
    h = JSON.parse(raw.toString("utf8")) as Record<string, unknown>;
  } catch {
    throw new SnapshotError("SNAPSHOT_BAD_HEADER", `${path} is not JSON: not a tsvmm snapshot, or a damaged one`);
  }
  if (typeof h !== "object" || h === null || h.magic !== SNAPSHOT_MAGIC) {
    throw new SnapshotError("SNAPSHOT_BAD_HEADER", `${path}: magic is ${JSON.stringify((h as { magic?: unknown })?.magic)}, not "${SNAPSHOT_MAGIC}"`);
  }
  if (h.formatVersion !== SNAPSHOT_FORMAT_VERSION) {
    throw new SnapshotError(
      "SNAPSHOT_VERSION",
      `${path}: snapshot format version ${JSON.stringify(h.formatVersion)} (written by tsvmm ${String(h.tsvmmVersion)}); this tsvmm reads version ${SNAPSHOT_FORMAT_VERSION} only`,
    );
  }
  const sum = h.headerSha256;
  const blank = JSON.stringify({ ...h, headerSha256: "" }, null, 2);
  if (typeof sum !== "string" || sha256(blank) !== sum) {
    throw new SnapshotError("SNAPSHOT_CHECKSUM", `${path}: the header's checksum does not match its contents (damaged or edited)`);
  }
  const host = h.host as SnapshotHeader["host"] | undefined;
  const state = h.state as SnapshotHeader["state"] | undefined;
  const memory = h.memory as SnapshotHeader["memory"] | undefined;
  const ok =
    typeof h.tsvmmVersion === "string" &&
    typeof host?.fingerprint === "string" && typeof host.vendor === "string" && Number.isInteger(host.kvmApi) &&
    state?.file === STATE_FILE && Number.isSafeInteger(state.bytes) && state.bytes >= 0 && HEX64.test(state.sha256) &&
    memory?.file === MEMORY_FILE && Number.isSafeInteger(memory.bytes) && memory.bytes >= 0 && memory.bytes % PAGE_SIZE === 0 &&
    Number.isSafeInteger(memory.dataBytes) && memory.dataBytes >= 0 && memory.dataBytes <= memory.bytes && HEX64.test(memory.sha256);
  if (!ok) throw new SnapshotError("SNAPSHOT_BAD_HEADER", `${path}: a field is missing or has the wrong type`);
  return h as unknown as SnapshotHeader;
}

/** Read state.json, check its length and checksum against the header, decode it. */
export function readState(dir: string, header: SnapshotHeader): SnapshotState {
  const path = join(dir, STATE_FILE);
  const raw = readCapped(path, STATE_MAX, "snapshot state");
  if (raw.length !== header.state.bytes) {
    throw new SnapshotError("SNAPSHOT_TRUNCATED", `${path} is ${raw.length} bytes, the header says ${header.state.bytes}`);
  }
  if (sha256(raw) !== header.state.sha256) throw new SnapshotError("SNAPSHOT_CHECKSUM", `${path}: SHA-256 does not match the header (the state file is damaged)`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString("utf8"));
  } catch {
    throw new SnapshotError("SNAPSHOT_BAD_STATE", `${path} is not JSON`);
  }
  return decodeValue(parsed) as SnapshotState;
}

/** The memory file: its length must be the header's; with `verify`, the written pages' SHA-256 too. */
export function checkMemoryFile(dir: string, header: SnapshotHeader, runs: readonly (readonly [number, number])[], verify: boolean): string {
  const path = join(dir, MEMORY_FILE);
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    throw new SnapshotError("SNAPSHOT_NOT_FOUND", `snapshot memory ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new SnapshotError("SNAPSHOT_NOT_FOUND", `snapshot memory ${path} is not a regular file`);
    if (st.size !== header.memory.bytes) {
      throw new SnapshotError("SNAPSHOT_TRUNCATED", `${path} is ${st.size} bytes, the header says ${header.memory.bytes}`);
    }
    let data = 0;
    for (const [first, count] of runs) {
      if (!Number.isSafeInteger(first) || !Number.isSafeInteger(count) || first < 0 || count <= 0 || (first + count) * PAGE_SIZE > st.size) {
        throw new SnapshotError("SNAPSHOT_BAD_STATE", `${path}: page run [${first}, +${count}) lies outside the file`);
      }
      data += count * PAGE_SIZE;
    }
    if (data !== header.memory.dataBytes) {
      throw new SnapshotError("SNAPSHOT_BAD_STATE", `${path}: the state lists ${data} bytes of written pages, the header ${header.memory.dataBytes}`);
    }
    if (verify) {
      const h = createHash("sha256");
      const chunk = Buffer.allocUnsafe(Math.min(Math.max(data, PAGE_SIZE), 4 * 2 ** 20));
      for (const [first, count] of runs) {
        let pos = first * PAGE_SIZE;
        let left = count * PAGE_SIZE;
        while (left > 0) {
          const want = Math.min(left, chunk.length);
          const n = readSync(fd, chunk, 0, want, pos);
          if (n !== want) throw new SnapshotError("SNAPSHOT_TRUNCATED", `${path}: short read at ${pos}`);
          h.update(chunk.subarray(0, n));
          pos += n;
          left -= n;
        }
      }
      if (h.digest("hex") !== header.memory.sha256) {
        throw new SnapshotError("SNAPSHOT_CHECKSUM", `${path}: SHA-256 of the written pages does not match the header (guest memory is damaged)`);
      }
    }
    return path;
  } finally {
    closeSync(fd);
  }
}
