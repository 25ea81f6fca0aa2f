// A gdb-side view of a GdbSession for unit tests: frames requests, parses replies with the
// package's own parser (which the framing tests check against hand-made bytes).
import { type DebugTarget, framePacket, GdbSession, type GdbSessionOptions, PacketParser, type ParserEvent } from "@tsvmm/gdbstub";

export class Client {
  readonly session: GdbSession;
  readonly events: ParserEvent[] = [];
  readonly raw: Buffer[] = [];
  readonly log: string[] = [];
  closed = false;
  private readonly parser = new PacketParser(1 << 20);

  constructor(target: DebugTarget, options: GdbSessionOptions = {}) {
    this.session = new GdbSession(
      target,
      {
        write: (b) => {
          this.raw.push(Buffer.from(b));
          this.events.push(...this.parser.push(b));
        },
        close: () => {
          this.closed = true;
        },
      },
      { log: (l) => this.log.push(l), ...options },
    );
  }

  /** Send raw bytes as gdb would. */
  bytes(b: string | Uint8Array): void {
    this.session.receive(typeof b === "string" ? Buffer.from(b, "latin1") : b);
  }

  send(payload: string | Uint8Array): void {
    this.bytes(framePacket(payload));
  }

  /** The next reply packet's payload (latin1), waiting for the session's async work. */
  async next(timeoutMs = 2000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.events.findIndex((e) => e.type === "packet");
      if (i >= 0) {
        // Leave acks in place for takeAcks; drop the packets before this one.
        const e = this.events.splice(i, 1)[0]!;
        if (e.type === "packet") return e.data.toString("latin1");
      }
      if (Date.now() > deadline) throw new Error("no reply");
      await new Promise((r) => setImmediate(r));
    }
  }

  async request(payload: string | Uint8Array): Promise<string> {
    this.send(payload);
    return this.next();
  }

  /** Acks ('+'/'-') the session sent since the last call. */
  takeAcks(): string {
    const acks = this.events.filter((e) => e.type === "ack" || e.type === "nack").map((e) => (e.type === "ack" ? "+" : "-"));
    for (let i = this.events.length - 1; i >= 0; i--) if (this.events[i]!.type === "ack" || this.events[i]!.type === "nack") this.events.splice(i, 1);
    return acks.join("");
  }

  async settle(): Promise<void> {
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  }
}
