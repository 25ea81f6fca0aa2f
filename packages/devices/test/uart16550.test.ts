import { Writable } from "node:stream";
import { PioBus, UART_PARTIAL_LINE_MS, Uart16550 } from "@tsvmm/devices";
import fc from "fast-check";
import { describe, expect, it, vi } from "vitest";

const COM1 = 0x3f8;
// Register offsets, from the 16550 data sheet.
const RBR = 0;
const IER = 1;
const IIR = 2;
const FCR = 2;
const LCR = 3;
const MCR = 4;
const LSR = 5;
const MSR = 6;
const SCR = 7;

function setup(opts: ConstructorParameters<typeof Uart16550>[0] = {}) {
  const levels: boolean[] = [];
  const out: number[] = [];
  const uart = new Uart16550({ irq: (l) => levels.push(l), output: (b) => out.push(b), ...opts });
  const bus = new PioBus();
  bus.register(COM1, 8, uart);
  const inb = (r: number) => bus.readValue(COM1 + r, 1);
  const outb = (r: number, v: number) => bus.writeValue(COM1 + r, 1, v);
  return { uart, bus, inb, outb, levels, out };
}

describe("Uart16550 registers", () => {
  it("powers on as a 16550A with nothing pending", () => {
    const { inb } = setup();
    expect([inb(IER), inb(IIR), inb(LCR), inb(MCR), inb(LSR), inb(MSR), inb(SCR)]).toEqual([
      0x00,
      0x01, // no interrupt pending, FIFOs off
      0x00,
      0x00,
      0x60, // THRE | TEMT
      0xb0, // CTS | DSR | DCD: a connected terminal
      0x00,
    ]);
  });

  it("scratch register keeps any byte", () => {
    const { inb, outb } = setup();
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 255 }), (v) => {
        outb(SCR, v);
        expect(inb(SCR)).toBe(v);
      }),
      { numRuns: 100 },
    );
  });

  it("DLAB maps offsets 0/1 to the divisor latch without transmitting", () => {
    const { uart, inb, outb, out } = setup();
    outb(IER, 0x05);
    outb(LCR, 0x83);
    outb(RBR, 0x01);
    outb(IER, 0x00);
    expect([inb(RBR), inb(IER)]).toEqual([0x01, 0x00]);
    expect(uart.divisor).toBe(1);
    outb(LCR, 0x03);
    expect(inb(IER)).toBe(0x05);
    expect(inb(LCR)).toBe(0x03);
    expect(out).toEqual([]);
    outb(RBR, 0x41);
    expect(out).toEqual([0x41]);
  });

  it("IER keeps its low four bits only; MCR its low five", () => {
    const { inb, outb } = setup();
    outb(IER, 0xff);
    expect(inb(IER)).toBe(0x0f);
    outb(IER, 0);
    outb(MCR, 0xff);
    expect(inb(MCR)).toBe(0x1f);
  });

  it("writes to LSR and MSR are ignored", () => {
    const { inb, outb } = setup();
    outb(LSR, 0x1f);
    outb(MSR, 0x0f);
    expect([inb(LSR), inb(MSR)]).toEqual([0x60, 0xb0]);
  });

  it("a wide access is split into byte lanes", () => {
    const { bus, inb, outb } = setup();
    outb(SCR, 0x5a);
    expect(bus.readValue(COM1 + LSR, 2)).toBe(0x60 | (0xb0 << 8));
    bus.writeValue(COM1 + MCR - 1, 2, 0x0b03);
    expect([inb(LCR), inb(MCR)]).toEqual([0x03, 0x0b]);
  });
});

describe("Linux 8250 probe", () => {
  // The sequence of autoconfig() in drivers/tty/serial/8250/8250_port.c, reduced to its decisions.
  function linuxAutoconfig(inb: (r: number) => number, outb: (r: number, v: number) => void): string {
    outb(IER, 0);
    const s2 = inb(IER) & 0x0f;
    outb(IER, 0x0f);
    const s3 = inb(IER) & 0x0f;
    outb(IER, 0);
    if (s2 !== 0 || s3 !== 0x0f) return "none (IER test)";
    const saveMcr = inb(MCR);
    outb(MCR, 0x10 | 0x0a);
    const status1 = inb(MSR) & 0xf0;
    outb(MCR, saveMcr);
    if (status1 !== 0x90) return "none (loopback test)";
    outb(LCR, 0);
    outb(FCR, 0x01);
    const kind = inb(IIR) >> 6;
    if (kind !== 3) return ["8250/16450", "16550 (buggy FIFO)", "unknown", ""][kind]!;
    // autoconfig_16550a: EFR probes read offset 2 with LCR = 0x80 and 0xbf; 0 there means EFR.
    outb(LCR, 0x80);
    if (inb(2) === 0) return "ST16C650V1";
    outb(LCR, 0xbf);
    if (inb(2) === 0) return "has EFR";
    // National SuperIO probe: EXCR1 (offset 2 with LCR = 0xe0) must not follow MCR's LOOP bit.
    outb(LCR, 0);
    const m1 = inb(MCR);
    outb(LCR, 0xe0);
    let m2 = inb(2);
    if (!((m2 ^ m1) & 0x10)) {
      outb(LCR, 0);
      outb(MCR, m1 ^ 0x10);
      outb(LCR, 0xe0);
      m2 = inb(2);
      outb(LCR, 0);
      outb(MCR, m1);
      if ((m2 ^ m1) & 0x10) return "NS16550A SuperIO";
    }
    // TI16750: IIR bit 5 set only with 64-byte mode requested under DLAB.
    outb(LCR, 0);
    outb(FCR, 0x01 | 0x20);
    const t1 = inb(IIR) & 0xe0;
    outb(FCR, 0);
    outb(LCR, 0x80);
    outb(FCR, 0x01 | 0x20);
    const t2 = inb(IIR) & 0xe0;
    outb(FCR, 0);
    outb(LCR, 0);
    if (t1 === 0xc0 && t2 === 0xe0) return "16750";
    // XScale: IER bit 6 (UUE) sticks.
    const ier = inb(IER);
    outb(IER, ier & ~0x40);
    if (!(inb(IER) & 0x40)) {
      outb(IER, ier | 0x40);
      if (inb(IER) & 0x40) return "XScale";
    }
    outb(IER, ier);
    return "16550A";
  }

  it("identifies the UART as a 16550A", () => {
    const { inb, outb } = setup();
    expect(linuxAutoconfig(inb, outb)).toBe("16550A");
  });

  it("passes the startup THRE tests: enabling THRI on an empty THR raises it, every time", () => {
    const { inb, outb } = setup();
    outb(FCR, 0x07);
    for (let i = 0; i < 2; i++) {
      outb(IER, 0x02);
      const lsr = inb(LSR);
      const iir = inb(IIR);
      outb(IER, 0);
      expect(lsr & 0x40).toBe(0x40);
      expect(iir & 0x01).toBe(0);
      expect(iir & 0x0f).toBe(0x02);
    }
  });
});

describe("Uart16550 loopback", () => {
  it("sends THR to RBR, not to the output, and maps MCR outputs to MSR inputs", () => {
    const { inb, outb, out } = setup();
    outb(MCR, 0x10);
    expect(inb(MSR)).toBe(0x0b); // CTS, DSR, DCD dropped: delta bits only
    outb(RBR, 0x55);
    expect(inb(LSR) & 0x01).toBe(1);
    expect(inb(RBR)).toBe(0x55);
    expect(inb(LSR) & 0x01).toBe(0);
    expect(out).toEqual([]);
    outb(MCR, 0x10 | 0x04); // OUT1 -> RI
    expect(inb(MSR)).toBe(0x40);
    outb(MCR, 0x10); // RI falls: TERI
    expect(inb(MSR)).toBe(0x04);
    outb(MCR, 0x10 | 0x01 | 0x02 | 0x08);
    expect(inb(MSR)).toBe(0x20 | 0x10 | 0x80 | 0x02 | 0x01 | 0x08);
  });

  it("round-trips up to 16 bytes through the FIFO in order", () => {
    const { inb, outb } = setup();
    outb(FCR, 0x07);
    outb(MCR, 0x10);
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 16 }), (bytes) => {
        for (const b of bytes) outb(RBR, b);
        const got: number[] = [];
        while (inb(LSR) & 0x01) got.push(inb(RBR));
        expect(got).toEqual([...bytes]);
        expect(inb(LSR) & 0x02).toBe(0);
      }),
      { numRuns: 100 },
    );
  });

  it("ignores wire input while in loopback", () => {
    const { uart, inb, outb } = setup();
    outb(MCR, 0x10);
    uart.receive([1, 2, 3]);
    expect(inb(LSR) & 0x01).toBe(0);
  });
});

describe("Uart16550 receive path", () => {
  it("non-FIFO: one holding register, overrun overwrites and sets OE until LSR is read", () => {
    const { uart, inb } = setup();
    uart.receive([0x61]);
    expect(inb(LSR)).toBe(0x61);
    uart.receive([0x62, 0x63]);
    expect(inb(LSR)).toBe(0x60 | 0x02 | 0x01);
    expect(inb(LSR)).toBe(0x61);
    expect(inb(RBR)).toBe(0x63);
    expect(inb(LSR)).toBe(0x60);
    // An empty receiver repeats the last byte.
    expect(inb(RBR)).toBe(0x63);
  });

  it("FIFO: keeps 16 bytes, the 17th is lost with OE", () => {
    const { uart, inb, outb } = setup();
    outb(FCR, 0x01);
    const bytes = Array.from({ length: 17 }, (_, i) => 0x30 + i);
    uart.receive(bytes);
    expect(uart.rxLevel).toBe(16);
    expect(inb(LSR) & 0x03).toBe(0x03);
    const got: number[] = [];
    while (inb(LSR) & 0x01) got.push(inb(RBR));
    expect(got).toEqual(bytes.slice(0, 16));
  });

  it("FCR clears the receive FIFO; turning FIFOs off empties them", () => {
    const { uart, inb, outb } = setup();
    outb(FCR, 0x01);
    uart.receive([1, 2, 3]);
    outb(FCR, 0x03);
    expect(inb(LSR) & 0x01).toBe(0);
    uart.receive([4, 5]);
    outb(FCR, 0x00);
    expect(inb(LSR) & 0x01).toBe(0);
    expect(inb(IIR) & 0xc0).toBe(0);
  });

  it("break sets BI, the FIFO error bit, and delivers a 0 byte", () => {
    const { uart, inb, outb } = setup();
    outb(FCR, 0x01);
    uart.receiveBreak();
    expect(inb(LSR)).toBe(0x80 | 0x40 | 0x20 | 0x10 | 0x01);
    expect(inb(LSR)).toBe(0x61);
    expect(inb(RBR)).toBe(0);
  });

  it("queued host input is flow-controlled: nothing is lost however much arrives", () => {
    const { uart, inb, outb } = setup();
    outb(FCR, 0x01);
    const text = "The quick brown fox jumps over the lazy dog";
    uart.queueInput(text);
    expect(uart.rxLevel).toBe(16);
    let got = "";
    while (inb(LSR) & 0x01) got += String.fromCharCode(inb(RBR));
    expect(got).toBe(text);
    expect(inb(LSR) & 0x02).toBe(0);
    expect(uart.pendingInput).toBe(0);
  });

  it("connectInput feeds a stream through the same queue", async () => {
    const { uart, inb } = setup();
    const { PassThrough } = await import("node:stream");
    const src = new PassThrough();
    const disconnect = uart.connectInput(src);
    src.write("hi");
    await new Promise((r) => setImmediate(r));
    expect(String.fromCharCode(inb(RBR), inb(RBR))).toBe("hi");
    disconnect();
    src.write("x");
    await new Promise((r) => setImmediate(r));
    expect(inb(LSR) & 0x01).toBe(0);
  });
});

describe("Uart16550 interrupts", () => {
  it("THR empty: raised when enabled, cleared by reading IIR, re-raised after each THR write with an edge", () => {
    const { inb, outb, levels, out } = setup();
    outb(IER, 0x02);
    expect(levels).toEqual([true]);
    expect(inb(IIR)).toBe(0x02);
    expect(levels).toEqual([true, false]);
    expect(inb(IIR)).toBe(0x01);
    outb(RBR, 0x41);
    expect(levels).toEqual([true, false, true]);
    outb(RBR, 0x42);
    // Already high: the THR write drops the line, transmission raises it again.
    expect(levels).toEqual([true, false, true, false, true]);
    outb(IER, 0);
    expect(levels.at(-1)).toBe(false);
    expect(out).toEqual([0x41, 0x42]);
  });

  it("received data: RDI at the trigger level, character timeout below it", () => {
    const { uart, inb, outb, levels } = setup();
    outb(FCR, 0x41); // FIFO on, trigger level 4
    outb(IER, 0x01);
    uart.receive([1, 2]);
    expect(inb(IIR)).toBe(0xcc);
    uart.receive([3, 4]);
    expect(inb(IIR)).toBe(0xc4);
    for (let i = 0; i < 4; i++) inb(RBR);
    expect(inb(IIR)).toBe(0xc1);
    expect(levels).toEqual([true, false]);
  });

  it("non-FIFO received data reports plain RDI", () => {
    const { uart, inb, outb } = setup();
    outb(IER, 0x01);
    uart.receive([9]);
    expect(inb(IIR)).toBe(0x04);
    inb(RBR);
    expect(inb(IIR)).toBe(0x01);
  });

  it("priority: line status > received data > THR empty > modem status", () => {
    const { uart, inb, outb, levels } = setup();
    outb(FCR, 0x01);
    uart.receive(Array.from({ length: 17 }, () => 0x20)); // data + overrun
    uart.setModemInputs({ dcd: false }); // a modem-status delta
    outb(IER, 0x0f);
    expect(levels).toEqual([true]);
    expect(inb(IIR)).toBe(0xc6);
    expect(inb(IIR)).toBe(0xc6); // still: only reading LSR clears it
    inb(LSR);
    expect(inb(IIR)).toBe(0xc4);
    while (inb(LSR) & 0x01) inb(RBR);
    expect(inb(IIR)).toBe(0xc2); // reading this IIR acknowledges THRE
    expect(inb(IIR)).toBe(0xc0);
    expect(inb(MSR)).toBe(0x30 | 0x08);
    expect(inb(IIR)).toBe(0xc1);
    expect(levels).toEqual([true, false]);
  });

  it("modem-status interrupt from external inputs, cleared by reading MSR; RI counts only its trailing edge", () => {
    const { uart, inb, outb } = setup();
    outb(IER, 0x08);
    uart.setModemInputs({ ri: true });
    expect(uart.irqLevel).toBe(false);
    expect(inb(MSR)).toBe(0xf0);
    uart.setModemInputs({ ri: false });
    expect(uart.irqLevel).toBe(true);
    expect(inb(MSR)).toBe(0xb4);
    expect(uart.irqLevel).toBe(false);
    uart.setModemInputs({ cts: false });
    expect(uart.irqLevel).toBe(true);
    expect(inb(MSR)).toBe(0xa1);
  });

  it("the irq callback fires only on changes and always agrees with IIR", () => {
    const act = fc.oneof(
      fc.record({ w: fc.integer({ min: 0, max: 7 }), v: fc.integer({ min: 0, max: 255 }) }),
      fc.record({ r: fc.integer({ min: 0, max: 7 }) }),
      fc.record({ rx: fc.uint8Array({ maxLength: 20 }) }),
      fc.record({ dcd: fc.boolean() }),
    );
    fc.assert(
      fc.property(fc.array(act, { maxLength: 80 }), (acts) => {
        const { uart, bus, levels } = setup();
        for (const a of acts) {
          if ("w" in a) bus.writeValue(COM1 + a.w, 1, a.v);
          else if ("r" in a) bus.readValue(COM1 + a.r, 1);
          else if ("rx" in a) uart.receive(a.rx);
          else uart.setModemInputs({ dcd: a.dcd });
          for (let i = 1; i < levels.length; i++) expect(levels[i]).not.toBe(levels[i - 1]);
          expect(levels.at(-1) ?? false).toBe(uart.irqLevel);
        }
        // Peek IIR without DLAB games: offset 2 always reads IIR on a 16550A.
        const iir = bus.readValue(COM1 + IIR, 1);
        if ((iir & 0x0f) !== 0x02) expect((iir & 1) === 0).toBe(uart.irqLevel);
      }),
      { numRuns: 120 },
    );
  });
});

describe("Uart16550 output", () => {
  it("writes to a stream in chunks: a whole line at once, a partial line after UART_PARTIAL_LINE_MS or on flush", () => {
    vi.useFakeTimers();
    try {
      const chunks: string[] = [];
      const sink = new Writable({
        write(chunk: Buffer, _enc, cb) {
          chunks.push(chunk.toString());
          cb();
        },
      });
      const uart = new Uart16550({ output: sink });
      const bus = new PioBus();
      bus.register(COM1, 8, uart);
      const print = (s: string) => {
        for (const c of s) bus.writeValue(COM1, 1, c.charCodeAt(0));
      };
      print("hello\nwor");
      expect(chunks).toEqual(["hello\n"]);
      // The partial line waits (turns of the event loop alone do not write it)...
      vi.advanceTimersByTime(UART_PARTIAL_LINE_MS - 1);
      expect(chunks).toEqual(["hello\n"]);
      // ...then goes out as it is.
      vi.advanceTimersByTime(1);
      expect(chunks).toEqual(["hello\n", "wor"]);
      print("d");
      uart.flush();
      expect(chunks).toEqual(["hello\n", "wor", "d"]);
      // A line completed within the wait is one chunk, and nothing is left over to write.
      print("ab");
      vi.advanceTimersByTime(UART_PARTIAL_LINE_MS - 1);
      print("c\n");
      vi.advanceTimersByTime(10 * UART_PARTIAL_LINE_MS);
      expect(chunks).toEqual(["hello\n", "wor", "d", "abc\n"]);
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });

  it("onOutput listeners can be added and removed", () => {
    const { uart, outb, out } = setup();
    const extra: number[] = [];
    const off = uart.onOutput((b) => extra.push(b));
    outb(RBR, 1);
    off();
    outb(RBR, 2);
    expect(out).toEqual([1, 2]);
    expect(extra).toEqual([1]);
  });

  it("rejects an output that is neither a function nor a stream", () => {
    expect(() => new Uart16550({ output: 42 as unknown as (b: number) => void })).toThrow(
      expect.objectContaining({ code: "DEVICE_INVALID_OPTION" }),
    );
  });

  it("reset returns to the power-on state", () => {
    const { uart, inb, outb } = setup();
    outb(LCR, 0x83);
    outb(IER, 0x0f);
    outb(SCR, 9);
    outb(FCR, 0x01);
    uart.reset();
    expect([inb(IER), inb(IIR), inb(LCR), inb(LSR), inb(SCR)]).toEqual([0, 1, 0, 0x60, 0]);
  });
});

describe("Uart16550 deferred THR writes (for a VMM's coalesced ring)", () => {
  it("thrWritesDeferrable is IER.THRI clear and not loopback; the listener hears each change before the write returns", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom(IER, MCR, LCR, RBR, SCR), fc.integer({ min: 0, max: 255 })), { maxLength: 40 }),
        (writes) => {
          const { uart, outb, inb } = setup();
          const heard: boolean[] = [];
          uart.onThrWritesDeferrableChange((d) => heard.push(d));
          let expected = true;
          const expectedHeard: boolean[] = [];
          for (const [reg, v] of writes) {
            outb(reg, v);
            // Read IER with DLAB clear (then put LCR back): the real IER, not DLM.
            const lcr = inb(LCR);
            outb(LCR, lcr & 0x7f);
            const ier = inb(IER);
            outb(LCR, lcr);
            const now = (ier & 0x02) === 0 && (inb(MCR) & 0x10) === 0;
            if (now !== expected) expectedHeard.push(now);
            expected = now;
            expect(uart.thrWritesDeferrable).toBe(now);
            expect(heard).toEqual(expectedHeard);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("reset and restoreState report a change too", () => {
    const { uart, outb } = setup();
    const heard: boolean[] = [];
    const off = uart.onThrWritesDeferrableChange((d) => heard.push(d));
    outb(IER, 0x02);
    const saved = uart.saveState();
    uart.reset();
    uart.restoreState(saved);
    off();
    uart.reset();
    expect(heard).toEqual([false, true, false]);
  });

  it("flush, saveState, reset and the partial-line timer take the held writes first, in order", () => {
    vi.useFakeTimers();
    try {
      const chunks: string[] = [];
      const uart = new Uart16550({ output: { write: (c: Uint8Array) => chunks.push(Buffer.from(c).toString()) } });
      const bus = new PioBus();
      bus.register(COM1, 8, uart);
      // What a ring would hold: bytes written by the guest, not yet handed to the device.
      let held: number[] = [];
      uart.setDeferredWrites(() => {
        const now = held;
        held = [];
        for (const b of now) bus.writeValue(COM1, 1, b);
      });
      const hold = (s: string) => held.push(...[...s].map((c) => c.charCodeAt(0)));
      hold("ab");
      uart.flush();
      expect(chunks).toEqual(["ab"]);
      hold("c\nd");
      uart.saveState();
      expect(chunks).toEqual(["ab", "c\n", "d"]);
      // Written before the timer but not handed over: the timer's flush takes it in.
      bus.writeValue(COM1, 1, "e".charCodeAt(0));
      hold("f");
      vi.advanceTimersByTime(UART_PARTIAL_LINE_MS);
      expect(chunks).toEqual(["ab", "c\n", "d", "ef"]);
      hold("g");
      uart.reset();
      expect(chunks).toEqual(["ab", "c\n", "d", "ef", "g"]);
      uart.setDeferredWrites(undefined);
      hold("h");
      uart.flush();
      expect(chunks.length).toBe(5);
    } finally {
      vi.useRealTimers();
    }
  });
});
