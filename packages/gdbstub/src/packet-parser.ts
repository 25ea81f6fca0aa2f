import { GdbStubError } from "./errors.js";
import { decodeRunLength } from "./framing.js";
import { hexDigitValue } from "./hex.js";

/** What the byte stream from gdb says, one event at a time. */
export type ParserEvent =
  /** A well-framed packet with a correct checksum; `data` is run-length decoded, still escaped. */
  | { readonly type: "packet"; readonly data: Buffer }
  /** A framed packet whose checksum did not match, or whose checksum digits were not hex. */
  | { readonly type: "bad-checksum" }
  /** A correctly checksummed packet longer than the advertised PacketSize (contents dropped). */
  | { readonly type: "oversized" }
  /** A packet whose run-length encoding is malformed. */
  | { readonly type: "malformed" }
  /** Ctrl-C (0x03) outside a packet. */
  | { readonly type: "interrupt" }
  | { readonly type: "ack" }
  | { readonly type: "nack" };

type State = "idle" | "data" | "cs1" | "cs2";

/** Counters a server can expose; they only grow, but as numbers, not memory. */
export interface ParserStats {
  packets: number;
  badChecksums: number;
  oversized: number;
  malformed: number;
  garbageBytes: number;
}

/**
 * Streaming parser of the GDB Remote Serial Protocol byte stream. It keeps at most
 * `maxPacketSize` bytes of one packet, whatever arrives: a longer packet is consumed to its end
 * and reported as "oversized"; bytes between packets that are not '+', '-', '$' or 0x03 are
 * counted and dropped; a '$' inside a packet starts over, because gdb never sends a raw '$' in
 * a packet and a resync is what a sender that lost a '#' needs.
 */
export class PacketParser {
  readonly maxPacketSize: number;
  readonly stats: ParserStats = { packets: 0, badChecksums: 0, oversized: 0, malformed: 0, garbageBytes: 0 };
  private readonly buf: Buffer;
  private len = 0;
  private overflow = false;
  private sum = 0;
  private csHigh = 0;
  private state: State = "idle";

  constructor(maxPacketSize: number) {
    if (!Number.isInteger(maxPacketSize) || maxPacketSize < 16 || maxPacketSize > 1 << 24) {
      throw new GdbStubError("GDBSTUB_INVALID_ARGUMENT", `maxPacketSize must be an integer in [16, 2^24], got ${maxPacketSize}`);
    }
    this.maxPacketSize = maxPacketSize;
    this.buf = Buffer.alloc(maxPacketSize);
  }

  /** Feed bytes; returns the events they complete, in order. */
  push(chunk: Uint8Array): ParserEvent[] {
    const events: ParserEvent[] = [];
    for (const b of chunk) {
      switch (this.state) {
        case "idle":
          if (b === 0x24) this.begin();
          else if (b === 0x2b) events.push({ type: "ack" });
          else if (b === 0x2d) events.push({ type: "nack" });
          else if (b === 0x03) events.push({ type: "interrupt" });
          else this.stats.garbageBytes++;
          break;
        case "data":
          if (b === 0x23) this.state = "cs1";
          else if (b === 0x24) {
            this.stats.garbageBytes += this.len;
            this.begin();
          } else {
            this.sum = (this.sum + b) & 0xff;
            if (this.len < this.maxPacketSize) this.buf[this.len++] = b;
            else this.overflow = true;
          }
          break;
        case "cs1": {
          const d = hexDigitValue(b);
          if (d < 0) {
            this.reject(events, b);
            break;
          }
          this.csHigh = d;
          this.state = "cs2";
          break;
        }
        case "cs2": {
          const d = hexDigitValue(b);
          if (d < 0) {
            this.reject(events, b);
            break;
          }
          this.state = "idle";
          events.push(this.finish((this.csHigh << 4) | d));
          break;
        }
      }
    }
    return events;
  }

  /** Forget a partial packet (on reconnect). */
  reset(): void {
    this.state = "idle";
    this.len = 0;
    this.overflow = false;
  }

  private begin(): void {
    this.state = "data";
    this.len = 0;
    this.sum = 0;
    this.overflow = false;
  }

  private reject(events: ParserEvent[], b: number): void {
    this.stats.badChecksums++;
    events.push({ type: "bad-checksum" });
    if (b === 0x24) this.begin();
    else this.state = "idle";
  }

  private finish(expected: number): ParserEvent {
    if (expected !== this.sum) {
      this.stats.badChecksums++;
      return { type: "bad-checksum" };
    }
    if (this.overflow) {
      this.stats.oversized++;
      return { type: "oversized" };
    }
    const data = decodeRunLength(this.buf.subarray(0, this.len), this.maxPacketSize);
    if (data === undefined) {
      this.stats.malformed++;
      return { type: "malformed" };
    }
    this.stats.packets++;
    return { type: "packet", data };
  }
}
