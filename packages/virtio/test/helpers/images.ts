import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll } from "vitest";

/** A scratch directory for disk images, made before the file's tests and removed after them. */
export function imageDir(prefix: string): { path(name: string): string; image(name: string, bytes: Buffer): string } {
  let dir = "";
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), prefix));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const path = (name: string): string => join(dir, name);
  return {
    path,
    image(name, bytes) {
      writeFileSync(path(name), bytes);
      return path(name);
    },
  };
}
