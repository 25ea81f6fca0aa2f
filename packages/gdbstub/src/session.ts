import { GdbStubError } from "./errors.js";
import { escapeBinary, framePacket, unescapeBinary } from "./framing.js";
import { fromHex, hexByte, hexNumber, parseHexNumber, parseHexSize, textToHex, toHex } from "./hex.js";
import { PacketParser, type ParserStats } from "./packet-parser.js";
import { decodeGPacket, decodeRegister, encodeGPacket, encodeRegister, type GdbArchitecture } from "./registers.js";
import type { Breakpoint, BreakpointKind, DebugTarget, ResumeAction, StopEvent } from "./target.js";
import { targetDescriptionXml } from "./target-description.js";

/** Default PacketSize advertised in qSupported: 16 KiB, enough for 8 KiB memory reads. */
export const DEFAULT_MAX_PACKET_SIZE = 0x4000;

export interface GdbSessionOptions {
  /** PacketSize advertised to gdb and the most the parser keeps of one packet (default 16 KiB). */
  readonly maxPacketSize?: number;
  /**
   * qAttached's answer. true (default): gdb treats the VM as attached to, so `quit` detaches
   * and the guest runs on; false: `quit` kills the VM.
   */
  readonly attached?: boolean;
  /** Called with one line per protocol event worth knowing about (bad packets, target errors). */
  readonly log?: (line: string) => void;
}

/** How a session talks to its connection; GdbServer passes a socket's write/end. */
export interface SessionIo {
  write(bytes: Buffer): void;
  /** The session is over (k, vKill): close the connection. */
  close(): void;
}

// Error replies carry an errno-like number in hex; gdb prints it, programs never parse it.
const E_GENERIC = "E01";
const E_FAULT = "E0e";
const E_INVALID = "E16";
const E_NO_SPACE = "E1c";
const E_NO_PROCESS = "E03";

/** gdb sends one command at a time; a longer queue only comes from a hostile or broken peer. */
const MAX_QUEUED_PACKETS = 32;
const MAX_RETRANSMITS = 4;

type ThreadSel = number | "all" | "any";

const Z_KINDS: readonly BreakpointKind[] = ["sw", "hw", "write", "read", "access"];

/**
 * One debugger connection: the GDB Remote Serial Protocol engine between a byte stream and a
 * {@link DebugTarget}. Knows nothing of sockets (GdbServer does) or KVM (the target does).
 * Never throws out of `receive`: a malformed, oversized or hostile stream gets protocol
 * replies (or is dropped) and memory stays bounded by `maxPacketSize` and a short queue.
 */
export class GdbSession {
  readonly maxPacketSize: number;
  private readonly parser: PacketParser;
  private readonly attached: boolean;
  private readonly log: (line: string) => void;
  private readonly queue: (Buffer | string)[] = [];
  private pumping: Promise<void> | undefined;
  private noAck = false;
  private lastSent: Buffer | undefined;
  private retransmits = 0;
  private gdbSwbreak = false;
  private gdbHwbreak = false;
  private arch: GdbArchitecture | undefined;
  private generalVcpu = 0;
  private continueSel: ThreadSel = "all";
  private lastStop: StopEvent | undefined;
  private running: Promise<StopEvent> | undefined;
  private ended = false;
  private readonly inserted = new Map<string, { bp: Breakpoint; count: number }>();
  private readonly ready: Promise<void>;
  private queueDrops = 0;
  private interruptPending = false;

  constructor(
    private readonly target: DebugTarget,
    private readonly io: SessionIo,
    options: GdbSessionOptions = {},
  ) {
    this.maxPacketSize = options.maxPacketSize ?? DEFAULT_MAX_PACKET_SIZE;
    this.parser = new PacketParser(this.maxPacketSize);
    this.attached = options.attached ?? true;
    this.log = options.log ?? (() => {});
    this.ready = this.haltOnAttach();
  }

  /** True once the session is over: after D, k, vKill or dispose() it ignores further input. */
  get finished(): boolean {
    return this.ended;
  }

  /** Parser counters plus packets dropped because the queue was full. */
  get stats(): Readonly<ParserStats & { queueDrops: number }> {
    return { ...this.parser.stats, queueDrops: this.queueDrops };
  }

  /** Bytes from gdb. Never throws. */
  receive(chunk: Uint8Array): void {
    if (this.ended) return;
    for (const ev of this.parser.push(chunk)) {
      switch (ev.type) {
        case "ack":
          this.lastSent = undefined;
          break;
        case "nack":
          if (this.lastSent && this.retransmits < MAX_RETRANSMITS) {
            this.retransmits++;
            this.io.write(this.lastSent);
          }
          break;
        case "interrupt":
          if (this.running) this.safely(() => this.target.interrupt(), "interrupt");
          // A resume still waiting in the queue (gdb sent "vCont;c" and 0x03 back to back) gets it when it starts.
          else if (this.pumping) this.interruptPending = true;
          break;
        case "bad-checksum":
          if (!this.noAck) this.io.write(Buffer.from("-"));
          break;
        case "oversized":
        case "malformed":
          this.ackAndQueue(E_INVALID);
          this.log(`dropped ${ev.type} packet`);
          break;
        case "packet":
          this.ackAndQueue(ev.data);
          break;
      }
    }
  }

  /**
   * The connection is gone without D or k: stop the VM if it runs, remove the breakpoints gdb
   * left, and let the target run free. Resolves when done; never rejects.
   */
  async dispose(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    try {
      await this.ready;
      if (this.running) this.target.interrupt();
      // Let the packet in hand finish (a resume ends with the interrupt) before touching the target.
      await this.pumping;
      if (this.alive()) await this.releaseTarget();
    } catch (e) {
      this.log(`dispose: ${describe(e)}`);
    }
  }

  private async haltOnAttach(): Promise<void> {
    try {
      this.noteStop(await this.target.halt());
    } catch (e) {
      this.log(`halt: ${describe(e)}`);
    }
  }

  private ackAndQueue(item: Buffer | string): void {
    if (!this.noAck) this.io.write(Buffer.from("+"));
    if (this.queue.length >= MAX_QUEUED_PACKETS) {
      this.queueDrops++;
      return;
    }
    this.queue.push(item);
    this.pump();
  }

  private pump(): void {
    this.pumping ??= this.drain()
      .catch((e: unknown) => this.log(`session: ${describe(e)}`))
      .finally(() => {
        this.pumping = undefined;
        this.interruptPending = false;
        // A packet queued between the loop's last check and now still gets its turn.
        if (this.queue.length > 0 && !this.ended) this.pump();
      });
  }

  private async drain(): Promise<void> {
      await this.ready;
      while (this.queue.length > 0 && !this.ended) {
        const item = this.queue.shift()!;
        let reply: string | Buffer | undefined;
        if (typeof item === "string") reply = item;
        else {
          try {
            reply = await this.handle(item);
          } catch (e) {
            this.log(`packet ${item.subarray(0, 16).toString("latin1")}: ${describe(e)}`);
            reply = e instanceof GdbStubError ? E_INVALID : E_GENERIC;
          }
        }
        if (reply !== undefined && !this.ended) this.send(reply);
      }
  }

  private send(payload: string | Buffer): void {
    const framed = framePacket(payload);
    if (!this.noAck) {
      this.lastSent = framed;
      this.retransmits = 0;
    }
    this.io.write(framed);
  }

  private safely(fn: () => void, what: string): void {
    try {
      fn();
    } catch (e) {
      this.log(`${what}: ${describe(e)}`);
    }
  }

  private alive(): boolean {
    return this.lastStop === undefined || this.lastStop.kind === "stopped";
  }

  private architecture(): GdbArchitecture {
    this.arch ??= this.target.architecture(this.generalVcpu);
    return this.arch;
  }

  private noteStop(ev: StopEvent): void {
    this.lastStop = ev;
    if (ev.kind === "stopped" && this.validVcpu(ev.vcpu)) this.generalVcpu = ev.vcpu;
  }

  private validVcpu(v: number): boolean {
    return Number.isInteger(v) && v >= 0 && v < this.target.vcpuCount;
  }

  private stopReply(): string {
    const ev = this.lastStop;
    if (!ev) return `S${hexByte(5)}`;
    if (ev.kind === "exited") return `W${hexByte(ev.status & 0xff)}`;
    if (ev.kind === "terminated") return `X${hexByte(ev.signal & 0xff)}`;
    let r = `T${hexByte(ev.signal & 0xff)}thread:${hexNumber(ev.vcpu + 1)};`;
    const c = ev.cause;
    if (c?.type === "swbreak" && this.gdbSwbreak) r += "swbreak:;";
    else if (c?.type === "hwbreak" && this.gdbHwbreak) r += "hwbreak:;";
    else if (c && c.type !== "swbreak" && c.type !== "hwbreak") r += `${c.type}:${hexNumber(c.address)};`;
    return r;
  }

  private parseThread(text: string): ThreadSel | undefined {
    // Without multiprocess gdb sends bare ids, but a "p<pid>.<tid>" form costs nothing to accept.
    const dot = text.startsWith("p") ? text.indexOf(".") : -1;
    const t = dot >= 0 ? text.slice(dot + 1) : text;
    if (t === "-1") return "all";
    if (t === "0") return "any";
    if (!/^[0-9a-fA-F]{1,8}$/.test(t)) return undefined;
    const v = Number.parseInt(t, 16) - 1;
    return this.validVcpu(v) ? v : undefined;
  }

  private async handle(data: Buffer): Promise<string | Buffer | undefined> {
    const text = data.toString("latin1");
    const cmd = text[0] ?? "";
    if (!this.alive() && "gGpPmMXzZcCsSvTH".includes(cmd) && !text.startsWith("vMustReplyEmpty") && !text.startsWith("vCont?")) {
      return E_NO_PROCESS;
    }
    switch (cmd) {
      case "?":
        return this.stopReply();
      case "q":
        return this.query(text);
      case "Q":
        if (text === "QStartNoAckMode") {
          // The OK still travels in ack mode; from the next packet on, nobody acks.
          this.send("OK");
          this.noAck = true;
          this.lastSent = undefined;
          return undefined;
        }
        return "";
      case "H":
        return this.setThread(text);
      case "T":
        return typeof this.parseThread(text.slice(1)) === "number" ? "OK" : E_GENERIC;
      case "g":
        return encodeGPacket(this.architecture(), await this.target.readRegisters(this.generalVcpu));
      case "G": {
        const regs = await this.target.readRegisters(this.generalVcpu);
        await this.target.writeRegisters(this.generalVcpu, decodeGPacket(this.architecture(), text.slice(1), regs));
        return "OK";
      }
      case "p": {
        const n = parseHexSize(text.slice(1), 0xffff);
        const regs = await this.target.readRegisters(this.generalVcpu);
        return encodeRegister(this.architecture(), regs, n) ?? E_INVALID;
      }
      case "P": {
        const eq = text.indexOf("=");
        if (eq < 0) return E_INVALID;
        const n = parseHexSize(text.slice(1, eq), 0xffff);
        const regs = await this.target.readRegisters(this.generalVcpu);
        await this.target.writeRegisters(this.generalVcpu, decodeRegister(this.architecture(), regs, n, text.slice(eq + 1)));
        return "OK";
      }
      case "m":
        return this.readMemory(text);
      case "M":
        return this.writeMemoryHex(text);
      case "X":
        return this.writeMemoryBinary(data);
      case "Z":
      case "z":
        return this.breakpoint(text);
      case "c":
      case "C":
      case "s":
      case "S":
        return this.legacyResume(text);
      case "v":
        return this.vPacket(text);
      case "D":
        if (this.alive()) await this.releaseTarget();
        this.send("OK");
        this.ended = true;
        return undefined;
      case "k":
        await this.killTarget();
        return undefined;
      default:
        return "";
    }
  }

  private query(text: string): string | Buffer {
    if (text.startsWith("qSupported")) {
      const theirs = text.slice("qSupported:".length).split(";");
      this.gdbSwbreak = theirs.includes("swbreak+");
      this.gdbHwbreak = theirs.includes("hwbreak+");
      return `PacketSize=${hexNumber(this.maxPacketSize)};qXfer:features:read+;QStartNoAckMode+;swbreak+;hwbreak+;vContSupported+`;
    }
    if (text.startsWith("qXfer:features:read:")) return this.xferFeatures(text.slice("qXfer:features:read:".length));
    if (text === "qfThreadInfo") {
      const ids: string[] = [];
      for (let v = 0; v < this.target.vcpuCount; v++) ids.push(hexNumber(v + 1));
      return `m${ids.join(",")}`;
    }
    if (text === "qsThreadInfo") return "l";
    if (text === "qC") return `QC${hexNumber(this.generalVcpu + 1)}`;
    if (text.startsWith("qAttached")) return this.attached ? "1" : "0";
    if (text.startsWith("qThreadExtraInfo,")) {
      const t = this.parseThread(text.slice("qThreadExtraInfo,".length));
      if (typeof t !== "number") return E_INVALID;
      return textToHex(this.target.threadName?.(t) ?? `vCPU ${t}`);
    }
    if (text.startsWith("qSymbol")) return "OK";
    return "";
  }

  private xferFeatures(rest: string): string | Buffer {
    const colon = rest.indexOf(":");
    if (colon < 0) return E_INVALID;
    const annex = rest.slice(0, colon);
    const [offText, lenText] = rest.slice(colon + 1).split(",");
    if (annex !== "target.xml") return "E00";
    const offset = parseHexSize(offText ?? "", 0x7fffffff);
    const length = Math.min(parseHexSize(lenText ?? "", 0x7fffffff), this.maxPacketSize / 2);
    const doc = Buffer.from(targetDescriptionXml(this.architecture()), "latin1");
    if (offset >= doc.length) return "l";
    const part = doc.subarray(offset, offset + length);
    const more = offset + part.length < doc.length;
    return Buffer.concat([Buffer.from(more ? "m" : "l"), escapeBinary(part)]);
  }

  private setThread(text: string): string {
    const op = text[1];
    const sel = this.parseThread(text.slice(2));
    if (sel === undefined || (op !== "g" && op !== "c")) return E_GENERIC;
    if (op === "g") {
      if (sel === "all") return E_GENERIC;
      if (typeof sel === "number") this.generalVcpu = sel;
    } else this.continueSel = sel;
    return "OK";
  }

  private parseAddrLen(text: string, maxLen: number): [bigint, number] {
    const comma = text.indexOf(",");
    if (comma < 0) throw new GdbStubError("GDBSTUB_MALFORMED_PACKET", "expected addr,length");
    return [parseHexNumber(text.slice(0, comma)), parseHexSize(text.slice(comma + 1), maxLen)];
  }

  private async readMemory(text: string): Promise<string> {
    const [addr, asked] = this.parseAddrLen(text.slice(1), 0x7fffffff);
    // The protocol lets a reply be shorter than asked; hex doubles the size.
    const len = Math.min(asked, Math.floor((this.maxPacketSize - 4) / 2));
    if (len === 0) return "";
    let bytes: Uint8Array;
    try {
      bytes = await this.target.readMemory(this.generalVcpu, addr, len);
    } catch (e) {
      this.log(`read ${len} bytes at 0x${addr.toString(16)}: ${describe(e)}`);
      return E_FAULT;
    }
    if (!(bytes instanceof Uint8Array) || bytes.length === 0) return E_FAULT;
    return toHex(bytes.subarray(0, len));
  }

  private async writeMemoryHex(text: string): Promise<string> {
    const colon = text.indexOf(":");
    if (colon < 0) return E_INVALID;
    const [addr, len] = this.parseAddrLen(text.slice(1, colon), this.maxPacketSize);
    const bytes = fromHex(text.slice(colon + 1));
    if (bytes.length !== len) return E_INVALID;
    return this.write(addr, bytes);
  }

  private async writeMemoryBinary(data: Buffer): Promise<string> {
    const colon = data.indexOf(0x3a);
    if (colon < 0) return E_INVALID;
    const [addr, len] = this.parseAddrLen(data.subarray(1, colon).toString("latin1"), this.maxPacketSize);
    const bytes = unescapeBinary(data.subarray(colon + 1));
    if (bytes.length !== len) return E_INVALID;
    // gdb probes X support with a zero-length write.
    if (len === 0) return "OK";
    return this.write(addr, bytes);
  }

  private async write(addr: bigint, bytes: Uint8Array): Promise<string> {
    try {
      await this.target.writeMemory(this.generalVcpu, addr, bytes);
      return "OK";
    } catch (e) {
      this.log(`write ${bytes.length} bytes at 0x${addr.toString(16)}: ${describe(e)}`);
      return E_FAULT;
    }
  }

  private async breakpoint(text: string): Promise<string> {
    const insert = text[0] === "Z";
    // Conditions and commands (";X..." after the kind) are only sent when advertised; ignore them.
    const fields = text.slice(1).split(";")[0]!.split(",");
    if (fields.length !== 3) return E_INVALID;
    const type = parseHexSize(fields[0]!, 4);
    const bp: Breakpoint = { kind: Z_KINDS[type]!, address: parseHexNumber(fields[1]!), length: parseHexSize(fields[2]!, 0x10000) };
    const key = `${bp.kind}:${bp.address}:${bp.length}`;
    const result = insert ? await this.target.setBreakpoint(bp) : await this.target.removeBreakpoint(bp);
    if (result === "ok") {
      const entry = this.inserted.get(key);
      if (insert) this.inserted.set(key, { bp, count: (entry?.count ?? 0) + 1 });
      else if (entry && entry.count > 1) entry.count--;
      else this.inserted.delete(key);
      return "OK";
    }
    if (result === "unsupported") return "";
    return result === "no-slots" ? E_NO_SPACE : E_INVALID;
  }

  private async legacyResume(text: string): Promise<string> {
    const step = text[0] === "s" || text[0] === "S";
    const withSignal = text[0] === "C" || text[0] === "S";
    let rest = text.slice(1);
    let signal = 0;
    if (withSignal) {
      const semi = rest.indexOf(";");
      signal = parseHexSize(semi < 0 ? rest : rest.slice(0, semi), 0xff);
      rest = semi < 0 ? "" : rest.slice(semi + 1);
    }
    if (rest.length > 0) {
      // "c addr" / "s addr": resume at addr.
      const regs = await this.target.readRegisters(this.generalVcpu);
      await this.target.writeRegisters(this.generalVcpu, { ...regs, rip: parseHexNumber(rest) });
    }
    const actions: ResumeAction[] = [];
    if (step) {
      const v = typeof this.continueSel === "number" ? this.continueSel : this.generalVcpu;
      actions.push({ vcpu: v, action: "step", signal });
    } else if (typeof this.continueSel === "number") actions.push({ vcpu: this.continueSel, action: "continue", signal });
    else for (let v = 0; v < this.target.vcpuCount; v++) actions.push({ vcpu: v, action: "continue", signal });
    return this.run(actions);
  }

  private async vPacket(text: string): Promise<string | undefined> {
    if (text === "vCont?") return "vCont;c;C;s;S;t";
    if (text.startsWith("vCont;")) {
      const actions = this.parseVCont(text.slice("vCont;".length));
      if (!actions) return E_INVALID;
      return this.run(actions);
    }
    if (text.startsWith("vKill")) {
      this.send("OK");
      await this.killTarget();
      return undefined;
    }
    return "";
  }

  /** vCont: for each vCPU the leftmost action naming it (or naming no thread) applies. */
  private parseVCont(spec: string): ResumeAction[] | undefined {
    const chosen = new Map<number, ResumeAction | "stop">();
    for (const part of spec.split(";")) {
      const colon = part.indexOf(":");
      const act = colon < 0 ? part : part.slice(0, colon);
      const sel = colon < 0 ? "all" : this.parseThread(part.slice(colon + 1));
      if (sel === undefined) return undefined;
      const letter = act[0];
      let action: ResumeAction["action"] | "stop";
      let signal = 0;
      if (letter === "c" || letter === "s") {
        if (act.length !== 1) return undefined;
        action = letter === "c" ? "continue" : "step";
      } else if (letter === "C" || letter === "S") {
        signal = parseHexSize(act.slice(1), 0xff);
        action = letter === "C" ? "continue" : "step";
      } else if (act === "t") action = "stop";
      else return undefined;
      const vcpus = typeof sel === "number" ? [sel] : sel === "any" ? [this.generalVcpu] : [...Array(this.target.vcpuCount).keys()];
      for (const v of vcpus) {
        if (chosen.has(v)) continue;
        chosen.set(v, action === "stop" ? "stop" : { vcpu: v, action, signal });
      }
    }
    const actions = [...chosen.values()].filter((a): a is ResumeAction => a !== "stop").sort((a, b) => a.vcpu - b.vcpu);
    return actions.length > 0 ? actions : undefined;
  }

  private async run(actions: ResumeAction[]): Promise<string> {
    const pending = this.target.resume(actions);
    this.running = pending;
    if (this.interruptPending) {
      this.interruptPending = false;
      this.safely(() => this.target.interrupt(), "interrupt");
    }
    try {
      this.noteStop(await pending);
    } catch (e) {
      this.log(`resume: ${describe(e)}`);
      return E_GENERIC;
    } finally {
      this.running = undefined;
    }
    return this.stopReply();
  }

  /** Remove what gdb left inserted, then hand the VM back to itself. */
  private async releaseTarget(): Promise<void> {
    for (const { bp, count } of this.inserted.values()) {
      for (let i = 0; i < count; i++) {
        try {
          await this.target.removeBreakpoint(bp);
        } catch (e) {
          this.log(`remove breakpoint: ${describe(e)}`);
        }
      }
    }
    this.inserted.clear();
    await this.target.detach();
  }

  private async killTarget(): Promise<void> {
    this.ended = true;
    try {
      await this.target.kill();
    } catch (e) {
      this.log(`kill: ${describe(e)}`);
    }
    this.io.close();
  }
}

function describe(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}
