import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import {
  DEBUG_EXIT_PORT,
  DEBUG_EXIT_SIZE,
  DebugExit,
  FwCfg,
  MmioBus,
  PioBus,
  parseTraceLine,
  replay,
  TraceError,
  TraceRecorder,
  Uart16550,
} from "@tsvmm/devices";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";

const COM1 = 0x3f8;
const dir = mkdtempSync(join(tmpdir(), "tsvmm-trace-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A fresh machine: COM1 + debug-exit on a PIO bus, with what they produce collected. */
function machine() {
  const out: number[] = [];
  const exits: number[] = [];
  const uart = new Uart16550({ name: "com1", output: (b) => out.push(b) });
  const dbg = new DebugExit({ onExit: (c) => exits.push(c) });
  const pio = new PioBus();
  pio.register(COM1, 8, uart);
  pio.register(DEBUG_EXIT_PORT, DEBUG_EXIT_SIZE, dbg);
  return { pio, uart, out, exits };
}

/** A guest session, as a guest driver would do it: init, probe, print, read input, exit. */
function guestSession(m: ReturnType<typeof machine>, rec: TraceRecorder, vcpu: number): void {
  const inb = (r: number) => m.pio.readValue(COM1 + r, 1, vcpu);
  const outb = (r: number, v: number) => m.pio.writeValue(COM1 + r, 1, v, vcpu);
  outb(1, 0x00);
  outb(3, 0x80);
  outb(0, 0x01);
  outb(1, 0x00);
  outb(3, 0x03);
  outb(2, 0xc7);
  outb(7, 0xa5);
  inb(7);
  outb(4, 0x1a);
  inb(6);
  outb(4, 0x0b);
  inb(2);
  for (const c of "hello\n") {
    while (!(inb(5) & 0x20)) {}
    outb(0, c.charCodeAt(0));
  }
  // Host input arrives between exits; the recorder keeps it in order.
  rec.recordInput("com1", "ok");
  m.uart.queueInput("ok");
  let got = "";
  while (inb(5) & 0x01) got += String.fromCharCode(inb(0));
  for (const c of got) outb(0, c.charCodeAt(0));
  rec.recordExit(vcpu, "hlt");
  m.pio.writeValue(DEBUG_EXIT_PORT, 4, 0x10, vcpu);
}

async function recordSession(file: string) {
  const m = machine();
  const rec = TraceRecorder.open(file);
  rec.observe(m.pio);
  guestSession(m, rec, 1);
  await rec.close();
  return m;
}

describe("TraceRecorder", () => {
  it("buffers lines and writes them on close", async () => {
    const file = join(dir, "buffered.jsonl");
    const m = machine();
    const rec = TraceRecorder.open(file);
    rec.observe(m.pio);
    m.pio.writeValue(COM1, 1, 0x41);
    // Nothing reaches the file before the buffer fills or the recorder closes.
    await new Promise((r) => setTimeout(r, 20));
    expect(statSync(file).size).toBe(0);
    await rec.close();
    const lines = readFileSync(file, "utf8").trimEnd().split("\n");
    expect(lines).toHaveLength(2);
    expect(JSON.parse(lines[0]!)).toMatchObject({ kind: "header", version: 1 });
    expect(JSON.parse(lines[1]!)).toMatchObject({ kind: "io", vcpu: 0, dir: "write", addr: 0x3f8, size: 1, data: "41" });
    expect(() => rec.recordExit(0, "hlt")).toThrow(expect.objectContaining({ code: "TRACE_CLOSED" }));
  });

  it("writes a chunk when the buffer fills, and appends to an existing file", async () => {
    const file = join(dir, "append.jsonl");
    writeFileSync(file, "");
    const chunks: string[] = [];
    const sink = new PassThrough();
    sink.on("data", (c: Buffer) => chunks.push(c.toString()));
    const rec = new TraceRecorder(sink, { bufferBytes: 200 });
    for (let i = 0; i < 10; i++) rec.recordIo(0, 0x80, 1, true, Uint8Array.of(i));
    await new Promise((r) => setImmediate(r));
    expect(chunks.length).toBeGreaterThan(0);
    await rec.close();
    const all = chunks.join("").trimEnd().split("\n");
    expect(all).toHaveLength(11);
    for (let n = 0; n < 2; n++) {
      const r = TraceRecorder.open(file);
      r.recordExit(0, "shutdown", { reason: "triple fault" });
      await r.close();
    }
    const lines = readFileSync(file, "utf8").trimEnd().split("\n").map((l) => JSON.parse(l));
    expect(lines.map((l) => l.kind)).toEqual(["header", "shutdown", "header", "shutdown"]);
    expect(lines[1].info).toEqual({ reason: "triple fault" });
  });

  it("timestamps come from the clock, relative to the start", () => {
    let now = 1000n;
    const sink = new PassThrough();
    const rec = new TraceRecorder(sink, { clock: () => now });
    now = 1500n;
    rec.recordMmio(2, 0xfee000b0n, true, Uint8Array.of(0, 0, 0, 0));
    rec.flush();
    const line = (sink.read() as Buffer).toString().split("\n")[1]!;
    expect(JSON.parse(line)).toEqual({ kind: "mmio", t: 500, vcpu: 2, dir: "write", addr: 0xfee000b0, size: 4, data: "00000000" });
  });

  it("string I/O keeps size and count; data must match them", () => {
    const sink = new PassThrough();
    const rec = new TraceRecorder(sink);
    rec.recordIo(0, 0x3f8, 1, true, Buffer.from("abc"), 3);
    expect(() => rec.recordIo(0, 0x3f8, 2, true, Buffer.from("abc"), 1)).toThrow(
      expect.objectContaining({ code: "TRACE_INVALID_EVENT" }),
    );
    expect(() => rec.recordExit(0, "io")).toThrow(TraceError);
    rec.flush();
    const line = (sink.read() as Buffer).toString().split("\n")[1]!;
    expect(JSON.parse(line)).toMatchObject({ size: 1, count: 3, data: "616263" });
  });

  it("a path that cannot be opened fails at open(), before anything is recorded", () => {
    expect(() => TraceRecorder.open(join(dir, "no-such-dir", "t.jsonl"))).toThrow(expect.objectContaining({ code: "TRACE_OPEN_FAILED" }));
    expect(() => TraceRecorder.open(dir)).toThrow(expect.objectContaining({ code: "TRACE_OPEN_FAILED" }));
  });

  it("a sink that fails (a full disk: /dev/full) is reported to onError and makes close() reject", async () => {
    const errors: string[] = [];
    const rec = TraceRecorder.open("/dev/full", { onError: (e) => errors.push(e.code) });
    for (let i = 0; i < 100; i++) rec.recordExit(0, "hlt");
    await expect(rec.close()).rejects.toMatchObject({ code: "TRACE_WRITE_FAILED", message: expect.stringMatching(/ENOSPC/) });
    expect(errors).toEqual(["TRACE_WRITE_FAILED"]);
  });
});

describe("replay", () => {
  it("replays a recorded UART + debug-exit session into fresh devices with the same output", async () => {
    const file = join(dir, "session.jsonl");
    const original = await recordSession(file);
    expect(Buffer.from(original.out).toString()).toBe("hello\nok");
    expect(original.exits).toEqual([0x21]);

    const fresh = machine();
    const r = replay(file, { pio: fresh.pio });
    expect(r.divergences).toEqual([]);
    expect(r.skipped).toEqual([]);
    expect(r.output.get("com1")?.toString()).toBe("hello\nok");
    expect(r.exits.map((e) => [e.device, e.code])).toEqual([["debug-exit", 0x21]]);
    expect(r.otherExits).toBe(1);
    // The devices' own callbacks saw the same thing, and the replay taps are gone afterwards.
    expect(fresh.out).toEqual(original.out);
    expect(fresh.exits).toEqual(original.exits);
    fresh.pio.writeValue(COM1, 1, 0x21);
    expect(r.output.get("com1")?.toString()).toBe("hello\nok");
    // Every recorded read is reported with what the device answered: compare against the file.
    const recordedReads = readFileSync(file, "utf8")
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l))
      .filter((e) => e.dir === "read")
      .map((e) => e.data);
    expect(r.reads.map((x) => x.data)).toEqual(recordedReads);
    expect(r.reads.every((x) => x.kind === "io")).toBe(true);
  });

  it("reports a divergence where the device now answers differently", async () => {
    const file = join(dir, "diverge.jsonl");
    await recordSession(file);
    // Same trace, but the guest's scratch-register readback was recorded as 0x5a.
    const lines = readFileSync(file, "utf8").split("\n");
    const i = lines.findIndex((l) => l.includes('"addr":1023') && l.includes('"dir":"read"'));
    lines[i] = lines[i]!.replace('"data":"a5"', '"data":"5a"');
    const r = replay(lines, { pio: machine().pio });
    expect(r.divergences).toEqual([{ line: i + 1, kind: "io", addr: 0x3ff, size: 1, recorded: "5a", replayed: "a5" }]);
  });

  it("finds a device-model change: fw_cfg with another CPU count", () => {
    const pio = new PioBus();
    pio.register(0x510, 2, new FwCfg({ cpus: 4 }));
    const sink = new PassThrough();
    const rec = new TraceRecorder(sink);
    rec.observe(pio);
    pio.writeValue(0x510, 2, 5);
    pio.readValue(0x511, 1);
    rec.flush();
    const lines = (sink.read() as Buffer).toString().split("\n");
    const other = new PioBus();
    other.register(0x510, 2, new FwCfg({ cpus: 2 }));
    const r = replay(lines, { pio: other });
    expect(r.divergences).toMatchObject([{ addr: 0x511, recorded: "04", replayed: "02" }]);
  });

  it("replays string I/O element by element, MMIO on the MMIO bus, and skips what has no bus", () => {
    const m = machine();
    const mmio = new MmioBus({ defaultHandler: { read: (_a, d) => d.fill(0x11), write: () => {} } });
    const lines = [
      JSON.stringify({ kind: "header", version: 1, startedAt: "x" }),
      JSON.stringify({ kind: "io", t: 0, vcpu: 0, dir: "write", addr: COM1, size: 1, count: 3, data: "787978" }),
      JSON.stringify({ kind: "mmio", t: 1, vcpu: 0, dir: "read", addr: 0xd0000000, size: 4, data: "11111111" }),
      "",
      JSON.stringify({ kind: "input", t: 2, device: "com9", data: "00" }),
    ];
    const r = replay(lines, { pio: m.pio, mmio });
    expect(Buffer.from(m.out).toString()).toBe("xyx");
    expect(r.accesses).toBe(4);
    expect(r.divergences).toEqual([]);
    expect(r.skipped).toEqual([{ line: 5, kind: "input", reason: 'no UART named "com9"' }]);
    const r2 = replay(lines.slice(0, 3), { pio: m.pio });
    expect(r2.skipped).toMatchObject([{ line: 3, kind: "mmio" }]);
  });

  it("rejects malformed lines with their line number", () => {
    const good = JSON.stringify({ kind: "io", t: 0, vcpu: 0, dir: "read", addr: 1, size: 1, data: "00" });
    const cases: [string, string][] = [
      ["{not json", "TRACE_BAD_LINE"],
      ["[1,2]", "TRACE_BAD_LINE"],
      ['{"t":1}', "TRACE_INVALID_EVENT"],
      ['{"kind":"header","version":2}', "TRACE_INVALID_EVENT"],
      [good.replace('"read"', '"in"'), "TRACE_INVALID_EVENT"],
      [good.replace('"addr":1', '"addr":70000'), "TRACE_INVALID_EVENT"],
      [good.replace('"size":1', '"size":0'), "TRACE_INVALID_EVENT"],
      [good.replace('"00"', '"0"'), "TRACE_INVALID_EVENT"],
      [good.replace('"00"', '"zz"'), "TRACE_INVALID_EVENT"],
      ['{"kind":"input","device":"c","data":1}', "TRACE_INVALID_EVENT"],
    ];
    for (const [bad, code] of cases) {
      let err: unknown;
      try {
        replay([good, bad], { pio: new PioBus() });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(TraceError);
      expect(err).toMatchObject({ code, line: 2 });
    }
  });

  it("what the recorder writes, the parser reads back", () => {
    fc.assert(
      fc.property(
        fc.record({
          vcpu: fc.integer({ min: 0, max: 255 }),
          port: fc.integer({ min: 0, max: 0xffff }),
          size: fc.constantFrom(1, 2, 4),
          count: fc.integer({ min: 1, max: 4 }),
          write: fc.boolean(),
          seed: fc.uint8Array({ minLength: 16, maxLength: 16 }),
        }),
        (a) => {
          const sink = new PassThrough();
          const rec = new TraceRecorder(sink, { clock: () => 0n });
          const data = a.seed.subarray(0, a.size * a.count);
          rec.recordIo(a.vcpu, a.port, a.size, a.write, data, a.count);
          rec.flush();
          const line = (sink.read() as Buffer).toString().split("\n")[1]!;
          expect(parseTraceLine(line)).toEqual({
            kind: "io",
            t: 0,
            vcpu: a.vcpu,
            dir: a.write ? "write" : "read",
            addr: a.port,
            size: a.size,
            ...(a.count === 1 ? {} : { count: a.count }),
            data: Buffer.from(data).toString("hex"),
          });
        },
      ),
      { numRuns: 100 },
    );
  });
});
