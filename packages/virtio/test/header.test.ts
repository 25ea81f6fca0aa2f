import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as V from "@tsvmm/virtio";
import { VIRTIO_MMIO_MAGIC, VIRTIO_STRUCTS, VirtioBlkConfigLayout } from "@tsvmm/virtio";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// Compiles a C program against this machine's <linux/virtio_*.h> that prints the size of every
// struct, the offset of every field and the value of every constant this package declares. The
// program is generated from the package's own exports, so a new layout or constant is checked
// automatically.

type Check = { key: string; expr: string; ts: number };
const checks: Check[] = [];

for (const s of VIRTIO_STRUCTS) {
  // virtio_blk_config continues past what we offer (secure erase, zoned): check where our part ends.
  const sizeExpr = s === (VirtioBlkConfigLayout as unknown) ? "offsetof(struct virtio_blk_config, max_secure_erase_sectors)" : `sizeof(${s.cType})`;
  checks.push({ key: `sizeof ${s.cType}`, expr: sizeExpr, ts: s.size });
  for (const f of s.fields()) checks.push({ key: `${s.cType}.${f.path}`, expr: `offsetof(${s.cType}, ${f.c})`, ts: f.offset });
}

// Not in any header: the magic is spelled out in the spec's text, the window size is the transport's choice.
const NOT_IN_HEADERS = new Set(["VIRTIO_MMIO_MAGIC", "VIRTIO_MMIO_WINDOW_SIZE"]);
const constants = Object.entries(V).filter(
  ([k, v]) => typeof v === "number" && /^(VRING_|VIRTIO_|VMADDR_)/.test(k) && !NOT_IN_HEADERS.has(k),
) as [string, number][];
for (const [k, v] of constants) checks.push({ key: k, expr: `(long)(${k})`, ts: v });

let dir = "";
let fromC = new Map<string, number>();

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "tsvmm-virtio-"));
  const lines = checks.map((c) => `  printf("%s\\t%ld\\n", ${JSON.stringify(c.key)}, (long)(${c.expr}));`);
  const headers = ["virtio_ring", "virtio_config", "virtio_ids", "virtio_mmio", "virtio_blk", "virtio_net", "virtio_console", "virtio_vsock"];
  const src = `#include <stddef.h>\n#include <stdio.h>\n#include <sys/socket.h>\n#include <linux/vm_sockets.h>\n${headers.map((h) => `#include <linux/${h}.h>`).join("\n")}\nint main(void) {\n${lines.join("\n")}\n  return 0;\n}\n`;
  writeFileSync(join(dir, "virtio-abi.c"), src);
  execFileSync("cc", ["-o", join(dir, "virtio-abi"), join(dir, "virtio-abi.c")], { stdio: "pipe" });
  const out = execFileSync(join(dir, "virtio-abi"), { encoding: "utf8" });
  fromC = new Map(
    out
      .trim()
      .split("\n")
      .map((l) => {
        const [k, v] = l.split("\t");
        return [k!, Number(v)] as [string, number];
      }),
  );
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("virtio layouts and constants against this machine's <linux/virtio_*.h>", () => {
  it("checks every struct and a meaningful number of constants", () => {
    expect(VIRTIO_STRUCTS.length).toBe(16);
    expect(constants.length).toBeGreaterThan(100);
    expect(fromC.size).toBe(new Set(checks.map((c) => c.key)).size);
  });
  it("every size, offset and constant matches the C compiler's", () => {
    const mismatches = checks.filter((c) => fromC.get(c.key) !== c.ts).map((c) => `${c.key}: ts=${c.ts} c=${fromC.get(c.key)}`);
    expect(mismatches).toEqual([]);
  });
  it("the MMIO magic is 'virt' in little-endian, as the spec's register table says", () => {
    expect(Buffer.from("virt").readUInt32LE(0)).toBe(VIRTIO_MMIO_MAGIC);
  });
});
