import {
  MmioBus,
  PC_TESTDEV_IOMEM_BASE,
  PC_TESTDEV_IOMEM_SIZE,
  PcTestDevIomem,
  PioBus,
  PM_TIMER_FREQUENCY_HZ,
  PM1_STS_WAK,
  PmDevice,
  PORT92,
  Port92,
} from "@tsvmm/devices";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

/** A clock the test moves by hand. */
function manualClock(start = 1_000_000n): { now: () => bigint; advance: (ns: bigint) => void } {
  let t = start;
  return {
    now: () => t,
    advance: (ns) => {
      t += ns;
    },
  };
}

function pmOnBus(options: ConstructorParameters<typeof PmDevice>[0] = {}): { pm: PmDevice; bus: PioBus } {
  const pm = new PmDevice(options);
  const bus = new PioBus();
  pm.attach(bus);
  return { pm, bus };
}

describe("PmDevice (ACPI PM1a event/control, PM timer)", () => {
  it("PM1 control reads SCI_EN; SLP_TYP without SLP_EN does nothing; SLP_EN with SLP_TYP 5 powers off once per write", () => {
    let offs = 0;
    const { pm, bus } = pmOnBus({ onPowerOff: () => offs++ });
    expect(bus.readValue(0x604, 2)).toBe(1);
    bus.writeValue(0x604, 2, 0x1401); // what ACPICA writes first: SLP_TYP=5, SLP_EN clear
    expect(offs).toBe(0);
    expect(bus.readValue(0x604, 2)).toBe(0x1401);
    bus.writeValue(0x604, 2, 0x3401);
    expect(offs).toBe(1);
    // SLP_EN is write-only.
    expect(bus.readValue(0x604, 2) & 0x2000).toBe(0);
    // A byte write of the high half (SLP_EN | SLP_TYP=5) also counts.
    bus.writeValue(0x605, 1, 0x34);
    expect(offs).toBe(2);
    expect(pm.powerOffRequests).toBe(2);
  });

  it("the S5 sleep type is an option: with 7, a 0x3401 write is another sleep state that wakes at once (WAK_STS)", () => {
    let offs = 0;
    const { bus } = pmOnBus({ s5SleepType: 7, onPowerOff: () => offs++ });
    bus.writeValue(0x604, 2, 0x3401);
    expect(offs).toBe(0);
    expect(bus.readValue(0x600, 2) & PM1_STS_WAK).toBe(PM1_STS_WAK);
    bus.writeValue(0x604, 2, 0x3c01); // SLP_TYP 7 | SLP_EN
    expect(offs).toBe(1);
    expect(() => new PmDevice({ s5SleepType: 8 })).toThrow(expect.objectContaining({ code: "DEVICE_INVALID_OPTION" }));
  });

  it("PM1 status is write-1-to-clear, PM1 enable stores, both through 16- and 32-bit accesses", () => {
    const { pm, bus } = pmOnBus({ onSleep: () => {} });
    pm.status = 0x8121;
    bus.writeValue(0x600, 2, 0x0101);
    expect(pm.status).toBe(0x8020);
    bus.writeValue(0x602, 2, 0x0120);
    expect(pm.enable).toBe(0x0120);
    expect(bus.readValue(0x600, 4)).toBe((0x0120 << 16) | 0x8020);
    // A 32-bit write clears status bits and sets enable in one go.
    bus.writeValue(0x600, 4, (0x0001 << 16) | 0x8000);
    expect(pm.status).toBe(0x0020);
    expect(pm.enable).toBe(0x0001);
  });

  it("PM timer: 3.579545 MHz from the clock, 24-bit wrap (32 with timer32Bit), any read width", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 10n ** 13n }), fc.boolean(), (ns, wide) => {
        const clock = manualClock();
        const { bus } = pmOnBus({ clock: clock.now, timer32Bit: wide });
        clock.advance(ns);
        const ticks = (ns * BigInt(PM_TIMER_FREQUENCY_HZ)) / 1_000_000_000n;
        const want = Number(ticks & (wide ? 0xffffffffn : 0xffffffn));
        expect(bus.readValue(0x608, 4)).toBe(want);
        expect(bus.readValue(0x608, 2)).toBe(want & 0xffff);
        expect(bus.readValue(0x60a, 1)).toBe((want >>> 16) & 0xff);
      }),
      { numRuns: 300 },
    );
  });

  it("PM timer on the real clock advances at 3.58 MHz (within 20%) and writes do not move it", async () => {
    const { pm, bus } = pmOnBus();
    const t0 = process.hrtime.bigint();
    const a = pm.timerValue();
    bus.writeValue(0x608, 4, 0);
    await new Promise((r) => setTimeout(r, 50));
    const b = pm.timerValue();
    const ns = Number(process.hrtime.bigint() - t0);
    const rate = (((b - a) & 0xffffff) / ns) * 1e9;
    expect(rate).toBeGreaterThan(PM_TIMER_FREQUENCY_HZ * 0.8);
    expect(rate).toBeLessThan(PM_TIMER_FREQUENCY_HZ * 1.2);
  });

  it("saveState/restoreState round-trip through JSON and the timer continues from the saved count", () => {
    const c1 = manualClock(5n);
    const a = new PmDevice({ clock: c1.now, onSleep: () => {} });
    a.status = 0x8001;
    a.enable = 0x0100;
    a.control.write(0, Buffer.from([0x01, 0x14]), { vcpu: 0 });
    c1.advance(123_456_789n);
    const saved = JSON.parse(JSON.stringify(a.saveState())) as ReturnType<PmDevice["saveState"]>;
    const c2 = manualClock(9_999_999_999n);
    const b = new PmDevice({ clock: c2.now });
    b.restoreState(saved);
    expect(b.saveState()).toEqual(saved);
    expect(b.timerValue()).toBe(a.timerValue());
    c2.advance(1_000_000_000n);
    expect(b.timerValue()).toBe((a.timerValue() + PM_TIMER_FREQUENCY_HZ) & 0xffffff);
    expect(b.controlValue).toBe(0x1401);
  });
});

describe("Port92 (System Control Port A)", () => {
  it("A20 (bit 1) starts set and reads back; bit 0 resets and reads 0", () => {
    let resets = 0;
    const dev = new Port92({ onReset: () => resets++ });
    const bus = new PioBus();
    dev.attach(bus);
    expect(bus.readValue(PORT92, 1)).toBe(0x02);
    bus.writeValue(PORT92, 1, 0x00);
    expect(dev.a20).toBe(false);
    expect(bus.readValue(PORT92, 1)).toBe(0x00);
    bus.writeValue(PORT92, 1, 0x02);
    expect(bus.readValue(PORT92, 1)).toBe(0x02);
    expect(resets).toBe(0);
    bus.writeValue(PORT92, 1, 0x03);
    expect(resets).toBe(1);
    expect(bus.readValue(PORT92, 1)).toBe(0x02);
    const s = JSON.parse(JSON.stringify(dev.saveState()));
    const other = new Port92();
    other.restoreState(s);
    expect(other.saveState()).toEqual(dev.saveState());
  });
});

describe("PcTestDevIomem (QEMU pc-testdev iomem at 0xff000000)", () => {
  it("behaves like 64 KiB of zeroed RAM at every width and offset (model check)", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            offset: fc.integer({ min: 0, max: PC_TESTDEV_IOMEM_SIZE - 8 }),
            size: fc.constantFrom(1, 2, 4, 8),
            value: fc.uint8Array({ minLength: 8, maxLength: 8 }),
            write: fc.boolean(),
          }),
          { maxLength: 60 },
        ),
        (ops) => {
          const dev = new PcTestDevIomem();
          const bus = new MmioBus();
          dev.attach(bus);
          const model = Buffer.alloc(PC_TESTDEV_IOMEM_SIZE);
          for (const op of ops) {
            const addr = PC_TESTDEV_IOMEM_BASE + op.offset;
            if (op.write) {
              const b = Buffer.from(op.value.subarray(0, op.size));
              bus.write(addr, b);
              b.copy(model, op.offset);
            } else {
              const b = Buffer.alloc(op.size, 0xee);
              bus.readInto(addr, b);
              expect(b.equals(model.subarray(op.offset, op.offset + op.size))).toBe(true);
            }
          }
          const copy = new PcTestDevIomem();
          copy.restoreState(JSON.parse(JSON.stringify(dev.saveState())));
          expect(copy.bytes.equals(model)).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("an access running past the end goes to the bus's default handler (all-ones), not past the buffer", () => {
    const dev = new PcTestDevIomem();
    const bus = new MmioBus();
    dev.attach(bus);
    const b = Buffer.alloc(4);
    bus.readInto(PC_TESTDEV_IOMEM_BASE + PC_TESTDEV_IOMEM_SIZE - 2, b);
    expect([...b]).toEqual([0xff, 0xff, 0xff, 0xff]);
  });
});
