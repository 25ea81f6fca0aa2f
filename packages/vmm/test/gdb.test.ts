// The KVM gdb target with the real gdb (Debian package `gdb`) in batch mode, on the VMM users
// get (VmmBuilder.gdb, tsvmm run --gdb), against test-kernel ELFs with symbols.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP } from "@tsvmm/abi";
import { requireKvm } from "@tsvmm/kvm-backend";
import { main, VmmBuilder } from "@tsvmm/vmm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { allPrinted, debugVm, guest, nmAddress, printed, root, runGdb } from "./gdb-helpers.js";

const hasKvm = requireKvm();
const elf = guest("gdb-target");
let dir = "";

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "tsvmm-gdb-"));
  execFileSync("flock", ["/tmp/tsvmm-test-kernels.lock", "make", "-s", "-C", join(root, "test-kernels")]);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const hex = (n: bigint): string => `0x${n.toString(16)}`;

/** The address of the instruction after gdb_bump's store to gdb_counter, from objdump. */
function afterStore(): bigint {
  const lines = execFileSync("objdump", ["-d", "--no-show-raw-insn", elf], { encoding: "utf8" }).split("\n");
  const i = lines.findIndex((l) => /^\s+[0-9a-f]+:\s+mov\s+%eax,0x[0-9a-f]+\(%rip\)\s+# [0-9a-f]+ <gdb_counter>/.test(l));
  expect(i).toBeGreaterThan(0);
  return BigInt(`0x${/^\s+([0-9a-f]+):/.exec(lines[i + 1]!)![1]}`);
}

/**
 * The `n` instructions the guest executes after first reaching `start`, traced without the gdb
 * target: KVM single-step on vCPU 0 of the same VM from its entry, port I/O answered by the
 * VMM's own bus. RIP after each step, and the exits to the VMM among those steps.
 */
function singleStepTrace(start: bigint, n: number): { rips: bigint[]; io: number } {
  const vmm = new VmmBuilder().kernelFile(elf).memoryMiB(16).build();
  try {
    const v = vmm.vcpus[0]!;
    v.setGuestDebug(KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP);
    const rips: bigint[] = [];
    let reached = false;
    let io = 0;
    for (let guard = 0; rips.length < n && guard < 100_000; guard++) {
      const exit = v.run();
      if (exit.kind === "debug") {
        const rip = v.getRegs().rip;
        if (reached) rips.push(rip);
        else reached = rip === start;
      } else if (exit.kind === "io") {
        if (reached) io++;
        if (exit.direction === "in") vmm.pio.readInto(exit.port, exit.data, 0);
        else vmm.pio.write(exit.port, exit.data, 0);
      } else if (exit.kind !== "interrupted") throw new Error(`unexpected exit ${exit.kind}`);
    }
    return { rips, io };
  } finally {
    void vmm.close();
  }
}

describe.runIf(hasKvm)("gdb against a KVM guest (x86-64)", () => {
  // With VmmBuilder.vcpuWorkers too: the debug exits and the stub's kicks reach the Vmm forwarded.
  const onWorkers = (b: VmmBuilder) => b.vcpuWorkers({ module: new URL("./fixtures/ticket-device.mjs", import.meta.url) });
  it.each([
    ["", undefined],
    [" (the vCPU on a worker thread)", onWorkers],
  ])("break at a C function ($pc = nm), read and write a global by name, a watchpoint stops after the writing instruction%s", async (_, configure) => {
    const vm = await debugVm("gdb-target", { configure });
    const { output } = await runGdb(elf, vm.target, [
      "p/x $pc", // $1
      "break gdb_checkpoint",
      "continue",
      "p/x $pc", // $2
      "p gdb_counter", // $3
      "set var gdb_counter = 1000",
      "watch gdb_counter",
      "continue",
      "p/x $pc", // $4
      "p gdb_counter", // $5
      "info threads",
      "delete",
      "continue",
    ]);
    expect(printed(output, 1)).toBe(hex(nmAddress(elf, "_start")));
    expect(printed(output, 2)).toBe(hex(nmAddress(elf, "gdb_checkpoint")));
    expect(printed(output, 3)).toBe("5");
    expect(output).toMatch(/atchpoint 2: gdb_counter\s+Old value = 1000\s+New value = 1001/);
    expect(printed(output, 4)).toBe(hex(afterStore()));
    expect(printed(output, 5)).toBe("1001");
    expect(output).toMatch(/exited with code 07/);
    const r = await vm.result;
    expect(r.exitCode).toBe(7);
    expect(vm.values.get("counter-start")).toEqual([5n]);
    expect(vm.values.get("counter")).toEqual([1001n]);
  });

  it.each([
    ["", undefined],
    [" (the vCPU on a worker thread)", onWorkers],
  ])("stepi N times gives the RIPs of KVM's own single-step trace, across a port I/O exit to the VMM%s", async (_, configure) => {
    const n = 100;
    const start = nmAddress(elf, "report_value");
    const trace = singleStepTrace(start, n);
    // report_value's OUT to the hypercall doorbell: the steps cross an exit the VMM handles.
    expect(trace.io).toBeGreaterThan(0);
    const vm = await debugVm("gdb-target", { configure });
    const cmds = [`break *${hex(start)}`, "continue", "p/x $pc", "delete"];
    for (let i = 0; i < n; i++) cmds.push("stepi", "p/x $pc");
    cmds.push("kill");
    const { output } = await runGdb(elf, vm.target, cmds);
    expect(allPrinted(output)).toEqual([start, ...trace.rips].map(hex));
    expect((await vm.result).reason).toBe("stopped");
  });

  it("breakpoints take the four debug-register slots: a fifth is refused, gdb says so, the four still work", async () => {
    const vm = await debugVm("gdb-target");
    const names = ["test_main", "gdb_checkpoint", "gdb_bump", "report_value", "strlen"];
    const { output } = await runGdb(elf, vm.target, [...names.map((n) => `break *${hex(nmAddress(elf, n))}`), "continue", "delete 5", "continue", "p/x $pc", "kill"]);
    // gdb words a refused Z0 as a memory error ("Cannot access memory at address"): the reply is E1c, no slot.
    expect(output).toMatch(/Cannot insert breakpoint 5\./);
    expect(printed(output, 1)).toBe(hex(nmAddress(elf, "test_main")));
    expect((await vm.result).reason).toBe("stopped");
  });

  it("Ctrl-C stops a spinning guest; gdb then releases it and it exits with its status", async () => {
    const vm = await debugVm("gdb-target");
    const { output } = await runGdb(
      elf,
      vm.target,
      ["set var gdb_spin = 1", "continue", "p gdb_spin", "p gdb_go", "set var gdb_go = 1", "continue"],
      // The guest reports its counter right before the spin loop.
      { interruptWhen: () => vm.values.has("counter") },
    );
    expect(output).toMatch(/received signal SIGINT/);
    expect(printed(output, 1)).toBe("1");
    expect(printed(output, 2)).toBe("0");
    expect(output).toMatch(/exited with code 07/);
    expect((await vm.result).exitCode).toBe(7);
    expect(vm.values.get("spun")).toEqual([1n]);
  });

  it("detach lets the guest run to its exit status", async () => {
    const vm = await debugVm("gdb-target");
    const { output } = await runGdb(elf, vm.target, ["break gdb_bump", "continue", "p/x $pc", "detach"]);
    expect(printed(output, 1)).toBe(hex(nmAddress(elf, "gdb_bump")));
    const r = await vm.result;
    expect(r.exitCode).toBe(7);
    expect(vm.values.get("counter")).toEqual([6n]);
  });

  it("info threads lists both vCPUs of a two-vCPU guest; each has its own registers", async () => {
    const smp = guest("smp-two-vcpus");
    const vm = await debugVm("smp-two-vcpus", { vcpus: 2 });
    const { output } = await runGdb(smp, vm.target, ["info threads", "thread 2", "p/x $pc", "p $_thread", "thread 1", "p $_thread", "continue"]);
    expect(output).toMatch(/Thread 1 \(vCPU 0\)/);
    expect(output).toMatch(/Thread 2 \(vCPU 1\)/);
    // Both start at the entry (same boot state).
    expect(printed(output, 1)).toBe(hex(nmAddress(smp, "_start")));
    expect(printed(output, 2)).toBe("2");
    expect(printed(output, 3)).toBe("1");
    expect(output).toMatch(/exited normally/);
    const r = await vm.result;
    expect(r.exitCode).toBe(0);
    expect([...(vm.values.get("apic.cpuid") ?? [])].sort()).toEqual([0n, 1n]);
  });
});

describe.runIf(hasKvm)("gdb against 32-bit and 16-bit guests", () => {
  it("32-bit protected mode (pmode-flat): break at test_main, registers, memory, run to the end", async () => {
    const pm = guest("pmode-flat");
    const vm = await debugVm("pmode-flat");
    const main32 = nmAddress(pm, "test_main");
    const { output } = await runGdb(pm, vm.target, [
      "break test_main",
      "continue",
      "p/x $pc", // $1
      "p/x $cr0 & 0x80000001", // $2
      "p/x $cs", // $3
      `p/x *(unsigned char*)${hex(main32)}`, // $4
      "stepi",
      "stepi",
      `p $pc != ${hex(main32)}`, // $5
      "delete",
      "continue",
    ]);
    expect(printed(output, 1)).toBe(hex(main32));
    expect(printed(output, 2)).toBe("0x1");
    expect(printed(output, 3)).toBe("0x10");
    const first = execFileSync("objdump", ["-d", `--start-address=${hex(main32)}`, `--stop-address=${hex(main32 + 1n)}`, pm], { encoding: "utf8" });
    expect(printed(output, 4)).toBe(`0x${/^\s+[0-9a-f]+:\s+([0-9a-f]{2})/m.exec(first)![1]!.replace(/^0/, "")}`);
    expect(printed(output, 5)).toBe("1");
    expect(output).toMatch(/exited normally/);
    expect((await vm.result).exitCode).toBe(0);
    expect(vm.values.get("readback-8mib")).toEqual([0xc0ffee11n]);
  });

  it("real mode (realmode-arith): break at test_main, step, run to the end", async () => {
    const rm = guest("realmode-arith");
    const vm = await debugVm("realmode-arith");
    const main16 = nmAddress(rm, "test_main");
    const { output } = await runGdb(rm, vm.target, ["p/x $pc", `break *${hex(main16)}`, "continue", "p/x $pc", "p/x $cr0 & 1", "stepi", `p $pc > ${hex(main16)}`, "delete", "continue"]);
    expect(printed(output, 1)).toBe(hex(nmAddress(rm, "_start")));
    expect(printed(output, 2)).toBe(hex(main16));
    expect(printed(output, 3)).toBe("0x0");
    expect(printed(output, 4)).toBe("1");
    expect(output).toMatch(/exited normally/);
    expect((await vm.result).exitCode).toBe(0);
    expect(vm.values.get("sum-of-squares-1-100")).toEqual([338350n]);
  });
});

describe.runIf(hasKvm)("tsvmm run --gdb", () => {
  it("--gdb unix:PATH --gdb-wait: gdb connects through the socket, runs the guest to its status; the socket file is gone after", async () => {
    const sock = join(dir, "gdb.sock");
    let err = "";
    let out = "";
    const ran = main(["run", elf, "--gdb", `unix:${sock}`, "--gdb-wait", "--timeout", "25"], {
      stdout: (s) => {
        out += s.toString();
      },
      stderr: (s) => {
        err += s;
      },
    });
    const t0 = Date.now();
    while (!existsSync(sock) && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 20));
    const { output } = await runGdb(elf, sock, ["p/x $pc", "p gdb_counter", "continue"]);
    expect(printed(output, 1)).toBe(hex(nmAddress(elf, "_start")));
    expect(printed(output, 2)).toBe("5");
    expect(output).toMatch(/exited with code 07/);
    expect(await ran).toBe(7);
    expect(err).toContain(`gdb stub on ${sock}, vCPUs wait for the debugger`);
    expect(existsSync(sock)).toBe(false);
    expect(out).toBe("");
  });

  it("refuses a non-loopback address without --gdb-allow-remote, and --gdb-wait without --gdb", async () => {
    let err = "";
    const io = {
      stdout: () => {},
      stderr: (s: string) => {
        err += s;
      },
    };
    expect(await main(["run", elf, "--gdb", "0.0.0.0:1234"], io)).toBe(2);
    expect(err).toMatch(/--gdb 0\.0\.0\.0:1234: refusing .*--gdb-allow-remote/);
    err = "";
    expect(await main(["run", elf, "--gdb-wait"], io)).toBe(2);
    expect(err).toMatch(/--gdb-wait goes with --gdb/);
    expect(() => new VmmBuilder().gdb("192.0.2.1:1234")).toThrow(expect.objectContaining({ code: "GDB_TARGET_ADDRESS" }));
    expect(() => new VmmBuilder().gdb("not an address")).toThrow(expect.objectContaining({ code: "GDB_TARGET_ADDRESS" }));
  });
});

describe.runIf(hasKvm)("a hostile client on the gdb port", () => {
  it("garbage, oversized and malformed packets neither stop nor crash the VM; gdb attaches to it running afterwards", async () => {
    const vm = await debugVm("gdb-target");
    const [host, port] = vm.target.split(":");
    const spin = nmAddress(elf, "gdb_spin");
    const replies = await new Promise<string>((resolve, reject) => {
      const s = connect(Number(port), host!);
      let got = "";
      s.on("data", (d) => {
        got += d.toString("latin1");
        // The last packet below sets gdb_spin; its OK means everything before was survived.
        if (got.includes("$OK#9a")) s.end();
      });
      s.on("close", () => resolve(got));
      s.on("error", reject);
      const noise = Buffer.alloc(64 * 1024);
      for (let i = 0; i < noise.length; i++) noise[i] = (i * 131 + 7) & 0xff;
      s.write(noise);
      s.write(`$${"A".repeat(100_000)}#00`); // oversized
      s.write("$m0,ffffffff#ff"); // bad checksum
      s.write("$Z9,0,0#00$X1,2:#00$G12#00\x03\x03$qXfer:features:read:nope:0,1#00");
      const body = `M${spin.toString(16)},4:01000000`;
      const sum = [...body].reduce((a, c) => (a + c.charCodeAt(0)) & 0xff, 0);
      s.write(`$${body}#${sum.toString(16).padStart(2, "0")}`);
    });
    expect(replies).toContain("$OK#9a");
    // The hostile session detached: the guest runs on and spins (gdb_spin = 1) until gdb says.
    const t0 = Date.now();
    while (!vm.values.has("counter") && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 20));
    expect(vm.values.get("counter")).toEqual([6n]);
    const { output } = await runGdb(elf, vm.target, ["p gdb_spin", "set var gdb_go = 1", "continue"]);
    expect(printed(output, 1)).toBe("1");
    expect(output).toMatch(/exited with code 07/);
    expect((await vm.result).exitCode).toBe(7);
  });
});
