import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEBUG_EXIT_PORT, DEBUG_EXIT_SIZE, DebugExit, PioBus, replay, Uart16550 } from "@tsvmm/devices";
import { requireKvm } from "@tsvmm/kvm-backend";
import { main } from "@tsvmm/vmm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const hasKvm = requireKvm();
const root = join(__dirname, "..", "..", "..");
const guest = (name: string) => join(root, "test-kernels", "out", `${name}.elf`);

async function cli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await main(argv, { stdout: (s) => { out += s.toString(); }, stderr: (s) => { err += s; } });
  return { code, out, err };
}

let dir = "";
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "tsvmm-cli-"));
  // The guests are built by the root build; make sure they exist when this file runs alone.
  execFileSync("flock", ["/tmp/tsvmm-test-kernels.lock", "make", "-s", "-C", join(root, "test-kernels")]);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.runIf(hasKvm)("tsvmm run", () => {
  it("the built CLI boots the bundled hello guest: console on stdout, one explaining line on stderr, status 0", () => {
    const r = spawnSync(process.execPath, [join(root, "packages", "vmm", "bin", "tsvmm.cjs"), "run"], { encoding: "utf8", timeout: 60_000 });
    expect(r.stdout).toContain("Hello from a tsvmm guest (uart)");
    expect(r.stdout).toContain("Hello from a tsvmm guest (hypercall console)");
    const lines = r.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^tsvmm: guest called EXIT\(0\) \[guest-exit, exit 0/);
    expect(r.status).toBe(0);
  });

  it("the guest's exit code becomes the process's", async () => {
    const r = await cli(["run", guest("exit-code")]);
    expect(r.code).toBe(42);
    expect(r.err).toMatch(/EXIT\(42\)/);
  });

  it("a runaway guest is stopped by --timeout with status 124 and a watchdog line", async () => {
    const t0 = Date.now();
    const r = await cli(["run", guest("runaway-loop"), "--timeout", "0.5"]);
    expect(r.code).toBe(124);
    expect(r.err).toMatch(/watchdog: the VM ran past its 500 ms budget/);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it("a triple fault ends the VM cleanly with status 125", async () => {
    const r = await cli(["run", guest("triple-fault"), "--timeout", "30"]);
    expect(r.code).toBe(125);
    expect(r.err).toMatch(/triple fault/);
  });

  it("--trace writes a JSON-lines trace whose replay reproduces the console", async () => {
    const trace = join(dir, "hello.jsonl");
    const r = await cli(["run", "--trace", trace]);
    expect(r.code).toBe(0);
    const lines = readFileSync(trace, "utf8").trim().split("\n");
    expect(lines.length).toBeGreaterThan(10);
    const pio = new PioBus();
    pio.register(0x3f8, 8, new Uart16550({ name: "com1" }));
    pio.register(DEBUG_EXIT_PORT, DEBUG_EXIT_SIZE, new DebugExit());
    const rep = replay(trace, { pio });
    expect(rep.output.get("com1")?.toString()).toBe("Hello from a tsvmm guest (uart)\n");
    expect(rep.divergences).toEqual([]);
  });

  it("--config reads a JSON VM config; command-line options override it", async () => {
    const cfg = join(dir, "vm.json");
    writeFileSync(cfg, JSON.stringify({ kernel: guest("exit-code"), memoryMiB: 16, vcpus: 1, timeoutMs: 20000 }));
    expect((await cli(["run", "--config", cfg])).code).toBe(42);
    expect((await cli(["run", "--config", cfg, guest("hello")])).code).toBe(0);
  });
});

describe("tsvmm run: bad input is exit 2 with a typed, named error", () => {
  it("a config error names the bad key", async () => {
    const cfg = join(dir, "bad.json");
    writeFileSync(cfg, JSON.stringify({ memoryMiB: "lots", vcpus: 0, colour: "blue" }));
    const r = await cli(["run", "--config", cfg]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/VMM_CONFIG_INVALID/);
    expect(r.err).toMatch(/memoryMiB:/);
    expect(r.err).toMatch(/vcpus:/);
    expect(r.err).toMatch(/colour/);
  });
  it("options are checked against the same limits, in the user's flags and units", async () => {
    const r = await cli(["run", "--mem", "0"]);
    expect(r.code).toBe(2);
    expect(r.err).toBe("tsvmm run: --mem 0: must be a whole number of MiB from 1 to 3072\n");
  });
  it("a config that is not JSON, a missing kernel, a malformed ELF", async () => {
    const notJson = join(dir, "x.json");
    writeFileSync(notJson, "{ memoryMiB: 3");
    expect((await cli(["run", "--config", notJson])).err).toMatch(/VMM_CONFIG_INVALID: .*not JSON/);
    const missing = await cli(["run", join(dir, "nope.elf")]);
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/VMM_FILE_UNREADABLE.*ENOENT/);
    const bad = join(dir, "bad.elf");
    const elf = readFileSync(guest("hello"));
    elf.writeBigUInt64LE(0xfffffffffff0n, 0x20); // e_phoff: program headers far past the end of the file
    writeFileSync(bad, elf);
    const r = await cli(["run", bad]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^tsvmm: VMM_BUILD_LOAD_KERNEL: load-kernel: ELF_\w+: .*e_phoff/);
  });
  it("unknown commands and options are one line naming them, exit 2", async () => {
    const c = await cli(["frobnicate"]);
    expect(c.code).toBe(2);
    expect(c.err).toMatch(/^tsvmm: unknown command "frobnicate"\n/);
    const r = await cli(["run", "--no-such-option"]);
    expect(r.code).toBe(2);
    expect(r.err).toBe("tsvmm run: unknown option --no-such-option (see tsvmm run --help)\n");
  });
});

describe.runIf(hasKvm)("tsvmm info", () => {
  it("--json gives the API version, capabilities and supported CPUID", async () => {
    const r = await cli(["info", "--json"]);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.apiVersion).toBe(12);
    expect(j.capabilities.USER_MEMORY).toBeGreaterThan(0);
    expect(j.supportedCpuid.find((e: { function: number }) => e.function === 0).eax).toBeGreaterThan(0);
  });
  it("names every CPUID register the host's KVM replaced, as measured at run time (the same in both forms)", async () => {
    const j = JSON.parse((await cli(["info", "--json"])).out);
    const text = (await cli(["info"])).out;
    expect(Array.isArray(j.cpuidOverrides)).toBe(true);
    for (const d of j.cpuidOverrides as { leaf: number; subleaf: number; register: string; a?: number; b?: number }[]) {
      expect(d.a).not.toBe(d.b);
      expect(text).toContain(`0x${d.leaf.toString(16)}.${d.subleaf}.${d.register} `);
    }
    expect(text).toMatch(/CPUID registers this host's KVM replaces/);
  });
  it("the table form lists capabilities and CPUID leaves", async () => {
    const r = await cli(["info"]);
    expect(r.out).toMatch(/^KVM API version 12/);
    expect(r.out).toMatch(/IRQCHIP\s+1/);
    expect(r.out).toMatch(/^0x00000000 +0 /m);
  });
});
