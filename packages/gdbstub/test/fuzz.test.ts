// Hostile byte streams against the packet parser and a whole session. TSVMM_FUZZ_SCALE
// multiplies the runs (`npm run fuzz` uses 10: 10^6 parser inputs).
import { checksum, escapeBinary, framePacket, PacketParser, type ParserEvent } from "@tsvmm/gdbstub";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Client } from "./helpers/client.js";
import { insn, Op, SimTarget } from "./helpers/sim-target.js";

const SCALE = Number(process.env.TSVMM_FUZZ_SCALE ?? "1");
const MAX = 256;
const QC = Buffer.from("qC");

/** Bytes that mean something to the framing, so random streams hit every parser state. */
const special = fc.constantFrom(0x24, 0x23, 0x7d, 0x2a, 0x03, 0x2b, 0x2d, 0x30, 0x61, 0x66);
const chunk = fc.oneof(
  fc.uint8Array({ maxLength: 48 }),
  fc.array(fc.oneof(special, fc.nat(255)), { maxLength: 48 }).map((a) => Uint8Array.from(a)),
  // A well-framed packet (valid checksum) with random, possibly RLE-looking, contents.
  fc.uint8Array({ maxLength: 40 }).map((b) => framePacket(b.filter((x) => x !== 0x23 && x !== 0x24))),
  // A framed packet with a wrong checksum.
  fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.concat([Buffer.from("$"), b.filter((x) => x !== 0x23 && x !== 0x24), Buffer.from(`#${((checksum(b) + 1) & 0xff).toString(16).padStart(2, "0")}`)])),
  // Longer than the parser keeps.
  fc.integer({ min: MAX - 2, max: MAX + 40 }).map((n) => framePacket("x".repeat(n))),
);

// Plain checks in the hot loop: vitest's expect costs more than the parser.
function checkEvents(events: ParserEvent[]): void {
  for (const e of events) if (e.type === "packet" && e.data.length > MAX) throw new Error(`packet of ${e.data.length} bytes`);
}

describe("fuzz: PacketParser", () => {
  it(`${100_000 * SCALE} hostile inputs: no exception, no packet over the limit, and the parser resynchronises`, () => {
    const p = new PacketParser(MAX);
    const good = framePacket("qC");
    fc.assert(
      fc.property(fc.array(chunk, { maxLength: 4 }), (chunks) => {
        for (const c of chunks) checkEvents(p.push(c));
        // Whatever came before, a '$' starts afresh: the next good packet is seen intact.
        const last = p.push(good).at(-1);
        if (last?.type !== "packet" || !last.data.equals(QC)) throw new Error(`lost sync: ${JSON.stringify(last)}`);
      }),
      { numRuns: 100_000 * SCALE },
    );
  });

  it("memory stays bounded over 64 MiB of hostile stream", () => {
    const p = new PacketParser(0x4000);
    const junk = Buffer.alloc(1 << 20);
    for (let i = 0; i < junk.length; i++) junk[i] = (i * 2654435761) >>> 24;
    // An endless packet: '$' then never '#'.
    const endless = Buffer.alloc(1 << 20, 0x41);
    // Buffers live outside the JS heap: count both.
    const used = (): number => {
      const m = process.memoryUsage();
      return m.heapUsed + m.arrayBuffers;
    };
    const before = used();
    p.push(Buffer.from("$"));
    for (let i = 0; i < 32; i++) {
      p.push(endless);
      p.push(junk);
    }
    const grown = used() - before;
    expect(grown).toBeLessThan(16 << 20);
    expect(p.push(framePacket("g"))).toEqual([{ type: "packet", data: Buffer.from("g") }]);
  });
});

/** A command with plausible syntax and hostile arguments. */
const hexs = fc.stringMatching(/^[0-9a-fA-F]{0,20}$/);
const arg = fc.oneof(hexs, fc.string({ maxLength: 12 }), fc.constantFrom("-1", "0", "1", "2", "ffffffffffffffff", "p1.1", ""));
const command = fc.oneof(
  fc.tuple(fc.constantFrom("m", "M", "X", "Z0,", "Z1,", "Z2,", "Z3,", "Z4,", "z0,", "z2,", "p", "P", "Hg", "Hc", "T", "qThreadExtraInfo,", "qXfer:features:read:target.xml:", "vCont;", "vCont;s:", "vCont;c:", "s", "S", "C", "G", "qSupported:", "g", "?", "qC", "qfThreadInfo", "qsThreadInfo", "qAttached"), arg, fc.constantFrom("", ",", ":", "=", ";"), arg).map(([c, a, sep, b]) => `${c}${a}${sep}${b}`),
  fc.string({ maxLength: 30 }),
);

async function withTimeout<T>(p: Promise<T>, what: string, ms = 2000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} hung`)), ms);
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

describe("fuzz: a whole session over the simulated target", () => {
  it(`${500 * SCALE} sequences of hostile commands: every reply is framed, the session keeps answering`, async () => {
    const errors: unknown[] = [];
    const onRejection = (e: unknown): void => {
      errors.push(e);
    };
    process.on("unhandledRejection", onRejection);
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(fc.oneof(command.map((c) => framePacket(escapeBinary(Buffer.from(c, "latin1")))), chunk), { maxLength: 8 }), async (inputs) => {
          const sim = new SimTarget({ vcpus: 2, slice: 4 });
          // A spin loop: a stray continue never ends on its own; Ctrl-C below stops it.
          sim.load(0x1000, insn(Op.JMP, 0, 0x1000));
          const c = new Client(sim, { maxPacketSize: MAX });
          for (const i of inputs) c.bytes(i);
          await c.settle();
          const framed = (): void => {
            const bad = c.events.find((e) => e.type !== "packet" && e.type !== "ack" && e.type !== "nack");
            if (bad) throw new Error(`session sent something unframed: ${bad.type}`);
          };
          framed();
          // D, k and vKill end the session by design; otherwise it must still answer. Queued
          // resumes may each need their own Ctrl-C before D's turn comes.
          if (!c.session.finished) {
            c.events.length = 0;
            c.send("D");
            let answer: string | undefined;
            for (let i = 0; i < 40 && answer === undefined; i++) {
              c.bytes("\x03");
              await c.settle();
              framed();
              for (const e of c.events) if (e.type === "packet" && /^(OK|E..)$/.test(e.data.toString())) answer = e.data.toString();
              c.events.length = 0;
            }
            expect(answer).toBeDefined();
          }
          await withTimeout(c.session.dispose(), "dispose");
          // A detached sim spins on in the background; stop it so runs do not pile up.
          sim.kill();
        }),
        { numRuns: 500 * SCALE },
      );
    } finally {
      process.off("unhandledRejection", onRejection);
    }
    expect(errors).toEqual([]);
  });
});
