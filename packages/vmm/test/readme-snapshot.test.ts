import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { requireKvm } from "@tsvmm/kvm-backend";
import { VmmBuilder } from "@tsvmm/vmm";
import { beforeAll, describe, expect, it, vi } from "vitest";

const hasKvm = requireKvm();
const root = join(__dirname, "..", "..", "..");

beforeAll(() => {
  execFileSync("flock", ["/tmp/tsvmm-test-kernels.lock", "make", "-s", "-C", join(root, "test-kernels")]);
});

describe.runIf(hasKvm)("README-snapshot.md", () => {
  it("its example runs: pause, snapshot, kill, restore, and the guest ends with its own status", async () => {
    const md = readFileSync(join(root, "packages", "vmm", "README-snapshot.md"), "utf8");
    const block = /```ts\n([\s\S]*?)```/.exec(md)?.[1];
    expect(block).toBeDefined();
    const dir = mkdtempSync(join(root, "packages", "vmm", "test", ".readme-snapshot-"));
    const cwd = process.cwd();
    const logs: string[] = [];
    const log = vi.spyOn(console, "log").mockImplementation((s: string) => {
      logs.push(String(s));
    });
    const out = vi.spyOn(process.stdout, "write").mockImplementation(() => true);
    try {
      symlinkSync(join(root, "test-kernels", "out", "snap-everywhere.elf"), join(dir, "snap-everywhere.elf"));
      writeFileSync(join(dir, "example.ts"), block!);
      process.chdir(dir);
      await import(join(dir, "example.ts"));
    } finally {
      process.chdir(cwd);
      log.mockRestore();
      out.mockRestore();
      rmSync(dir, { recursive: true, force: true });
    }
    expect(logs[0]).toMatch(/^\d+ of 16777216 bytes of guest memory written$/);
    // The same status as an uninterrupted run of the guest.
    const reference = await new VmmBuilder().kernelFile(join(root, "test-kernels", "out", "snap-everywhere.elf")).vcpus(2).memoryMiB(16).run();
    expect(reference.reason).toBe("guest-exit");
    expect(logs[1]).toBe(`exit ${reference.exitCode}`);
  }, 60_000);
});
