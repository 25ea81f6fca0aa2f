import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { framePacket, GdbServer, isLoopbackHost, parseListenAddress } from "@tsvmm/gdbstub";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { printed, runGdb } from "./helpers/gdb.js";
import { insn, Op, SimTarget } from "./helpers/sim-target.js";

const dir = mkdtempSync(join(tmpdir(), "gdbstub-server-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const servers: GdbServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

function machine(): SimTarget {
  const sim = new SimTarget({ vcpus: 1 });
  sim.load(0x1000, insn(Op.NOP), insn(Op.NOP), insn(Op.EXIT, 9));
  return sim;
}

async function tcp(sim: SimTarget, o: ConstructorParameters<typeof GdbServer>[1] = {}): Promise<{ server: GdbServer; port: number }> {
  const server = new GdbServer(sim, o);
  servers.push(server);
  const a = await server.listen("127.0.0.1:0");
  if (!("port" in a)) throw new Error("no port");
  return { server, port: a.port };
}

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, "127.0.0.1", () => resolve(s));
    s.on("error", reject);
  });
}

// A socket only sees the peer's FIN when it reads, so resume it first.
const closed = (s: Socket): Promise<void> =>
  new Promise((r) => {
    if (s.closed) return r();
    s.once("close", () => r());
    s.resume();
  });

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not reached");
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function reply(s: Socket, payload: string): Promise<string> {
  return new Promise((resolve) => {
    let buf = "";
    const on = (d: Buffer): void => {
      buf += d.toString("latin1");
      const m = /\$([^#]*)#[0-9a-f]{2}/.exec(buf);
      if (m) {
        s.off("data", on);
        resolve(m[1]!);
      }
    };
    s.on("data", on);
    s.write(framePacket(payload));
  });
}

function handles(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const h of process.getActiveResourcesInfo()) if (/TCP|Pipe|Timeout|Immediate/.test(h)) out[h] = (out[h] ?? 0) + 1;
  return out;
}

describe("listen addresses", () => {
  it("parses host:port, [v6]:port, :port and Unix paths", () => {
    expect(parseListenAddress("127.0.0.1:1234")).toEqual({ host: "127.0.0.1", port: 1234 });
    expect(parseListenAddress(":1234")).toEqual({ host: "127.0.0.1", port: 1234 });
    expect(parseListenAddress("[::1]:99")).toEqual({ host: "::1", port: 99 });
    expect(parseListenAddress("localhost:0")).toEqual({ host: "localhost", port: 0 });
    expect(parseListenAddress("unix:/run/g.sock")).toEqual({ path: "/run/g.sock" });
    expect(parseListenAddress("/run/g.sock")).toEqual({ path: "/run/g.sock" });
    for (const bad of ["1234", "host:", "h:70000", "a:b:c"]) expect(() => parseListenAddress(bad)).toThrow(expect.objectContaining({ code: "GDBSTUB_INVALID_ARGUMENT" }));
  });

  it("knows loopback from the rest", () => {
    for (const h of ["127.0.0.1", "127.8.9.10", "::1", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1", "localhost"]) expect([h, isLoopbackHost(h)]).toEqual([h, true]);
    for (const h of ["0.0.0.0", "::", "10.0.0.1", "192.168.1.1", "128.0.0.1", "example.com", "localhost.evil.com", "::2"]) expect([h, isLoopbackHost(h)]).toEqual([h, false]);
  });

  it("refuses a non-loopback address without allowRemote, and binds one with it", async () => {
    for (const a of ["0.0.0.0:0", "[::]:0", "10.1.2.3:1234", "example.com:1"]) {
      const s = new GdbServer(machine());
      await expect(s.listen(a)).rejects.toMatchObject({ code: "GDBSTUB_REMOTE_REFUSED" });
    }
    const s = new GdbServer(machine(), { allowRemote: true });
    servers.push(s);
    const a = await s.listen("0.0.0.0:0");
    expect(a).toMatchObject({ host: "0.0.0.0" });
    await expect(s.listen("127.0.0.1:0")).rejects.toMatchObject({ code: "GDBSTUB_SERVER_STATE" });
  });
});

describe("GdbServer", () => {
  it("serves gdb over a Unix socket and removes the socket file on close", async () => {
    const sim = machine();
    const path = join(dir, "gdb.sock");
    const server = new GdbServer(sim);
    expect(await server.listen(`unix:${path}`)).toEqual({ path });
    const { output } = await runGdb(path, ["p/x $pc", "stepi", "p/x $pc", "detach"], { architecture: "i386:x86-64" });
    expect(printed(output, 1)).toBe("0x1000");
    expect(printed(output, 2)).toBe("0x1008");
    await server.close();
    expect(existsSync(path)).toBe(false);
  });

  it("serves one debugger at a time: a second connection is closed at once", async () => {
    const { server, port } = await tcp(machine());
    const first = await open(port);
    expect(await reply(first, "qC")).toBe("QC1");
    const second = await open(port);
    await closed(second);
    expect(server.connected).toBe(true);
    expect(await reply(first, "?")).toBe("T05thread:1;");
    first.destroy();
    await closed(first);
    // The next debugger gets a fresh session.
    // (once the server has seen the first one go: until then a newcomer is a second debugger)
    await until(() => !server.connected);
    const third = await open(port);
    expect(await reply(third, "qC")).toBe("QC1");
    third.destroy();
  });

  it("close() ends the connection, detaches the target and leaves no socket or timer behind", async () => {
    const before = handles();
    const sim = machine();
    const events: string[] = [];
    const { server, port } = await tcp(sim, { onConnect: () => events.push("connect"), onDisconnect: () => events.push("disconnect") });
    const s = await open(port);
    expect(await reply(s, "Z1,1008,1")).toBe("OK");
    await server.close();
    await closed(s);
    expect(events).toEqual(["connect", "disconnect"]);
    expect(sim.calls.slice(-2)).toEqual(["remove hw 1008 1", "detach"]);
    await new Promise((r) => setTimeout(r, 20));
    // Nothing listens any more, and no socket or timer of ours is left (the test runner's own
    // handles come and go, so compare "no more than before").
    await expect(open(port)).rejects.toMatchObject({ code: "ECONNREFUSED" });
    const after = handles();
    for (const k of Object.keys(after)) expect([k, after[k]! <= (before[k] ?? 0)]).toEqual([k, true]);
  });

  it("survives binary noise, garbage, bad checksums and oversized packets, then serves the real gdb", async () => {
    const sim = new SimTarget({ vcpus: 1 });
    sim.load(0x1000, insn(Op.JMP, 0, 0x1000));
    const { server, port } = await tcp(sim);
    const s = await open(port);
    let received = "";
    s.on("data", (d: Buffer) => {
      received += d.toString("latin1");
    });
    const noise = Buffer.alloc(1 << 16);
    // No '$' in the noise: random bytes can frame a valid command (say "s"), which is not noise.
    for (let i = 0; i < noise.length; i++) noise[i] = ((i * 2654435761) >>> 24) % 0x24;
    s.write(noise);
    s.write(`$${"A".repeat(100_000)}#00`);
    s.write(framePacket(`m${"1".repeat(5000)},1`));
    s.write("$g#zz$$$###+-\x03");
    s.write(framePacket("qC"));
    // Through all of that the session answered in protocol and still answers.
    await until(() => received.includes("$QC1#"));
    expect(received).toContain("-"); // the bad checksums were nacked
    expect(received).toContain("$E16#"); // the oversized number got an error reply
    s.destroy();
    await closed(s);
    await until(() => !server.connected);
    // The lost connection detached the target, which spins on; gdb attaches to it.
    const { output } = await runGdb(`127.0.0.1:${port}`, ["p/x $pc", "detach"], { architecture: "i386:x86-64" });
    expect(printed(output, 1)).toBe("0x1000");
    expect(sim.calls.filter((c) => c === "halt")).toHaveLength(2);
  });

  it("cuts off a peer that sends requests but never reads the replies", async () => {
    const { server, port } = await tcp(machine());
    const s = await open(port);
    s.pause();
    // 16 KiB replies, a batch at a time (the session queues at most 32 requests), until the
    // kernel's socket buffers are full and the server's own pending output passes its limit.
    const batch = Buffer.concat(Array.from({ length: 16 }, () => framePacket("m0,2000")));
    for (let i = 0; i < 400 && server.connected; i++) {
      s.write(batch);
      await new Promise((r) => setTimeout(r, 5));
    }
    await until(() => server.connected === false);
    s.destroy();
    // Still listening: a well-behaved debugger gets in.
    const t = await open(port);
    expect(await reply(t, "qC")).toBe("QC1");
    t.destroy();
  });
});
