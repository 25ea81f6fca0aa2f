import { readFileSync } from "node:fs";
import { DebugRegisters, type DebugTarget, GdbServer, GdbSignal, resetRegisters, type StopEvent, type X86Registers } from "@tsvmm/gdbstub";
import { expect, it } from "vitest";
import { printed, runGdb } from "./helpers/gdb.js";

// The README's example is the code between the markers below, character for character (the
// first test checks that), and the second test runs it and debugs it with the real gdb.
async function example() {
  // README-EXAMPLE-START
  // A one-vCPU "machine": 64 KiB of memory at virtual address 0, and a CPU whose every
  // resume moves RIP on by one byte (a real target runs KVM_RUN until a debug exit).
  const memory = Buffer.alloc(0x10000);
  let regs: X86Registers = { ...resetRegisters(), rip: 0x1000n, cr0: 0x80000011n };
  const slots = new DebugRegisters(); // DR0–DR3 for Z0–Z4, as a KVM target loads them
  let stop: StopEvent = { kind: "stopped", vcpu: 0, signal: GdbSignal.TRAP };

  const target: DebugTarget = {
    vcpuCount: 1,
    architecture: () => "i386:x86-64",
    halt: async () => stop,
    readRegisters: () => regs,
    writeRegisters: (_vcpu, r) => {
      regs = r;
    },
    // An empty result (past the end) becomes an error reply, as an unmapped page would.
    readMemory: (_vcpu, addr, len) => memory.subarray(Number(addr), Number(addr) + len),
    writeMemory: (_vcpu, addr, data) => {
      if (addr + BigInt(data.length) > BigInt(memory.length)) throw new RangeError("unmapped");
      memory.set(data, Number(addr));
    },
    setBreakpoint: (bp) => slots.insert(bp),
    removeBreakpoint: (bp) => slots.remove(bp),
    resume: async () => {
      regs = { ...regs, rip: regs.rip + 1n };
      stop = { kind: "stopped", vcpu: 0, signal: GdbSignal.TRAP };
      return stop;
    },
    interrupt: () => {},
    kill: () => {},
    detach: () => slots.clear(),
  };

  const server = new GdbServer(target);
  const address = await server.listen("127.0.0.1:0"); // { host: "127.0.0.1", port: 4xxxx }
  // Now: gdb -ex 'set architecture i386:x86-64' -ex 'target remote 127.0.0.1:PORT'
  // README-EXAMPLE-END
  return { server, address, memory, slots, regs: () => regs };
}

it("the README's example is the code this test runs", () => {
  const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
  const block = /```ts\n([\s\S]*?)```/.exec(readme)?.[1];
  const src = readFileSync(new URL(import.meta.url), "utf8");
  const body = src.slice(src.indexOf("// README-EXAMPLE-START\n") + 24, src.indexOf("  // README-EXAMPLE-END"));
  const dedent = (s: string) => s.replace(/^ {2}/gm, "").trim();
  expect(block).toBeDefined();
  // The README block adds only its import lines and a closing comment.
  expect(block!.replace(/^import[^\n]*\n/gm, "").replace(/\n\/\/ Later:[^\n]*\n?$/, "").trim()).toBe(dedent(body));
});

it("the README's example serves the real gdb", async () => {
  const { server, address, memory, slots } = await example();
  expect(address).toMatchObject({ host: "127.0.0.1" });
  const port = "port" in address ? address.port : 0;
  try {
    const { output } = await runGdb(`127.0.0.1:${port}`, ["p/x $pc", "p $cr0", "stepi", "p/x $pc", "set {int}0x2000 = 0x12345678", "x/1xw 0x2000", "x/1xb 0x20000", "hbreak *0x1100", "info threads", "detach"], {
      architecture: "i386:x86-64",
    });
    expect(printed(output, 1)).toBe("0x1000");
    expect(printed(output, 2)).toBe("[ PE ET PG ]");
    expect(printed(output, 3)).toBe("0x1001");
    expect(memory.readUInt32LE(0x2000)).toBe(0x12345678);
    expect(output).toMatch(/0x2000:\s+0x12345678/);
    expect(output).toContain("Cannot access memory at address 0x20000");
    expect(output).toMatch(/\* 1\s+Thread 1 \(vCPU 0\)/);
    expect(output).toContain("detached");
    expect(slots.used).toBe(0);
  } finally {
    await server.close();
  }
});
