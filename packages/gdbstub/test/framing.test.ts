import { checksum, decodeRunLength, escapeBinary, framePacket, fromHex, PacketParser, parseHexNumber, toHex, unescapeBinary } from "@tsvmm/gdbstub";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

describe("framing", () => {
  it("checksums are the byte sum modulo 256, as two lowercase hex digits", () => {
    // 'O' + 'K' = 0x4f + 0x4b = 0x9a; the empty packet sums to 0.
    expect(framePacket("OK").toString("latin1")).toBe("$OK#9a");
    expect(framePacket("").toString("latin1")).toBe("$#00");
    expect(checksum(Buffer.from("qSupported"))).toBe(0x37);
    expect(framePacket(Buffer.from([0xff, 0xff])).toString("latin1")).toBe("$\xff\xff#fe");
  });

  it("escapes exactly #, $, } and * with } and XOR 0x20", () => {
    expect([...escapeBinary(Buffer.from([0x23, 0x24, 0x7d, 0x2a, 0x00, 0x03, 0x7e]))]).toEqual([0x7d, 0x03, 0x7d, 0x04, 0x7d, 0x5d, 0x7d, 0x0a, 0x00, 0x03, 0x7e]);
    expect(() => unescapeBinary(Buffer.from([0x41, 0x7d]))).toThrow(expect.objectContaining({ code: "GDBSTUB_MALFORMED_PACKET" }));
  });

  it("escape then unescape is the identity, and the escaped form holds none of the reserved bytes raw", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (data) => {
        const esc = escapeBinary(data);
        for (const b of [0x23, 0x24, 0x2a]) expect(esc.includes(b)).toBe(false);
        expect([...unescapeBinary(esc)]).toEqual([...data]);
      }),
      { numRuns: 500 },
    );
  });

  it("run-length decoding follows the protocol's example and refuses malformed runs", () => {
    // GDB manual: "0* " means the same as "0000" (' ' is 32, 32 - 29 = 3 repeats).
    expect(decodeRunLength(Buffer.from("0* "), 100)?.toString()).toBe("0000");
    expect(decodeRunLength(Buffer.from("ab*\"c"), 100)?.toString()).toBe("abbbbbbc"); // '"' = 34 → 5 more
    expect(decodeRunLength(Buffer.from("*a"), 100)).toBeUndefined(); // nothing to repeat
    expect(decodeRunLength(Buffer.from("a*"), 100)).toBeUndefined(); // no count
    expect(decodeRunLength(Buffer.from("a*\x10"), 100)).toBeUndefined(); // unprintable count
    expect(decodeRunLength(Buffer.from("a*~"), 50)).toBeUndefined(); // 98 bytes > limit
    expect(decodeRunLength(Buffer.from("a*~"), 98)?.length).toBe(98);
  });

  it("hex helpers round-trip and bound numbers to 64 bits", () => {
    expect(toHex(Buffer.from([0, 0xab, 0x10]))).toBe("00ab10");
    expect([...fromHex("00AB10")]).toEqual([0, 0xab, 0x10]);
    expect(parseHexNumber("ffffffffffffffff")).toBe(0xffffffffffffffffn);
    expect(() => parseHexNumber("1ffffffffffffffff")).toThrow();
    expect(() => parseHexNumber("")).toThrow();
    expect(() => fromHex("0g")).toThrow();
  });
});

describe("PacketParser", () => {
  it("splits a stream into packets, acks, nacks and interrupts, whatever the chunking", () => {
    const stream = Buffer.from("+$qC#b4-\x03$m10,4#2e+", "latin1");
    for (let cut = 0; cut <= stream.length; cut++) {
      const p = new PacketParser(64);
      const ev = [...p.push(stream.subarray(0, cut)), ...p.push(stream.subarray(cut))];
      expect(ev.map((e) => (e.type === "packet" ? e.data.toString() : e.type))).toEqual(["ack", "qC", "nack", "interrupt", "m10,4", "ack"]);
    }
  });

  it("reports a wrong or non-hex checksum and resynchronises on the next $", () => {
    const p = new PacketParser(64);
    expect(p.push(Buffer.from("$qC#00$qC#zz$qC#b4")).map((e) => e.type)).toEqual(["bad-checksum", "bad-checksum", "packet"]);
    // '$' inside a packet starts a new one: the cut-off one is garbage.
    expect(p.push(Buffer.from("$qAtt$qC#b4")).map((e) => e.type)).toEqual(["packet"]);
    expect(p.stats.garbageBytes).toBe(5); // "qAtt" and the second "z" of "#zz"
    // "#z$" — the '$' in the checksum position opens the next packet.
    expect(p.push(Buffer.from("$g#z$g#67")).map((e) => e.type)).toEqual(["bad-checksum", "packet"]);
  });

  it("drops bytes between packets and counts them", () => {
    const p = new PacketParser(64);
    expect(p.push(Buffer.from("hello\x00\xff$g#67world", "latin1"))).toEqual([{ type: "packet", data: Buffer.from("g") }]);
    expect(p.stats.garbageBytes).toBe(12);
  });

  it("consumes an oversized packet without keeping it, then parses the next one", () => {
    const p = new PacketParser(16);
    const big = framePacket(`M0,20:${"00".repeat(32)}`);
    expect(p.push(Buffer.concat([big, framePacket("g")])).map((e) => e.type)).toEqual(["oversized", "packet"]);
    // Exactly the limit is fine.
    expect(p.push(framePacket("x".repeat(16))).map((e) => e.type)).toEqual(["packet"]);
  });

  it("treats 0x03 inside a packet as data (binary X payloads may hold it)", () => {
    const p = new PacketParser(64);
    const ev = p.push(framePacket(Buffer.from([0x58, 0x03, 0x3a])));
    expect(ev).toEqual([{ type: "packet", data: Buffer.from([0x58, 0x03, 0x3a]) }]);
  });

  it("round-trips any escaped payload framed by framePacket, in any chunking", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.array(fc.nat(220), { maxLength: 5 }), (data, cuts) => {
        const frame = framePacket(escapeBinary(data));
        const p = new PacketParser(512);
        const points = [...new Set(cuts.map((c) => Math.min(c, frame.length)))].sort((a, b) => a - b);
        const events = [];
        let prev = 0;
        for (const c of [...points, frame.length]) {
          events.push(...p.push(frame.subarray(prev, c)));
          prev = c;
        }
        expect(events).toHaveLength(1);
        const e = events[0]!;
        expect(e.type).toBe("packet");
        if (e.type === "packet") expect([...unescapeBinary(e.data)]).toEqual([...data]);
      }),
      { numRuns: 500 },
    );
  });
});
