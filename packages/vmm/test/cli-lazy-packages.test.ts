// The bin's bundle keeps @tsvmm/gdbstub, @tsvmm/virtio and @tsvmm/x86 out and loads each when a
// feature first uses it (packages/vmm/tsup.config.ts): a plain `tsvmm run` never loads them, and a
// run that needs one loads it and works as before. Each run is a process of its own that loads the
// bin as bin/tsvmm.cjs does (code cache included) and reports which of the three it loaded.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const root = join(__dirname, "..", "..", "..");
const bin = join(root, "packages", "vmm", "bin", "tsvmm.cjs");
const HELLO = "Hello from a tsvmm guest (uart)";
const top = mkdtempSync(join(tmpdir(), "tsvmm-lazy-"));
afterAll(() => rmSync(top, { recursive: true, force: true }));

const driver = join(top, "driver.cjs");
writeFileSync(
  driver,
  `"use strict";
const lazy = () => Object.keys(require.cache).map((f) => /packages[\\\\/](gdbstub|virtio|x86)[\\\\/]/.exec(f)?.[1]).filter(Boolean).sort();
const cli = require(${JSON.stringify(bin)}).load();
const atLoad = lazy();
let out = "";
cli.main(JSON.parse(process.argv[2]), { stdout: (s) => { out += s; }, stderr: () => {} }).then((status) => {
  const workerThreads = process.moduleLoadList.includes("NativeModule worker_threads");
  process.stdout.write(JSON.stringify({ atLoad, atEnd: lazy(), status, out, workerThreads }));
});
`,
);

function run(args: string[]): { atLoad: string[]; atEnd: string[]; status: number; out: string; workerThreads: boolean } {
  const r = spawnSync(process.execPath, [driver, JSON.stringify(args)], { encoding: "utf8", timeout: 60_000, env: { ...process.env, XDG_CACHE_HOME: top, TSVMM_NO_CODE_CACHE: "" } });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

describe("tsvmm bin: packages loaded when used", () => {
  it("a plain run loads none of them, with or without the code cache written", () => {
    for (let i = 0; i < 2; i++) {
      const r = run(["run"]);
      expect(r.status).toBe(0);
      expect(r.out).toContain(HELLO);
      expect(r.atLoad).toEqual([]);
      expect(r.atEnd).toEqual([]);
      // Only a VcpuWorker needs node:worker_threads (~1.5 ms to load): kvm-backend loads it then.
      expect(r.workerThreads).toBe(false);
    }
  });

  it("a virtio device loads @tsvmm/virtio, --emulate @tsvmm/x86, --gdb @tsvmm/gdbstub; each run is the same hello", () => {
    const rng = run(["run", "--rng"]);
    expect(rng.atLoad).toEqual([]);
    expect(rng.atEnd).toEqual(["virtio"]);
    const emulate = run(["run", "--emulate"]);
    expect(emulate.atEnd).toContain("x86");
    const gdb = run(["run", "--gdb", `unix:${join(top, "gdb.sock")}`]);
    expect(gdb.atEnd).toContain("gdbstub");
    for (const r of [rng, emulate, gdb]) {
      expect(r.status).toBe(0);
      expect(r.out).toContain(HELLO);
    }
  });
});
