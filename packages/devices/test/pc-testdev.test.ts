import { PC_TESTDEV_IRQ_LINES, PC_TESTDEV_IRQ_PORT, PcTestDev, PioBus } from "@tsvmm/devices";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

function wired(): { dev: PcTestDev; bus: PioBus; irqs: [number, boolean][] } {
  const irqs: [number, boolean][] = [];
  const dev = new PcTestDev({ irq: (line, level) => irqs.push([line, level]) });
  const bus = new PioBus();
  dev.attach(bus);
  return { dev, bus, irqs };
}

describe("PcTestDev", () => {
  it("0xe0-0xe3 is a scratch register: any width at any offset reads back what a reference model holds", () => {
    const access = fc.record({ write: fc.boolean(), offset: fc.integer({ min: 0, max: 3 }), size: fc.constantFrom(1, 2, 4), value: fc.integer({ min: 0, max: 0xffffffff }) });
    fc.assert(
      fc.property(fc.array(access, { maxLength: 30 }), (ops) => {
        const { bus } = wired();
        const model = Buffer.alloc(4);
        for (const op of ops) {
          if (op.offset + op.size > 4) continue; // would straddle into 0xe4: another device
          const port = 0xe0 + op.offset;
          if (op.write) {
            bus.writeValue(port, op.size, op.value % 2 ** (8 * op.size));
            model.writeUIntLE(op.value % 2 ** (8 * op.size), op.offset, op.size);
          } else {
            expect(bus.readValue(port, op.size)).toBe(model.readUIntLE(op.offset, op.size));
          }
        }
        expect(bus.readValue(0xe0, 4)).toBe(model.readUInt32LE(0));
      }),
      { numRuns: 200 },
    );
  });

  it("0x2000 + n drives IRQ line n: non-zero raises, zero lowers; only the addressed line", () => {
    const { dev, bus, irqs } = wired();
    bus.writeValue(0x200b, 4, 1);
    bus.writeValue(0x200b, 4, 0);
    bus.writeValue(0x2000, 1, 0x80);
    bus.writeValue(0x2017, 1, 2);
    bus.writeValue(0x2004, 2, 0x0100);
    expect(irqs).toEqual([
      [11, true],
      [11, false],
      [0, true],
      [23, true],
      [4, true],
    ]);
    expect(dev.lines.filter(Boolean)).toHaveLength(3);
    expect(bus.readValue(0x2003, 1)).toBe(0);
    // Past the last line belongs to nobody: the bus default (all-ones), no IRQ.
    expect(bus.readValue(PC_TESTDEV_IRQ_PORT + PC_TESTDEV_IRQ_LINES, 1)).toBe(0xff);
  });

  it("0xe4 takes the flush-page address and reads 0", () => {
    const { dev, bus } = wired();
    bus.writeValue(0xe4, 4, 0x12345000);
    expect(dev.lastFlush).toBe(0x12345000);
    expect(bus.readValue(0xe4, 4)).toBe(0);
  });

  it("works without an IRQ callback (lines are only recorded)", () => {
    const dev = new PcTestDev();
    const bus = new PioBus();
    dev.attach(bus);
    bus.writeValue(0x2001, 1, 1);
    expect(dev.lines[1]).toBe(true);
  });
});
