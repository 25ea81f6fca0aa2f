import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { requireKvm } from "@tsvmm/kvm-backend";
import { longTimeout, MAX_TIMER_MS, main, VmmBuilder } from "@tsvmm/vmm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// What a new user and a hostile input hit (issue 14): each finding is one case here.

const hasKvm = requireKvm();
const root = join(__dirname, "..", "..", "..");
const bin = join(root, "packages", "vmm", "bin", "tsvmm.cjs");
const guest = (name: string) => join(root, "test-kernels", "out", `${name}.elf`);

async function cli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await main(argv, {
    stdout: (s) => {
      out += s.toString();
    },
    stderr: (s) => {
      err += s;
    },
  });
  return { code, out, err };
}

let dir = "";
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "tsvmm-hard-"));
  execFileSync("flock", ["/tmp/tsvmm-test-kernels.lock", "make", "-s", "-C", join(root, "test-kernels")]);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("sizes and budgets past 32 bits", () => {
  it("memoryMiB(2048) is 2 GiB, not a negative 32-bit shift", () => {
    expect(new VmmBuilder().kernel(Buffer.from([0xf4])).memoryMiB(2048).spec().memoryBytes).toBe(2 * 2 ** 30);
    expect(new VmmBuilder().kernel(Buffer.from([0xf4])).memoryMiB(3072).spec().memoryBytes).toBe(3 * 2 ** 30);
  });

  it.runIf(hasKvm)("a 3 GiB guest boots (tsvmm run --mem 3072)", async () => {
    const r = await cli(["run", "--mem", "3072", guest("hello")]);
    expect(r.err).toMatch(/guest called EXIT\(0\)/);
    expect(r.code).toBe(0);
  });

  it("a budget past Node's 2^31-1 ms timer limit is chained, not fired at once", async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on("warning", onWarning);
    let fired = false;
    const cancel = longTimeout(MAX_TIMER_MS * 2 + 5, () => (fired = true));
    await new Promise((r) => setTimeout(r, 50));
    cancel();
    process.off("warning", onWarning);
    expect(fired).toBe(false);
    expect(warnings).not.toContain("TimeoutOverflowWarning");
    let soon = false;
    longTimeout(5, () => (soon = true));
    await new Promise((r) => setTimeout(r, 40));
    expect(soon).toBe(true);
  });

  it.runIf(hasKvm)("--timeout 3000000 lets the guest finish", async () => {
    const r = await cli(["run", "--timeout", "3000000", guest("exit-code")]);
    expect(r.code).toBe(42);
  });
});

describe("special files are refused at once, never read", () => {
  it("a FIFO or /dev/zero as kernel, initrd, config or CPUID template is exit 2, quickly", async () => {
    const fifo = join(dir, "fifo");
    execFileSync("mkfifo", [fifo]);
    const t0 = Date.now();
    for (const argv of [
      ["run", fifo],
      ["run", "/dev/zero"],
      ["run", guest("hello"), "--initrd", fifo],
      ["run", guest("hello"), "--initrd", "/dev/urandom"],
      ["run", "--config", fifo],
      ["run", "--config", "/dev/zero"],
    ]) {
      const r = await cli(argv);
      expect(r.code, argv.join(" ")).toBe(2);
      expect(r.err, argv.join(" ")).toMatch(/VMM_FILE_NOT_REGULAR: .* is a (FIFO|character device): give a regular file/);
    }
    const cfg = join(dir, "tmpl.json");
    writeFileSync(cfg, JSON.stringify({ kernel: guest("hello"), cpuidTemplate: fifo }));
    expect((await cli(["run", "--config", cfg])).err).toMatch(/VMM_FILE_NOT_REGULAR/);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it("text and JSON given as the kernel are refused; an unknown binary boots as flat and says so", async () => {
    const text = join(dir, "notes.txt");
    writeFileSync(text, "hello\n");
    const t = await cli(["run", text]);
    expect(t.code).toBe(2);
    expect(t.err).toMatch(/VMM_KERNEL_FORMAT: .*text, not code/);
    const json = join(dir, "vm.json");
    writeFileSync(json, JSON.stringify({ memoryMiB: 16 }));
    expect((await cli(["run", json])).err).toMatch(/JSON, not code: did you mean --config\?/);
    const empty = join(dir, "empty");
    writeFileSync(empty, "");
    expect((await cli(["run", empty])).err).toMatch(/VMM_KERNEL_FORMAT: the kernel image is empty/);
    if (hasKvm) {
      // mov al,0x33; out 0xf4,al (debug-exit) in real mode at 0x7c00: status (0x33 << 1 | 1) & 0xff.
      const flat = join(dir, "boot.bin");
      writeFileSync(flat, Buffer.from([0xb0, 0x33, 0xe6, 0xf4, 0xf4]));
      const r = await cli(["run", flat, "--timeout", "10"]);
      expect(r.err).toMatch(/booting it as a flat real-mode binary at 0x7c00/);
      expect(r.code).toBe(0x67);
    }
  });

  it("a CPUID template that is not JSON is one typed line, exit 2", async () => {
    const bad = join(dir, "bad-template.json");
    writeFileSync(bad, "{ not json");
    const cfg = join(dir, "cfg-template.json");
    writeFileSync(cfg, JSON.stringify({ kernel: guest("hello"), cpuidTemplate: bad }));
    const r = await cli(["run", "--config", cfg]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^tsvmm: VMM_CONFIG_INVALID: CPUID template .* is not JSON/);
    expect(r.err.trim().split("\n")).toHaveLength(1);
  });

  it("a config with 700,000 unknown keys gives a short message", async () => {
    const many: Record<string, number> = {};
    for (let i = 0; i < 700_000; i++) many[`k${i}`] = 1;
    const cfg = join(dir, "many.json");
    writeFileSync(cfg, JSON.stringify(many));
    const r = await cli(["run", "--config", cfg]);
    expect(r.code).toBe(2);
    expect(r.err.length).toBeLessThan(2000);
    expect(r.err).toMatch(/and 699990 more/);
  });
});

describe.runIf(hasKvm)("nothing is lost silently", () => {
  it("a port conflict, the hypercall ports included, is refused with BUS_OVERLAP", async () => {
    for (const serial of [0xef0, 0xef4, 0xf0]) {
      const cfg = join(dir, `overlap-${serial}.json`);
      writeFileSync(cfg, JSON.stringify({ kernel: guest("hello"), serial: { port: serial, irq: 4 } }));
      const r = await cli(["run", "--config", cfg]);
      expect(r.code, `serial at 0x${serial.toString(16)}`).toBe(2);
      expect(r.err).toMatch(/VMM_BUILD_DEVICES: devices: BUS_OVERLAP/);
    }
  });

  it("--trace into a missing directory fails before boot; --trace /dev/full fails the run", async () => {
    const missing = await cli(["run", guest("hello"), "--trace", join(dir, "no", "such", "dir", "t.jsonl")]);
    expect(missing.code).toBe(2);
    expect(missing.out).toBe("");
    expect(missing.err).toMatch(/VMM_BUILD_TRACE: trace: TRACE_OPEN_FAILED: .*ENOENT/);
    const full = await cli(["run", guest("hello"), "--trace", "/dev/full"]);
    expect(full.code).toBe(74);
    expect(full.err).toMatch(/vmm-error, exit 74/);
    expect(full.err).toMatch(/ENOSPC/);
  });

  it("SIGTERM stops the VM, flushes the trace, prints the stop line and exits 143", async () => {
    const trace = join(dir, "sig.jsonl");
    const child = spawn(process.execPath, [bin, "run", guest("runaway-loop"), "--trace", trace], { stdio: ["ignore", "pipe", "pipe"] });
    let err = "";
    child.stderr.on("data", (d) => (err += d));
    // Signal once the VM is built (the trace is opened by its last build step, in the same
    // synchronous stretch that hands the VM to the signal handlers), however slowly a loaded
    // machine started the process.
    for (let i = 0; i < 300 && !existsSync(trace); i++) await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 300));
    child.kill("SIGTERM");
    const status = await new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
    expect(status).toBe(143);
    expect(err).toMatch(/^tsvmm: stopped by SIGTERM \[stopped, exit 0/m);
    const lines = readFileSync(trace, "utf8").split("\n");
    expect(lines.at(-1)).toBe("");
    for (const l of lines.slice(0, -1)) expect(() => JSON.parse(l)).not.toThrow();
    expect(lines.length).toBeGreaterThan(2);
  });

  it("tsvmm run | head -c 5 ends quietly, as cat does", () => {
    const r = spawnSync("bash", ["-c", `"${process.execPath}" "${bin}" run | head -c 5; echo "status=\${PIPESTATUS[0]}" >&2`], { encoding: "utf8", timeout: 60_000 });
    expect(r.stdout).toBe("Hello");
    expect(r.stderr).not.toMatch(/EPIPE|Error|at /);
    expect(r.stderr).toMatch(/status=(0|141)/);
  });
});

describe("CLI conventions", () => {
  it("each subcommand has --help/-h (defaults, config keys, exit statuses) and every form gives the version", async () => {
    for (const argv of [["run", "--help"], ["run", "-h"]]) {
      const r = await cli(argv);
      expect(r.code).toBe(0);
      expect(r.out).toMatch(/usage: tsvmm run/);
      expect(r.out).toMatch(/--mem MiB .*default 128.*config: memoryMiB/);
      expect(r.out).toMatch(/126 +the guest did something KVM could not carry out/);
    }
    for (const argv of [["info", "--help"], ["info", "-h"]]) expect((await cli(argv)).out).toMatch(/usage: tsvmm info/);
    const pkg = JSON.parse(readFileSync(join(root, "packages", "vmm", "package.json"), "utf8")) as { version: string };
    for (const argv of [["--version"], ["-V"], ["run", "--version"], ["run", "-V"], ["info", "-V"]]) {
      const r = await cli(argv);
      expect(r.code, argv.join(" ")).toBe(0);
      expect(r.out).toBe(`tsvmm ${pkg.version}\n`);
    }
  });

  it("messages name the flag the user typed, in the user's units", async () => {
    expect((await cli(["run", "--timeout", "0.0001"])).err).toBe("tsvmm run: --timeout 0.0001: must be at least 0.001 seconds\n");
    expect((await cli(["run", "--mem", "-1"])).err).toBe("tsvmm run: --mem -1: must be a whole number of MiB from 1 to 3072\n");
    expect((await cli(["run", "--vcpus", "two"])).err).toBe("tsvmm run: --vcpus two: must be a whole number of vCPUs from 1 to 64\n");
    expect((await cli(["run", "--stall", "-3"])).err).toBe("tsvmm run: --stall -3: must be a positive number of seconds\n");
    expect((await cli(["run", "--mem"])).err).toMatch(/^tsvmm run: --mem needs a value/);
    expect((await cli(["run", "--format", "coff"])).err).toMatch(/^tsvmm run: --format: /);
  });

  it.runIf(hasKvm)("--no-acpi leaves no RSDP for the guest to find; by default the acpi-madt guest finds its tables", async () => {
    expect((await cli(["run", guest("acpi-madt"), "--timeout", "20"])).code).toBe(0);
    const off = await cli(["run", guest("acpi-madt"), "--no-acpi", "--timeout", "20"]);
    expect(off.code).toBe(1); // the guest returns 1 when no RSDP is found
  });

  it.runIf(hasKvm)("--stall SECONDS stops a guest that stops exiting (124)", async () => {
    const r = await cli(["run", guest("runaway-loop"), "--stall", "0.3", "--timeout", "20"]);
    expect(r.code).toBe(124);
    expect(r.err).toMatch(/no vCPU exited for 300 ms/);
  });

  it.runIf(hasKvm)("a guest halted with interrupts off ends with 126 within seconds, no --timeout needed", async () => {
    const t0 = Date.now();
    const r = await cli(["run", guest("halt-irq-off")]);
    expect(r.code).toBe(126);
    expect(r.err).toMatch(/halted with interrupts off/);
    expect(Date.now() - t0).toBeLessThan(5000);
  });
});
