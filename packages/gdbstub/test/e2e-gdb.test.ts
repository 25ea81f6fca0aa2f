// The real gdb (Debian package `gdb`) in batch mode against GdbServer over TCP and a Unix
// socket, debugging the simulated target: every protocol path the vmm's KVM target will use.
import { GdbServer } from "@tsvmm/gdbstub";
import { afterEach, describe, expect, it } from "vitest";
import { printed, runGdb } from "./helpers/gdb.js";
import { INSN, insn, Op, type SimOptions, SimTarget } from "./helpers/sim-target.js";

const servers: GdbServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function serve(sim: SimTarget): Promise<string> {
  const server = new GdbServer(sim);
  servers.push(server);
  const addr = await server.listen("127.0.0.1:0");
  if (!("port" in addr)) throw new Error("no port");
  return `127.0.0.1:${addr.port}`;
}

/** vCPU 0 runs a short program at 0x1000 that exits with status 3; vCPU 1 spins at 0x1800. */
function machine(o: SimOptions = {}): SimTarget {
  const sim = new SimTarget(o);
  sim.load(
    0x1000,
    insn(Op.NOP), // 1000
    insn(Op.NOP), // 1008
    insn(Op.STORE8, 0x2a, 0x3000), // 1010
    insn(Op.INC_RAX), // 1018
    insn(Op.LOAD8, 0, 0x3000), // 1020
    insn(Op.STORE8, 7, 0x3004), // 1028
    insn(Op.LOAD8, 0, 0x3008), // 1030
    insn(Op.EXIT, 3), // 1038
  );
  sim.load(0x1800, insn(Op.JMP, 0, 0x1800));
  if (sim.vcpuCount > 1) sim.regs[1] = { ...sim.regs[1]!, rip: 0x1800n };
  return sim;
}

async function until(cond: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not reached");
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("real gdb against GdbServer (x86-64)", () => {
  it("threads, break, stepi, registers incl. control/segment bases, memory read and write, watch, detach", async () => {
    const sim = machine();
    const target = await serve(sim);
    const { output } = await runGdb(
      target,
      [
        "info threads",
        "p/x $pc", // $1
        "break *0x1018",
        "continue",
        "p/x $pc", // $2
        "stepi",
        "p/x $pc", // $3
        "stepi",
        "p/x $pc", // $4
        "x/1xb 0x3000",
        "set {unsigned char}0x3001 = 0x55",
        "set $r12 = 0x1234",
        "p/x $cr3", // $5
        "p/x $fs_base", // $6
        "p/x $k_gs_base", // $7
        "p $efer", // $8
        "p $cr0", // $9
        "p/x $cs", // $10
        "p/x $xmm3.uint128", // $11
        "delete",
        "watch *(char*)0x3004",
        "continue",
        "p/x $pc", // $12
        "thread 2",
        "p/x $pc", // $13
        "detach",
      ],
      { architecture: "i386:x86-64" },
    );
    expect(output).toMatch(/\* 1\s+Thread 1 \(sim vCPU 0\) 0x0+1000/);
    expect(output).toMatch(/ {2}2\s+Thread 2 \(sim vCPU 1\) 0x0+1800/);
    expect(printed(output, 1)).toBe("0x1000");
    expect(output).toMatch(/Thread 1 hit Breakpoint 1, 0x0+1018/);
    expect(printed(output, 2)).toBe("0x1018");
    expect(printed(output, 3)).toBe("0x1020");
    expect(printed(output, 4)).toBe("0x1028");
    expect(output).toMatch(/0x3000:\s+0x2a/);
    expect(sim.memory[0x3001]).toBe(0x55);
    expect(sim.regs[0]!.r12).toBe(0x1234n);
    expect(printed(output, 5)).toBe("0x9000");
    expect(printed(output, 6)).toBe("0x7f0000001000");
    expect(printed(output, 7)).toBe("0x1234");
    expect(printed(output, 8)).toBe("[ LME LMA ]");
    expect(printed(output, 9)).toBe("[ PE MP ET NE WP AM PG ]");
    expect(printed(output, 10)).toBe("0x10");
    expect(printed(output, 11)).toBe("0x3030303030303030303030303030303");
    expect(output).toMatch(/Hardware watchpoint 2: \*\(char\*\)0x3004\s+Old value = 0 '\\000'\s+New value = 7 '\\a'/);
    // The watchpoint stops after the writing instruction (a trap, as on x86).
    expect(printed(output, 12)).toBe(`0x${(0x1028 + INSN).toString(16)}`);
    expect(printed(output, 13)).toBe("0x1800");
    expect(output).toContain("[Inferior 1 (Remote target) detached]");
    // Detached, the machine runs on to its exit.
    await until(() => sim.exitStatus === 3);
    expect(sim.debugRegs.used).toBe(0);
    expect(sim.swBreakpoints.size).toBe(0);
  });

  it("rwatch and awatch stop at the reading instruction (Z3 is unsupported; gdb uses an access watchpoint)", async () => {
    const sim = machine({ vcpus: 1 });
    const target = await serve(sim);
    const { output } = await runGdb(target, ["rwatch *(char*)0x3000", "continue", "p/x $pc", "delete", "awatch *(char*)0x3008", "continue", "p/x $pc", "kill"], { architecture: "i386:x86-64" });
    // The store at 0x1010 writes 0x3000 first; gdb sees the value change and does not report a read.
    expect(output).toMatch(/Hardware read watchpoint 1: \*\(char\*\)0x3000\s+Value = 42 '\*'/);
    expect(printed(output, 1)).toBe(`0x${(0x1020 + INSN).toString(16)}`);
    expect(output).toMatch(/Hardware access \(read\/write\) watchpoint 2: \*\(char\*\)0x3008\s+Value = 0 '\\000'/);
    expect(printed(output, 2)).toBe(`0x${(0x1030 + INSN).toString(16)}`);
    expect(sim.killed).toBe(true);
  });

  it("without software breakpoints Z0 takes debug-register slots and a fifth breakpoint is refused", async () => {
    const sim = machine({ vcpus: 1, softwareBreakpoints: false });
    const target = await serve(sim);
    const { output } = await runGdb(
      target,
      ["break *0x1008", "break *0x1010", "break *0x1018", "break *0x1020", "break *0x1028", "continue", "delete 5", "continue", "p/x $pc", "info breakpoints", "kill"],
      { architecture: "i386:x86-64" },
    );
    expect(output).toMatch(/Could not insert breakpoint 5|Cannot insert breakpoint 5/);
    expect(output).toMatch(/Breakpoint 1, 0x0+1008/);
    expect(printed(output, 1)).toBe("0x1008");
    expect(sim.calls).toContain("set sw 1028 1");
  });

  it("a hardware breakpoint hit by vCPU 1 switches gdb to thread 2; a read into unmapped memory stops at the boundary", async () => {
    const sim = new SimTarget({ vcpus: 2, memorySize: 0x10000 });
    sim.load(0x1000, insn(Op.JMP, 0, 0x1000));
    sim.load(0x1800, insn(Op.NOP), insn(Op.NOP), insn(Op.JMP, 0, 0x1800));
    sim.regs[1] = { ...sim.regs[1]!, rip: 0x1800n };
    sim.memory.writeUInt32LE(0xa1b2c3d4, 0xfffc);
    const target = await serve(sim);
    const { output } = await runGdb(target, ["hbreak *0x1808", "continue", "p/x $pc", "info threads", "x/8xb 0xfffc", "kill"], { architecture: "i386:x86-64" });
    expect(output).toContain("[Switching to Thread 2]");
    expect(output).toContain("Hardware assisted breakpoint 1 at 0x1808");
    expect(output).toMatch(/Thread 2 hit Breakpoint 1, 0x0+1808/);
    expect(printed(output, 1)).toBe("0x1808");
    expect(output).toMatch(/ {2}1\s+Thread 1 \(sim vCPU 0\) 0x0+1000/);
    expect(output).toMatch(/\* 2\s+Thread 2 \(sim vCPU 1\) 0x0+1808/);
    expect(output).toMatch(/0xfffc:\s+0xd4\s+0xc3\s+0xb2\s+0xa1\s*Cannot access memory at address 0x10000/);
    expect(sim.calls).toContain("set hw 1808 1");
  });

  it("Ctrl-C stops a spinning guest with SIGINT; kill ends it", async () => {
    const sim = machine({ vcpus: 1 });
    sim.regs[0] = { ...sim.regs[0]!, rip: 0x1800n };
    const target = await serve(sim);
    const { output } = await runGdb(target, ["continue", "p/x $pc", "kill"], {
      architecture: "i386:x86-64",
      // The guest is spinning once gdb's continue reached the target (and some time passed).
      interruptWhen: () => sim.calls.some((c) => c.startsWith("resume")),
    });
    expect(output).toMatch(/received signal SIGINT/);
    expect(printed(output, 1)).toBe("0x1800");
    expect(sim.calls).toContain("interrupt");
    expect(sim.killed).toBe(true);
  });

  it("continue to the guest's exit reports its status", async () => {
    const sim = machine({ vcpus: 1 });
    const target = await serve(sim);
    const { output } = await runGdb(target, ["continue"], { architecture: "i386:x86-64" });
    expect(output).toMatch(/\[Inferior 1 \(Remote target\) exited with code 03\]/);
  });

  it("a signal given with `signal` reaches the target's resume", async () => {
    const sim = machine({ vcpus: 1 });
    const target = await serve(sim);
    await runGdb(target, ["break *0x1010", "signal SIGUSR1", "kill"], { architecture: "i386:x86-64" });
    expect(sim.signalsDelivered).toEqual([30]); // GDB_SIGNAL_USR1
  });
});

describe("real gdb against GdbServer (32-bit and real-mode layouts)", () => {
  for (const arch of ["i386", "i8086"] as const) {
    it(`${arch}: registers, break and step with the 32-bit layout`, async () => {
      const sim = machine({ vcpus: 1, architecture: arch });
      sim.regs[0] = { ...sim.regs[0]!, rax: 0xaaaaaaaa11223344n, rsi: 0xaaaaaaaa11223344n, fsBase: 0x5000n, cr0: 0x11n };
      const target = await serve(sim);
      const { output } = await runGdb(target, ["p/x $eip", "p/x $eax", "p/x $fs_base", "p $cr0", "break *0x1010", "continue", "stepi", "p/x $eip", "set $esi = 0x55", "info registers esp", "detach"], { architecture: arch });
      expect(printed(output, 1)).toBe("0x1000");
      expect(printed(output, 2)).toBe("0x11223344");
      expect(printed(output, 3)).toBe("0x5000");
      expect(printed(output, 4)).toBe("[ PE ET ]");
      expect(printed(output, 5)).toBe("0x1018");
      expect(output).toMatch(/^esp\s+0x0\s+0x0$/m);
      // A 32-bit write keeps the upper half of the 64-bit register.
      expect(sim.regs[0]!.rsi).toBe(0xaaaaaaaa00000055n);
    });
  }
});
