import { encodeGPacket, escapeBinary, framePacket, fromHex, GdbSignal, registerLayout, type StopEvent, targetDescriptionXml, toHex } from "@tsvmm/gdbstub";
import { describe, expect, it } from "vitest";
import { Client } from "./helpers/client.js";
import { INSN, insn, Op, SimTarget } from "./helpers/sim-target.js";

function program(): SimTarget {
  const sim = new SimTarget();
  sim.load(0x1000, insn(Op.NOP), insn(Op.NOP), insn(Op.STORE8, 0x2a, 0x3000), insn(Op.INC_RAX), insn(Op.LOAD8, 0, 0x3000), insn(Op.EXIT, 3));
  sim.load(0x1800, insn(Op.JMP, 0, 0x1800));
  sim.regs[1] = { ...sim.regs[1]!, rip: 0x1800n };
  return sim;
}

const hex = (s: string): string => toHex(Buffer.from(s));

describe("GdbSession: handshake and queries", () => {
  it("acks every good packet, nacks a bad checksum, and stops acking after QStartNoAckMode", async () => {
    const c = new Client(program());
    c.bytes("$qC#00");
    await c.settle();
    expect(c.takeAcks()).toBe("-");
    expect(await c.request("qC")).toBe("QC1");
    expect(c.takeAcks()).toBe("+");
    expect(await c.request("QStartNoAckMode")).toBe("OK");
    expect(c.takeAcks()).toBe("+");
    expect(await c.request("qC")).toBe("QC1");
    c.bytes("$qC#00");
    await c.settle();
    expect(c.takeAcks()).toBe("");
  });

  it("retransmits its last reply on '-' a bounded number of times", async () => {
    const c = new Client(program());
    expect(await c.request("qC")).toBe("QC1");
    c.bytes("-");
    expect(await c.next()).toBe("QC1");
    c.bytes("-----");
    await c.settle();
    const replies = c.events.filter((e) => e.type === "packet").length;
    expect(replies).toBe(3); // 4 retransmits in all, the first already taken
    c.bytes("+-");
    await c.settle();
    expect(c.events.filter((e) => e.type === "packet").length).toBe(3);
  });

  it("answers qSupported with its features and learns gdb's swbreak/hwbreak", async () => {
    const c = new Client(program());
    const r = await c.request("qSupported:multiprocess+;swbreak+;hwbreak+;xmlRegisters=i386");
    expect(r.split(";").sort()).toEqual(["PacketSize=4000", "QStartNoAckMode+", "hwbreak+", "qXfer:features:read+", "swbreak+", "vContSupported+"]);
  });

  it("serves target.xml in pieces with m/l and escapes, and refuses other annexes", async () => {
    const c = new Client(program());
    const doc = targetDescriptionXml("i386:x86-64");
    let got = "";
    for (let off = 0; ; ) {
      const r = await c.request(`qXfer:features:read:target.xml:${off.toString(16)},100`);
      got += r.slice(1);
      off += r.length - 1;
      if (r[0] === "l") break;
      expect(r[0]).toBe("m");
    }
    expect(got).toBe(doc);
    expect(await c.request(`qXfer:features:read:target.xml:${doc.length.toString(16)},100`)).toBe("l");
    expect(await c.request("qXfer:features:read:other.xml:0,100")).toBe("E00");
  });

  it("lists one thread per vCPU, names them, and checks T", async () => {
    const c = new Client(program());
    expect(await c.request("qfThreadInfo")).toBe("m1,2");
    expect(await c.request("qsThreadInfo")).toBe("l");
    expect(await c.request("qThreadExtraInfo,2")).toBe(hex("sim vCPU 1"));
    expect(await c.request("T1")).toBe("OK");
    expect(await c.request("T2")).toBe("OK");
    expect(await c.request("T3")).toBe("E01");
    expect(await c.request("T0")).toBe("E01");
    expect(await c.request("qAttached")).toBe("1");
    expect(await new Client(program(), { attached: false }).request("qAttached:1")).toBe("0");
  });

  it("answers the empty packet to what it does not know", async () => {
    const c = new Client(program());
    for (const p of ["vMustReplyEmpty", "qTStatus", "bogus", "Qfoo", "vFile:open:", "!", "R00", "qRcmd,68656c70"]) expect(await c.request(p)).toBe("");
    expect(await c.request("qSymbol::")).toBe("OK");
  });

  it("reports the halt it found on attach for ?", async () => {
    const sim = program();
    const c = new Client(sim);
    expect(await c.request("?")).toBe("T05thread:1;");
    expect(sim.calls[0]).toBe("halt");
  });
});

describe("GdbSession: registers and memory", () => {
  it("g/G/p/P follow the layout; H g picks the vCPU", async () => {
    const sim = program();
    const c = new Client(sim);
    const layout = registerLayout("i386:x86-64");
    const g = await c.request("g");
    expect(g.length).toBe(layout.gPacketBytes * 2);
    expect(g).toBe(encodeGPacket("i386:x86-64", sim.regs[0]!));
    const rip = layout.registers.find((r) => r.name === "rip")!;
    expect(await c.request(`p${rip.regnum.toString(16)}`)).toBe("0010000000000000");
    expect(await c.request("Hg2")).toBe("OK");
    expect(await c.request(`p${rip.regnum.toString(16)}`)).toBe("0018000000000000");
    expect(await c.request(`P${rip.regnum.toString(16)}=0818000000000000`)).toBe("OK");
    expect(sim.regs[1]!.rip).toBe(0x1808n);
    // G with rax changed.
    const g2 = `2301000000000000${g.slice(16)}`;
    expect(await c.request("Hg1")).toBe("OK");
    expect(await c.request(`G${g2}`)).toBe("OK");
    expect(sim.regs[0]!.rax).toBe(0x123n);
    expect(sim.regs[0]!.rip).toBe(0x1000n);
    expect(await c.request("p1000")).toBe("E16");
    expect(await c.request("P10=00")).toBe("E16");
    expect(await c.request("Gzz")).toBe("E16");
    expect(await c.request("Hg3")).toBe("E01");
    expect(await c.request("Hg-1")).toBe("E01");
    expect(await c.request("Hc-1")).toBe("OK");
  });

  it("m/M/X read and write memory; faults and bad lengths are error packets", async () => {
    const sim = program();
    const c = new Client(sim);
    expect(await c.request("m1010,8")).toBe(toHex(insn(Op.STORE8, 0x2a, 0x3000)));
    expect(await c.request("M3000,3:a1b2c3")).toBe("OK");
    expect([...sim.memory.subarray(0x3000, 0x3003)]).toEqual([0xa1, 0xb2, 0xc3]);
    const bin = Buffer.from([0x23, 0x24, 0x7d, 0x2a, 0x03, 0x00]);
    expect(await c.request(Buffer.concat([Buffer.from("X3100,6:"), escapeBinary(bin)]))).toBe("OK");
    expect([...sim.memory.subarray(0x3100, 0x3106)]).toEqual([...bin]);
    expect(await c.request("X3100,0:")).toBe("OK");
    // A read running off the end of memory returns what exists; one wholly outside is an error.
    expect(await c.request("mfffe,4")).toBe("0000");
    expect(await c.request("m10000,4")).toBe("E0e");
    expect(await c.request("M10000,1:00")).toBe("E0e");
    expect(await c.request("M3000,2:00")).toBe("E16");
    expect(await c.request("X3000,2:\x01")).toBe("E16");
    expect(await c.request("m3000")).toBe("E16");
    expect(await c.request("mzz,1")).toBe("E16");
    // A huge read is cut to what a reply can carry.
    expect((await c.request("m0,ffffffff")).length).toBeLessThanOrEqual(0x4000);
  });
});

describe("GdbSession: breakpoints and execution", () => {
  it("Z/z reach the target with kind, address and length; 'no-slots' is an error, 'unsupported' empty", async () => {
    const sim = new SimTarget({ softwareBreakpoints: false });
    const c = new Client(sim);
    expect(await c.request("Z0,1000,1")).toBe("OK");
    expect(await c.request("Z1,1008,1")).toBe("OK");
    expect(await c.request("Z2,3000,4")).toBe("OK");
    expect(await c.request("Z4,3008,8")).toBe("OK");
    expect(await c.request("Z1,1010,1")).toBe("E1c");
    expect(await c.request("Z3,3000,1")).toBe("");
    expect(await c.request("z2,3000,4")).toBe("OK");
    expect(await c.request("Z0,1010,1;X3,220c")).toBe("OK"); // conditions are ignored
    expect(await c.request("z0,1234,1")).toBe("E16");
    expect(await c.request("Z5,0,1")).toBe("E16");
    expect(await c.request("Z0,1000")).toBe("E16");
    expect(sim.calls.filter((x) => x.startsWith("set"))).toEqual(["set sw 1000 1", "set hw 1008 1", "set write 3000 4", "set access 3008 8", "set hw 1010 1", "set read 3000 1", "set sw 1010 1"]);
  });

  it("vCont? lists c C s S t; vCont actions map to per-vCPU resume actions (leftmost wins)", async () => {
    const sim = program();
    const c = new Client(sim);
    expect(await c.request("vCont?")).toBe("vCont;c;C;s;S;t");
    expect(await c.request("vCont;s:1;c")).toBe("T05thread:1;");
    expect(sim.calls.at(-1)).toBe("resume 0:step,1:continue");
    expect(sim.regs[0]!.rip).toBe(0x1000n + BigInt(INSN));
    expect(await c.request("vCont;S0b:1;t:2")).toBe("T05thread:1;");
    expect(sim.calls.at(-1)).toBe("resume 0:step/11");
    expect(sim.signalsDelivered).toEqual([11]);
    expect(await c.request("vCont;t")).toBe("E16");
    expect(await c.request("vCont;x")).toBe("E16");
    expect(await c.request("vCont;c:9")).toBe("E16");
  });

  it("s, S, c and C with an address and a signal; the stop carries swbreak when gdb asked for it", async () => {
    const sim = program();
    const c = new Client(sim);
    await c.request("qSupported:swbreak+;hwbreak+");
    expect(await c.request("Hc1")).toBe("OK");
    expect(await c.request("s1008")).toBe("T05thread:1;");
    expect(sim.regs[0]!.rip).toBe(0x1010n);
    expect(await c.request("Z0,1018,1")).toBe("OK");
    expect(await c.request("Hc-1")).toBe("OK");
    expect(await c.request("C05")).toBe("T05thread:1;swbreak:;");
    expect(sim.calls.at(-1)).toBe("resume 0:continue/5,1:continue/5");
    expect(await c.request("z0,1018,1")).toBe("OK");
    expect(await c.request("S00;1018")).toBe("T05thread:1;");
    expect(await c.request("c")).toBe("W03");
    expect(await c.request("?")).toBe("W03");
    expect(await c.request("g")).toBe("E03");
    expect(await c.request("vMustReplyEmpty")).toBe("");
  });

  it("a watchpoint stop names the address; without hwbreak+ the cause is left out", async () => {
    const sim = new SimTarget({ softwareBreakpoints: false, vcpus: 1 });
    sim.load(0x1000, insn(Op.NOP), insn(Op.STORE8, 1, 0x3002), insn(Op.LOAD8, 0, 0x3006), insn(Op.EXIT, 0));
    const c = new Client(sim);
    expect(await c.request("Z2,3000,4")).toBe("OK");
    // DR6 names the slot, not the byte: the report is the slot's (aligned) address, inside gdb's range.
    expect(await c.request("vCont;c")).toBe("T05thread:1;watch:3000;");
    expect(await c.request("z2,3000,4")).toBe("OK");
    expect(await c.request("Z4,3006,1")).toBe("OK");
    expect(await c.request("vCont;c")).toBe("T05thread:1;awatch:3006;");
    sim.regs[0] = { ...sim.regs[0]!, rip: 0x1000n };
    expect(await c.request("z4,3006,1")).toBe("OK");
    expect(await c.request("Z1,1008,1")).toBe("OK");
    expect(await c.request("vCont;c")).toBe("T05thread:1;");
  });

  it("Ctrl-C while running interrupts the target; outside a run it is ignored", async () => {
    const sim = program();
    sim.regs[0] = { ...sim.regs[0]!, rip: 0x1800n };
    const c = new Client(sim);
    c.bytes("\x03");
    await c.settle();
    expect(sim.calls).not.toContain("interrupt");
    c.send("vCont;c");
    await c.settle();
    c.bytes("\x03");
    expect(await c.next()).toBe(`T${GdbSignal.INT.toString(16).padStart(2, "0")}thread:1;`);
    expect(sim.calls).toContain("interrupt");
  });

  it("Ctrl-C right behind a resume in the same chunk still stops it", async () => {
    const sim = program();
    sim.regs[0] = { ...sim.regs[0]!, rip: 0x1800n };
    const c = new Client(sim);
    c.bytes(Buffer.concat([framePacket("vCont;c"), Buffer.from([3])]));
    expect(await c.next()).toBe("T02thread:1;");
    // An interrupt that found no resume to stop is not kept for a later one.
    c.bytes(Buffer.concat([framePacket("qC"), Buffer.from([3])]));
    expect(await c.next()).toBe("QC1");
    c.send("vCont;s:1");
    expect(await c.next()).toBe("T05thread:1;");
  });

  it("a target that throws gets error replies, never an exception out of receive", async () => {
    const sim = program();
    sim.readRegisters = () => {
      throw new Error("boom");
    };
    sim.resume = () => Promise.reject(new Error("no run"));
    const c = new Client(sim);
    expect(await c.request("g")).toBe("E01");
    expect(await c.request("vCont;c")).toBe("E01");
    expect(c.log.join("\n")).toContain("boom");
  });
});

describe("GdbSession: leaving", () => {
  it("D removes what gdb left inserted, detaches and says OK", async () => {
    const sim = program();
    const c = new Client(sim);
    expect(await c.request("Z0,1018,1")).toBe("OK");
    expect(await c.request("D")).toBe("OK");
    expect(sim.calls.slice(-2)).toEqual(["remove sw 1018 1", "detach"]);
    await new Promise((r) => setTimeout(r, 50));
    expect(sim.exitStatus).toBe(3);
  });

  it("k kills without a reply and closes; vKill replies OK", async () => {
    const sim = program();
    const c = new Client(sim);
    c.send("k");
    await c.settle();
    expect(sim.killed).toBe(true);
    expect(c.closed).toBe(true);
    const sim2 = program();
    const c2 = new Client(sim2);
    expect(await c2.request("vKill;1")).toBe("OK");
    expect(sim2.killed).toBe(true);
    expect(c2.closed).toBe(true);
  });

  it("a lost connection during a run interrupts, removes breakpoints and detaches", async () => {
    const sim = program();
    sim.regs[0] = { ...sim.regs[0]!, rip: 0x1800n };
    const c = new Client(sim);
    expect(await c.request("Z1,1000,1")).toBe("OK");
    c.send("vCont;c");
    await c.settle();
    await c.session.dispose();
    expect(sim.calls.slice(-3)).toEqual(["interrupt", "remove hw 1000 1", "detach"]);
    expect(sim.debugRegs.used).toBe(0);
  });

  it("an oversized or badly run-length-encoded packet is acked and answered with an error", async () => {
    const c = new Client(program(), { maxPacketSize: 64 });
    expect(await c.request(`M0,40:${"00".repeat(0x40)}`)).toBe("E16");
    expect(await c.request("g*")).toBe("E16");
    expect(await c.request("qC")).toBe("QC1");
    expect(c.session.stats.oversized).toBe(1);
  });
});

describe("GdbSession: stop replies", () => {
  const cases: [StopEvent, string][] = [
    [{ kind: "stopped", vcpu: 1, signal: 5, cause: { type: "hwbreak" } }, "T05thread:2;hwbreak:;"],
    [{ kind: "stopped", vcpu: 0, signal: 5, cause: { type: "rwatch", address: 0xdeadn } }, "T05thread:1;rwatch:dead;"],
    [{ kind: "stopped", vcpu: 0, signal: 11 }, "T0bthread:1;"],
    [{ kind: "exited", status: 0x101 }, "W01"],
    [{ kind: "terminated", signal: 9 }, "X09"],
  ];
  for (const [ev, want] of cases) {
    it(`${JSON.stringify(ev, (_k, v) => (typeof v === "bigint" ? `0x${v.toString(16)}` : v))} → ${want}`, async () => {
      const sim = program();
      sim.halt = async () => ev;
      const c = new Client(sim);
      await c.request("qSupported:swbreak+;hwbreak+");
      expect(await c.request("?")).toBe(want);
    });
  }
  it("fromHex of a g reply gives back the bytes gdb will read", async () => {
    const c = new Client(program());
    const bytes = fromHex(await c.request("g"));
    expect(bytes.readBigUInt64LE(registerLayout("i386:x86-64").registers.find((r) => r.name === "cr3")!.offset)).toBe(0x9000n);
  });
});
