// kvm-unit-tests compatibility: our own Multiboot guests in that suite's x86 shape
// (test-kernels/kut/) run through the built `tsvmm` CLI exactly as the suite's runner runs QEMU:
// `tsvmm run x.flat --smp N --mem M --timeout S`. Expected values come from the options we pass
// and from the conventions (QEMU isa-debug-exit status, Multiboot, fw_cfg), never from guest output.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { requireKvm } from "@tsvmm/kvm-backend";
import { detectFormat } from "@tsvmm/vmm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const hasKvm = requireKvm();
const root = join(__dirname, "..", "..", "..");
const bin = join(root, "packages", "vmm", "bin", "tsvmm.cjs");
const flat = (name: string) => join(root, "test-kernels", "out", "kut", `${name}.flat`);
const GUESTS = ["hello", "probe", "mem", "smp", "irq", "chaos", "port92", "iomem", "acpi-off"] as const;
const MiB = 1024 * 1024;

let dir = "";
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "tsvmm-kut-"));
  execFileSync("flock", ["/tmp/tsvmm-test-kernels.lock", "make", "-s", "-C", join(root, "test-kernels"), "kut"]);
  // The CLI under test is the built one; build it when this file runs on a fresh checkout.
  if (!existsSync(join(root, "packages", "vmm", "dist", "cli.cjs"))) {
    execFileSync("npx", ["tsup"], { cwd: join(root, "packages", "vmm"), stdio: "ignore" });
  }
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Run {
  status: number | null;
  signal: NodeJS.Signals | null;
  out: string;
  err: string;
  lines: string[];
}

function tsvmm(name: string, args: string[] = []): Run {
  const r = spawnSync(process.execPath, [bin, "run", flat(name), ...args], { encoding: "utf8", timeout: 60_000 });
  return { status: r.status, signal: r.signal, out: r.stdout, err: r.stderr, lines: r.stdout.split("\n") };
}

/** QEMU's isa-debug-exit: a write of v ends the VM with status (v << 1) | 1, as a process status. */
const debugExitStatus = (v: number) => ((v << 1) | 1) & 0xff;

/** The run ended through the debug-exit port with `value`, and nothing else went wrong. */
function expectDebugExit(r: Run, value: number): void {
  expect(r.signal).toBeNull();
  const stderr = r.err.trim().split("\n");
  expect(stderr).toHaveLength(1);
  expect(stderr[0]).toMatch(new RegExp(`^tsvmm: guest wrote ${value} to the debug-exit port .*\\[guest-exit, exit ${debugExitStatus(value)},`));
  expect(r.status).toBe(debugExitStatus(value));
}

/** PASS/FAIL/SKIP lines and the SUMMARY line, as kvm-unit-tests' runner reads them. */
function results(r: Run): { pass: string[]; fail: string[]; skip: string[]; summary: string | undefined } {
  const pick = (tag: string) => r.lines.filter((l) => l.startsWith(`${tag}: `)).map((l) => l.slice(tag.length + 2));
  return { pass: pick("PASS"), fail: pick("FAIL"), skip: pick("SKIP"), summary: r.lines.find((l) => l.startsWith("SUMMARY: ")) };
}

/** All passed: no FAIL, a SUMMARY counting every PASS, and status (0 << 1) | 1. */
function expectAllPassed(r: Run, atLeast: number): string[] {
  const res = results(r);
  expect(res.fail).toEqual([]);
  expect(res.pass.length).toBeGreaterThanOrEqual(atLeast);
  expect(res.summary).toBe(`SUMMARY: ${res.pass.length} tests`);
  expectDebugExit(r, 0);
  return res.pass;
}

/** The guests' PRNG (xorshift32), to predict the chaos guest's storm from its seed. */
function xorshift(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s ^ (s << 13)) >>> 0;
    s = (s ^ (s >>> 17)) >>> 0;
    s = (s ^ (s << 5)) >>> 0;
    return s;
  };
}

describe("kvm-unit-tests-style images", () => {
  it.each(GUESTS)("%s.flat is an ELF32 i386 image with a Multiboot header in its first 8 KiB, detected as multiboot", (name) => {
    const b = readFileSync(flat(name));
    expect(b.readUInt32BE(0)).toBe(0x7f454c46);
    expect(b[4]).toBe(1); // ELFCLASS32
    expect(b.readUInt16LE(18)).toBe(3); // EM_386
    let header = -1;
    for (let o = 0; o + 12 <= Math.min(b.length, 8192); o += 4) {
      if (b.readUInt32LE(o) === 0x1badb002 && ((b.readUInt32LE(o) + b.readUInt32LE(o + 4) + b.readUInt32LE(o + 8)) >>> 0) === 0) {
        header = o;
        break;
      }
    }
    expect(header).toBeGreaterThanOrEqual(0);
    expect(detectFormat(b)).toBe("multiboot");
  });
});

describe.runIf(hasKvm)("tsvmm run x.flat (kvm-unit-tests conventions)", () => {
  it("hello: Multiboot hand-over (EAX magic, EBX info, loader name, command line), all passed -> status 1", () => {
    const cmdline = "console=ttyS0 some test args";
    const r = tsvmm("hello", ["--mem", "32", "--timeout", "30", "--cmdline", cmdline]);
    expect(r.lines).toContain(`cmdline: [${cmdline}]`);
    expect(r.lines).toContain("loader: tsvmm");
    expect(expectAllPassed(r, 2)).toEqual(["EAX = 0x2badb002 at entry", "EBX points at an info structure with memory sizes"]);
  });

  it("the process status is (value << 1 | 1) & 0xff for a 4-byte OUT of value to port 0xf4", () => {
    // 38 is what the suite writes for SKIP (status 77); 127 and 128 show the 8-bit wrap.
    for (const value of [0, 1, 38, 127, 128, 255]) {
      const r = tsvmm("hello", ["--mem", "16", "--timeout", "30", "--cmdline", `exit=${value}`]);
      expect(r.lines).toContain(`exiting with ${value}`);
      expectDebugExit(r, value);
    }
  });

  it.each([
    [1, 96],
    [3, 200],
  ])("probe --smp %i --mem %i: fw_cfg 0x510/0x511 carries both; POST, CMOS, i8042, PIC/PIT, pc-testdev answer; unclaimed ports read all-ones", (smp, mem) => {
    const r = tsvmm("probe", ["--smp", String(smp), "--mem", String(mem), "--timeout", "30"]);
    expect(r.lines).toContain(`fw_cfg: cpus ${smp} max_cpus ${smp} ram 0x${(mem * MiB).toString(16)}`);
    const pass = expectAllPassed(r, 10);
    expect(pass).toContain("fw_cfg signature is QEMU (0x554d4551)");
    // outl 0x12345678 to 0xe0, then outb 0x9a to 0xe3: QEMU's pc-testdev scratch semantics.
    expect(pass).toContain("testdev 0xe0 reads back at every width (0x56 0x1234 0x9a345678)");
    for (const port of ["0x2f8", "0x378"]) expect(r.lines).toContain(`port ${port}: inb 0xff inw 0xffff inl 0xffffffff`);
    expect(r.lines).toContain("pci 00:00.0 id 0xffffffff");
  });

  it.each([48, 200])("mem --mem %i: mem_upper, the mmap and fw_cfg describe exactly the RAM asked for", (mem) => {
    const r = tsvmm("mem", ["--mem", String(mem), "--timeout", "30"]);
    const top = mem * MiB;
    expect(r.lines).toContain(`mem_lower 640 KiB, mem_upper ${(top - MiB) / 1024} KiB`);
    const entries = r.lines
      .map((l) => /^mmap: base 0x([0-9a-f]+) length 0x([0-9a-f]+) type (\d+)$/.exec(l))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => ({ base: Number.parseInt(m[1]!, 16), end: Number.parseInt(m[1]!, 16) + Number.parseInt(m[2]!, 16), type: Number(m[3]) }));
    expect(entries.length).toBeGreaterThan(0);
    const ram = entries.filter((e) => e.type === 1).sort((a, b) => a.base - b.base);
    // Usable RAM: all of [1 MiB, top), nothing at or above top, nothing in the legacy hole.
    expect(ram.some((e) => e.base <= MiB && e.end === top)).toBe(true);
    for (const e of ram) {
      expect(e.end).toBeLessThanOrEqual(top);
      expect(e.end <= 0xa0000 || e.base >= MiB).toBe(true);
    }
    const sorted = [...entries].sort((a, b) => a.base - b.base);
    for (let i = 1; i < sorted.length; i++) expect(sorted[i]!.base).toBeGreaterThanOrEqual(sorted[i - 1]!.end);
    const pass = expectAllPassed(r, 8);
    expect(pass).toContain(`last dword of RAM at 0x${(top - 4).toString(16)} is writable`);
    expect(pass).toContain(`fw_cfg RAM size 0x${top.toString(16)} is the top of RAM`);
  });

  it.each([1, 2, 4])("smp --smp %i: the BSP starts every AP with INIT/SIPI and each reports its own APIC id", (smp) => {
    const r = tsvmm("smp", ["--smp", String(smp), "--mem", "32", "--timeout", "30"]);
    expect(r.lines).toContain(`smp: bsp apic id 0, apic base 0xfee00900, fw_cfg cpus ${smp}`);
    const aps = r.lines.map((l) => /^AP (\d+): apic id (\d+) online$/.exec(l)).filter((m) => m !== null);
    expect(aps.map((m) => Number(m![2])).sort((a, b) => a - b)).toEqual(Array.from({ length: smp - 1 }, (_, i) => i + 1));
    expect(aps.map((m) => Number(m![1])).sort((a, b) => a - b)).toEqual(Array.from({ length: smp - 1 }, (_, i) => i + 1));
    expect(r.lines).toContain(`smp: ${smp} cpus online`);
    expect(expectAllPassed(r, 4)).toContain(`${smp - 1} of ${smp - 1} APs came up`);
  });

  it("irq: pc-testdev lines 0x2000 + n reach the in-kernel IOAPIC -> LAPIC (edge and level pending in the IRR)", () => {
    const r = tsvmm("irq", ["--mem", "32", "--timeout", "30"]);
    expect(expectAllPassed(r, 4)).toEqual([
      "nothing pending before the lines move",
      "edge on testdev line 10 is pending as vector 0x40",
      "line 11 untouched: vector 0x41 not pending",
      "level on testdev line 11 is pending as vector 0x41",
    ]);
  });

  it("--vcpus is the same knob as --smp", () => {
    const r = tsvmm("smp", ["--vcpus", "2", "--mem", "32", "--timeout", "30"]);
    expect(r.lines).toContain("smp: 2 cpus online");
    expectAllPassed(r, 4);
  });

  it.each([1, 77, 123456])("chaos seed=%i: garbage to random ports, string I/O to nobody and unbacked MMIO end cleanly; the trace holds the predicted storm", (seed) => {
    const trace = join(dir, `chaos-${seed}.jsonl`);
    const r = tsvmm("chaos", ["--mem", "64", "--timeout", "30", "--cmdline", `seed=${seed}`, "--trace", trace]);
    expect(r.lines).toContain(`chaos: seed ${seed}`);
    expect(r.lines).toContain("chaos: still alive");
    const pass = expectAllPassed(r, 7);
    for (const a of ["0xc0000000", "0xd0001000", "0xfed00000", "0xfe000ffc"]) {
      expect(pass).toContain(`unbacked ${a} reads all-ones, writes vanish (0xffffffff, 0xffffffff)`);
    }

    // Replay the guest's PRNG: the port writes that reached the VMM must be exactly the predicted
    // ones in order (ports KVM's in-kernel PIC/PIT/ELCR take never reach it), and most of them.
    const next = xorshift(seed);
    const isProtected = (p: number, s: number) =>
      [[0xf4, 0xf7], [0x60, 0x64], [0x3f8, 0x3ff], [0xef0, 0xef7], [0x92, 0x92], [0x600, 0x60b]].some(([lo, hi]) => p <= hi! && p + s - 1 >= lo!) || p + s > 0x10000;
    const predicted: { addr: number; size: number; data: string }[] = [];
    for (let i = 0; i < 300; i++) {
      const port = next() & 0xffff;
      const size = 1 << (next() % 3);
      const v = next();
      if (isProtected(port, size)) continue;
      const b = Buffer.alloc(4);
      b.writeUInt32LE(v);
      predicted.push({ addr: port, size, data: b.subarray(0, size).toString("hex") });
    }
    const events = readFileSync(trace, "utf8").trim().split("\n").map((l) => JSON.parse(l) as { kind: string; dir?: string; addr?: number; size?: number; data?: string });
    const io = events.filter((e) => e.kind === "io");
    // The storm sits between the newline ending "chaos: seed N" and the next UART access.
    const uart = (e: { addr?: number }) => e.addr! >= 0x3f8 && e.addr! <= 0x3ff;
    const start = io.findIndex((e) => e.dir === "write" && e.addr === 0x3f8 && e.data === "0a") + 1;
    expect(start).toBeGreaterThan(0);
    const stop = io.findIndex((e, i) => i >= start && uart(e));
    const writes = io.slice(start, stop).filter((e) => e.dir === "write").map((e) => ({ addr: e.addr, size: e.size, data: e.data }));
    let k = 0;
    for (const w of writes) {
      while (k < predicted.length && JSON.stringify(predicted[k]) !== JSON.stringify(w)) k++;
      expect(k, `traced write ${JSON.stringify(w)} is not next in the predicted storm`).toBeLessThan(predicted.length);
      k++;
    }
    expect(writes.length).toBeGreaterThan(predicted.length * 0.9);
    // Unbacked MMIO went to the VMM's default handler and read back all-ones.
    const mmioReads = events.filter((e) => e.kind === "mmio" && e.dir === "read");
    expect(mmioReads.map((e) => e.addr)).toEqual(expect.arrayContaining([0xc0000000, 0xd0001000, 0xfed00000, 0xfe000ffc]));
    for (const e of mmioReads) expect(e.data).toBe("ffffffff");
  });

  it("port92: fast A20 reads back; bit 0 resets the machine: reason reset, status 0, nothing runs after it", () => {
    const r = tsvmm("port92", ["--mem", "32", "--timeout", "30"]);
    expect(r.signal).toBeNull();
    const res = results(r);
    expect(res.pass).toEqual(["A20 is enabled at boot (bit 1 set)", "the reset bit reads 0", "A20 bit reads back 0 then 1 (0x0, 0x2)"]);
    expect(r.lines).toContain("port92: resetting");
    expect(res.fail).toEqual([]);
    expect(res.summary).toBeUndefined();
    expect(r.err.trim()).toMatch(/^tsvmm: guest requested a reset through port 0x92 \(bit 0\) \[reset, exit 0,/);
    expect(r.status).toBe(0);
  });

  it("iomem: pc-testdev's 64 KiB at 0xff000000 is RAM-like MMIO for moves, string ops, xchg, add and lock cmpxchg", () => {
    const r = tsvmm("iomem", ["--mem", "32", "--timeout", "30"]);
    expect(expectAllPassed(r, 10)).toContain("rep movsb from RAM across the 0xff001000 page boundary");
  });

  it("acpi-off: the guest finds RSDP/FADT/DSDT, writes \\_S5 with SLP_EN to PM1a_CNT: reason poweroff, status 0", () => {
    const r = tsvmm("acpi-off", ["--mem", "32", "--timeout", "30"]);
    expect(r.signal).toBeNull();
    const res = results(r);
    expect(res.pass).toEqual([
      "RSDP found at 0xe0000",
      "FADT and DSDT found, checksums good",
      "\\_S5 SLP_TYPa 5, PM1a_CNT at 0x604",
      "SLP_TYP without SLP_EN leaves the machine running",
    ]);
    expect(res.fail).toEqual([]);
    expect(r.err.trim()).toMatch(/^tsvmm: guest powered off through ACPI \(S5 written to PM1a control\) \[poweroff, exit 0,/);
    expect(r.status).toBe(0);
  });

  it("emulated: stops at its first POPCNT (KVM internal error, 126) without --emulate; with it every check passes and the stop line counts what was emulated", () => {
    const stopped = tsvmm("emulated", ["--timeout", "30"]);
    expect(stopped.status).toBe(126);
    expect(stopped.err.trim()).toMatch(/^tsvmm: vCPU 0: KVM internal error, suberror 1, instruction bytes f30fb8/);
    expect(results(stopped).pass).toEqual([]);
    const r = tsvmm("emulated", ["--timeout", "30", "--emulate"]);
    expect(expectAllPassed(r, 4)).toContain("popcnt 0xf00f0ff0 = 16");
    expect(r.err).toMatch(/emulated: [^\]]*popcnt 1/);
    expect(r.err).toMatch(/emulated: [^\]]*clac 1/);
  });
});
