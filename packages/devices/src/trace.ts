import { closeSync, createWriteStream, fstatSync, openSync, readFileSync } from "node:fs";
import { type BusEntry, type MmioBus, PioBus } from "./bus.js";
import { DebugExit } from "./debug-exit.js";
import { TraceError } from "./errors.js";
import { Uart16550 } from "./uart16550.js";

export const TRACE_VERSION = 1;

/** Direction of a device access, from the guest's side. */
export type TraceDirection = "read" | "write";

/** A port-I/O (`io`) or MMIO (`mmio`) exit. `data` is hex, `size * count` bytes in guest order. */
export interface TraceAccessEvent {
  kind: "io" | "mmio";
  t: number;
  vcpu: number;
  dir: TraceDirection;
  addr: number;
  size: number;
  /** Repetitions of a string (rep ins/outs) I/O exit; absent means 1. */
  count?: number;
  data: string;
}

/** Bytes the host gave a device (e.g. terminal input queued into a UART), in trace order. */
export interface TraceInputEvent {
  kind: "input";
  t: number;
  device: string;
  data: string;
}

/** The first line a recorder writes. */
export interface TraceHeaderEvent {
  kind: "header";
  version: number;
  startedAt: string;
}

/** Any other exit (hlt, shutdown, msr, hypercall, …): recorded, not replayed. */
export interface TraceOtherEvent {
  kind: string;
  t: number;
  vcpu: number;
  info?: Record<string, unknown>;
}

export type TraceEvent = TraceAccessEvent | TraceInputEvent | TraceHeaderEvent | TraceOtherEvent;

/** Where the recorder writes lines: an fs.WriteStream, a PassThrough, anything stream-like. */
export interface TraceSink {
  write(chunk: string): unknown;
  end(callback?: (error?: Error | null) => void): unknown;
  on?(event: "error", listener: (err: Error) => void): unknown;
}

export interface TraceRecorderOptions {
  /** Bytes of lines kept before one write to the sink; default 64 KiB. */
  bufferBytes?: number;
  /** Monotonic clock in ns; default process.hrtime.bigint. `t` is relative to construction. */
  clock?: () => bigint;
  /** Called once when the sink fails (disk full, a closed pipe): the trace is incomplete from there. */
  onError?: (error: TraceError) => void;
}

/**
 * Records exits as JSON lines (schema in the README). Lines are buffered and written in chunks;
 * `close()` flushes them and ends the sink. Recording after `close()` throws TRACE_CLOSED.
 */
export class TraceRecorder {
  private readonly sink: TraceSink;
  private readonly bufferBytes: number;
  private readonly clock: () => bigint;
  private readonly start: bigint;
  private pending: string[] = [];
  private pendingBytes = 0;
  private closed = false;
  private failure: Error | null = null;
  private readonly onError: ((error: TraceError) => void) | undefined;
  /** Lines recorded so far (the header included). */
  lines = 0;

  /**
   * Opens `path` for appending (a second recording to the same file follows the first). The file
   * is opened now, so a missing directory or a denied path fails here, before anything runs.
   */
  static open(path: string, options: TraceRecorderOptions = {}): TraceRecorder {
    let fd: number;
    try {
      fd = openSync(path, "a");
    } catch (e) {
      throw new TraceError("TRACE_OPEN_FAILED", `cannot open the trace ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, undefined, { cause: e });
    }
    try {
      const st = fstatSync(fd);
      // A FIFO would block the writer thread for ever if nobody reads it; a directory cannot be written.
      if (!st.isFile() && !st.isCharacterDevice()) throw new TraceError("TRACE_OPEN_FAILED", `the trace ${path} is not a regular file or a character device`);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    return new TraceRecorder(createWriteStream("", { fd }), options);
  }

  constructor(sink: TraceSink, options: TraceRecorderOptions = {}) {
    if (sink === null || typeof sink !== "object" || typeof sink.write !== "function" || typeof sink.end !== "function") {
      throw new TraceError("TRACE_INVALID_EVENT", "a trace sink needs write() and end()");
    }
    this.sink = sink;
    this.bufferBytes = options.bufferBytes ?? 64 * 1024;
    this.clock = options.clock ?? process.hrtime.bigint;
    this.start = this.clock();
    this.onError = options.onError;
    sink.on?.("error", (err) => this.fail(err));
    const header: TraceHeaderEvent = { kind: "header", version: TRACE_VERSION, startedAt: new Date().toISOString() };
    this.push(JSON.stringify(header));
  }

  /** A port-I/O exit. `data` holds `size * count` bytes: written, or read back by the guest. */
  recordIo(vcpu: number, port: number, size: number, isWrite: boolean, data: Uint8Array, count = 1): void {
    this.access("io", vcpu, port, size, isWrite, data, count);
  }

  /** An MMIO exit; `data.length` is the access size. */
  recordMmio(vcpu: number, address: number | bigint, isWrite: boolean, data: Uint8Array): void {
    this.access("mmio", vcpu, Number(address), data.length, isWrite, data, 1);
  }

  /** Host input handed to the device named `device` (replay gives it to that UART's queueInput). */
  recordInput(device: string, data: Uint8Array | string): void {
    const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : toBuffer(data);
    this.push(`{"kind":"input","t":${this.now()},"device":${JSON.stringify(device)},"data":"${bytes.toString("hex")}"}`);
  }

  /** Any other exit, by kind name, with optional JSON-able details. */
  recordExit(vcpu: number, kind: string, info?: Record<string, unknown>): void {
    if (kind === "io" || kind === "mmio" || kind === "input" || kind === "header" || kind.length === 0) {
      throw new TraceError("TRACE_INVALID_EVENT", `"${kind}" is not a kind recordExit takes`);
    }
    const event: TraceOtherEvent = { kind, t: this.now(), vcpu };
    if (info !== undefined) event.info = info;
    this.push(JSON.stringify(event));
  }

  /** Records every access on `bus` through its observer; returns a function that detaches. */
  observe(bus: PioBus | MmioBus): () => void {
    const kind = bus instanceof PioBus ? "io" : "mmio";
    const observer = (addr: number, data: Buffer, isWrite: boolean, vcpu: number): void =>
      this.access(kind, vcpu, addr, data.length, isWrite, data, 1);
    bus.observer = observer;
    return () => {
      if (bus.observer === observer) bus.observer = null;
    };
  }

  /** Hands buffered lines to the sink now. */
  flush(): void {
    if (this.pending.length === 0) return;
    const chunk = this.pending.join("");
    this.pending = [];
    this.pendingBytes = 0;
    this.sink.write(chunk);
  }

  /** Flushes, ends the sink and waits for it; rejects with TRACE_WRITE_FAILED if it failed. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.failure === null) {
      this.flush();
      await new Promise<void>((resolve) => {
        const timer = setInterval(() => {
          // A sink that failed may never call back from end().
          if (this.failure !== null) done();
        }, 20);
        const done = (): void => {
          clearInterval(timer);
          resolve();
        };
        // A file stream reports a failed last write to end()'s callback, before its 'error' event.
        this.sink.end((err) => {
          if (err) this.fail(err);
          done();
        });
      });
      // Let an 'error' event already queued behind the callback land before judging.
      await new Promise<void>((r) => setImmediate(r));
    }
    if (this.failure !== null) {
      throw new TraceError("TRACE_WRITE_FAILED", `writing the trace failed: ${this.failure.message}`, undefined, {
        cause: this.failure,
      });
    }
  }

  private access(
    kind: "io" | "mmio",
    vcpu: number,
    addr: number,
    size: number,
    isWrite: boolean,
    data: Uint8Array,
    count: number,
  ): void {
    if (!Number.isInteger(size) || size < 1 || !Number.isInteger(count) || count < 1 || data.length !== size * count) {
      throw new TraceError(
        "TRACE_INVALID_EVENT",
        `an access of ${String(count)} x ${String(size)} bytes cannot carry ${data.length} data bytes`,
      );
    }
    const c = count === 1 ? "" : `,"count":${count}`;
    this.push(
      `{"kind":"${kind}","t":${this.now()},"vcpu":${vcpu},"dir":"${isWrite ? "write" : "read"}","addr":${addr},"size":${size}${c},"data":"${toBuffer(data).toString("hex")}"}`,
    );
  }

  /** The first failure of the sink: kept for close(), told to onError once. */
  private fail(err: Error): void {
    if (this.failure !== null) return;
    this.failure = err;
    this.onError?.(new TraceError("TRACE_WRITE_FAILED", `writing the trace failed: ${err.message}`, undefined, { cause: err }));
  }

  private now(): number {
    return Number(this.clock() - this.start);
  }

  private push(line: string): void {
    if (this.closed) throw new TraceError("TRACE_CLOSED", "the trace recorder is closed");
    this.pending.push(line, "\n");
    this.pendingBytes += line.length + 1;
    this.lines++;
    if (this.pendingBytes >= this.bufferBytes) this.flush();
  }
}

function toBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.length);
}

/** Parses one line of a trace; `line` (1-based) goes into errors. Blank lines give null. */
export function parseTraceLine(text: string, line = 1): TraceEvent | null {
  if (text.trim() === "") return null;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new TraceError("TRACE_BAD_LINE", `trace line ${line} is not JSON: ${(e as Error).message}`, line);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    throw new TraceError("TRACE_BAD_LINE", `trace line ${line} is not a JSON object`, line);
  }
  const o = v as Record<string, unknown>;
  const bad = (why: string): TraceError => new TraceError("TRACE_INVALID_EVENT", `trace line ${line}: ${why}`, line);
  if (typeof o.kind !== "string" || o.kind === "") throw bad("no kind");
  if (o.kind === "header") {
    if (o.version !== TRACE_VERSION) throw bad(`unsupported trace version ${String(o.version)}`);
    return o as unknown as TraceHeaderEvent;
  }
  if (o.kind === "input") {
    if (typeof o.device !== "string") throw bad("input without a device name");
    if (!isHex(o.data)) throw bad("input data is not a hex string");
    return o as unknown as TraceInputEvent;
  }
  if (o.kind === "io" || o.kind === "mmio") {
    const count = o.count ?? 1;
    if (o.dir !== "read" && o.dir !== "write") throw bad(`dir must be "read" or "write"`);
    if (!Number.isSafeInteger(o.addr) || (o.addr as number) < 0) throw bad("addr is not a non-negative integer");
    if (o.kind === "io" && (o.addr as number) > 0xffff) throw bad("io addr is not a port");
    if (!Number.isInteger(o.size) || (o.size as number) < 1) throw bad("size is not a positive integer");
    if (!Number.isInteger(count) || (count as number) < 1) throw bad("count is not a positive integer");
    if (!isHex(o.data) || o.data.length !== 2 * (o.size as number) * (count as number)) {
      throw bad("data is not hex of size * count bytes");
    }
    return o as unknown as TraceAccessEvent;
  }
  return o as unknown as TraceOtherEvent;
}

function isHex(v: unknown): v is string {
  return typeof v === "string" && v.length % 2 === 0 && /^[0-9a-f]*$/i.test(v);
}

export interface ReplayBuses {
  pio?: PioBus;
  mmio?: MmioBus;
}

export interface ReplayRead {
  line: number;
  kind: "io" | "mmio";
  addr: number;
  size: number;
  /** What the device models answered now (hex). */
  data: string;
}

/** A recorded read the device models now answer differently. */
export interface ReplayDivergence {
  line: number;
  kind: "io" | "mmio";
  addr: number;
  size: number;
  recorded: string;
  replayed: string;
}

export interface ReplayResult {
  /** Events read (header included). */
  events: number;
  /** Device accesses fed to the buses (a string I/O exit counts once per element). */
  accesses: number;
  reads: ReplayRead[];
  divergences: ReplayDivergence[];
  /** Bytes each Uart16550 on the buses transmitted, by device name. */
  output: Map<string, Buffer>;
  /** Codes the DebugExit devices on the buses reported, in order. */
  exits: { device: string; code: number; line: number }[];
  /** Events that could not be replayed: no bus for their kind, or no UART by that name. */
  skipped: { line: number; kind: string; reason: string }[];
  /** Exits of other kinds (hlt, shutdown, …), which replay only counts. */
  otherExits: number;
}

/**
 * Feeds a recorded trace into device models, without KVM. `source` is a file path, or the trace's
 * lines. Reads are performed and compared with the recorded data; writes are performed; input
 * events go to the UART of that name. Stops at the first malformed line with a TraceError.
 */
export function replay(source: string | Iterable<string>, buses: ReplayBuses): ReplayResult {
  const lines = typeof source === "string" ? readFileSync(source, "utf8").split("\n") : source;
  const result: ReplayResult = {
    events: 0,
    accesses: 0,
    reads: [],
    divergences: [],
    output: new Map(),
    exits: [],
    skipped: [],
    otherExits: 0,
  };
  const devices = new Set<unknown>();
  for (const bus of [buses.pio, buses.mmio]) {
    for (const e of bus?.entries() ?? ([] as BusEntry[])) devices.add(e.device);
  }
  const uarts = new Map<string, Uart16550>();
  const untap: (() => void)[] = [];
  let lineNo = 0;
  for (const d of devices) {
    if (d instanceof Uart16550) {
      uarts.set(d.name, d);
      const bytes: number[] = [];
      untap.push(d.onOutput((b) => bytes.push(b)));
      untap.push(() => result.output.set(d.name, Buffer.from(bytes)));
    } else if (d instanceof DebugExit) {
      untap.push(d.onExit((code) => result.exits.push({ device: d.name, code, line: lineNo })));
    }
  }
  try {
    for (const text of lines) {
      lineNo++;
      const ev = parseTraceLine(text, lineNo);
      if (ev === null) continue;
      result.events++;
      if (ev.kind === "io" || ev.kind === "mmio") {
        replayAccess(ev as TraceAccessEvent, lineNo, buses, result);
      } else if (ev.kind === "input") {
        const input = ev as TraceInputEvent;
        const uart = uarts.get(input.device);
        if (uart === undefined) result.skipped.push({ line: lineNo, kind: "input", reason: `no UART named "${input.device}"` });
        else uart.queueInput(Buffer.from(input.data, "hex"));
      } else if (ev.kind !== "header") {
        result.otherExits++;
      }
    }
  } finally {
    // Removing the taps also fills `output` (in the order they were added).
    for (const u of untap) u();
  }
  return result;
}

function replayAccess(ev: TraceAccessEvent, line: number, buses: ReplayBuses, result: ReplayResult): void {
  const bus = ev.kind === "io" ? buses.pio : buses.mmio;
  if (bus === undefined) {
    result.skipped.push({ line, kind: ev.kind, reason: `no ${ev.kind === "io" ? "pio" : "mmio"} bus given` });
    return;
  }
  const count = ev.count ?? 1;
  const data = Buffer.from(ev.data, "hex");
  const vcpu = Number.isInteger(ev.vcpu) ? ev.vcpu : 0;
  for (let i = 0; i < count; i++) {
    const part = data.subarray(i * ev.size, (i + 1) * ev.size);
    if (ev.dir === "write") bus.write(ev.addr, part, vcpu);
    else bus.readInto(ev.addr, part, vcpu);
    result.accesses++;
  }
  if (ev.dir === "read") {
    const replayed = data.toString("hex");
    result.reads.push({ line, kind: ev.kind, addr: ev.addr, size: ev.size, data: replayed });
    if (replayed !== ev.data.toLowerCase()) {
      result.divergences.push({ line, kind: ev.kind, addr: ev.addr, size: ev.size, recorded: ev.data, replayed });
    }
  }
}
