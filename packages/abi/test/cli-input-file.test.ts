import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { InputFileError, readRegularFile } from "../src/index.js";

const dir = mkdtempSync(join(tmpdir(), "abi-input-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return e instanceof InputFileError ? e.code : `untyped: ${String(e)}`;
  }
  return undefined;
}

describe("readRegularFile", () => {
  it("reads a regular file whole, up to and including the limit", () => {
    const p = join(dir, "ok.bin");
    writeFileSync(p, Buffer.from([1, 2, 3, 4]));
    expect([...readRegularFile(p, 4)]).toEqual([1, 2, 3, 4]);
    expect(readRegularFile(join(dir, "ok.bin"), 1 << 20).length).toBe(4);
  });
  it("refuses a file one byte over the limit before reading it", () => {
    const p = join(dir, "big.bin");
    writeFileSync(p, Buffer.alloc(5));
    expect(codeOf(() => readRegularFile(p, 4, "kernel"))).toBe("INPUT_FILE_TOO_LARGE");
    expect(() => readRegularFile(p, 4, "kernel")).toThrow(/kernel .*big\.bin is 5 bytes, more than the 4/);
  });
  it("refuses special files by kind, at once (a FIFO with no writer does not block the open)", () => {
    const fifo = join(dir, "fifo");
    execFileSync("mkfifo", [fifo]);
    expect(codeOf(() => readRegularFile(fifo, 100))).toBe("INPUT_FILE_NOT_REGULAR");
    expect(() => readRegularFile(fifo, 100)).toThrow(/is a FIFO/);
    expect(() => readRegularFile("/dev/zero", 100)).toThrow(/is a character device/);
    expect(() => readRegularFile(dir, 100)).toThrow(/is a directory/);
  });
  it("says a missing file is unreadable, with the errno code and the path", () => {
    const p = join(dir, "missing");
    expect(codeOf(() => readRegularFile(p, 100))).toBe("INPUT_FILE_UNREADABLE");
    try {
      readRegularFile(p, 100, "config");
    } catch (e) {
      expect((e as InputFileError).path).toBe(p);
      expect((e as Error).message).toMatch(/cannot read config .*missing: ENOENT/);
    }
  });
});
