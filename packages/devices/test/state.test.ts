import { GuestMemoryMap } from "@tsvmm/abi";
import {
  CmosRtc,
  DebugExit,
  DeviceError,
  FwCfg,
  HypercallDevice,
  I8042,
  isStateful,
  type JsonValue,
  PcTestDev,
  PioBus,
  PmDevice,
  PostCodePort,
  type Stateful,
  Uart16550,
} from "@tsvmm/devices";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

/** One device kind on its own bus, with everything it emits recorded. */
interface Rig {
  bus: PioBus;
  state: Stateful;
  /** Host-side inputs (UART receive/queueInput) as extra operations. */
  host?: (op: number, bytes: number[]) => void;
  events: string[];
}

type Kind = { name: string; ports: [number, number]; make: () => Rig };

const fixedNow = () => Date.UTC(2026, 11, 24, 13, 37, 42);

const KINDS: Kind[] = [
  {
    name: "uart16550",
    ports: [0x3f8, 8],
    make() {
      const events: string[] = [];
      const uart = new Uart16550({ output: (b) => events.push(`tx ${b}`), irq: (l) => events.push(`irq ${l}`) });
      const bus = new PioBus();
      bus.register(0x3f8, 8, uart);
      return {
        bus, state: uart, events,
        host: (op, bytes) => {
          if (op === 0) uart.receive(bytes);
          else if (op === 1) uart.queueInput(Uint8Array.from(bytes));
          else uart.setModemInputs({ cts: (bytes[0] ?? 0) % 2 === 0, ri: (bytes[0] ?? 0) % 3 === 0 });
        },
      };
    },
  },
  {
    name: "i8042",
    ports: [0x60, 5],
    make() {
      const events: string[] = [];
      const dev = new I8042({ onReset: () => events.push("reset") });
      const bus = new PioBus();
      dev.attach(bus);
      return { bus, state: dev, events };
    },
  },
  {
    name: "cmos-rtc",
    ports: [0x70, 2],
    make() {
      const dev = new CmosRtc({ now: fixedNow });
      const bus = new PioBus();
      bus.register(0x70, 2, dev);
      return { bus, state: dev, events: [] };
    },
  },
  {
    name: "fw-cfg",
    ports: [0x510, 2],
    make() {
      const dev = new FwCfg({ ramSize: 64 * 2 ** 20, cpus: 2, items: new Map([[0x20, Uint8Array.from([1, 2, 3, 4, 5])]]) });
      const bus = new PioBus();
      bus.register(0x510, 2, dev);
      return { bus, state: dev, events: [] };
    },
  },
  {
    name: "debug-exit",
    ports: [0xf4, 4],
    make() {
      const events: string[] = [];
      const dev = new DebugExit({ onExit: (c) => events.push(`exit ${c}`) });
      const bus = new PioBus();
      bus.register(0xf4, 4, dev);
      return { bus, state: dev, events };
    },
  },
  {
    name: "post",
    ports: [0x80, 1],
    make() {
      const dev = new PostCodePort();
      const bus = new PioBus();
      bus.register(0x80, 1, dev);
      return { bus, state: dev, events: [] };
    },
  },
  {
    name: "pc-testdev",
    ports: [0xe0, 8],
    make() {
      const events: string[] = [];
      const dev = new PcTestDev({ irq: (line, level) => events.push(`irq ${line} ${level}`) });
      const bus = new PioBus();
      dev.attach(bus);
      return { bus, state: dev, events };
    },
  },
];

type Op = { kind: "io"; offset: number; size: 1 | 2 | 4; write: boolean; value: number } | { kind: "host"; op: number; bytes: number[] };

const opArb = (span: number): fc.Arbitrary<Op> =>
  fc.oneof(
    { weight: 8, arbitrary: fc.record({ kind: fc.constant("io" as const), offset: fc.nat(span - 1), size: fc.constantFrom(1 as const, 1 as const, 2 as const, 4 as const), write: fc.boolean(), value: fc.nat(0xffffffff) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("host" as const), op: fc.nat(2), bytes: fc.array(fc.nat(255), { maxLength: 20 }) }) },
  );

/** Apply ops; returns what the guest read. pc-testdev's IRQ port lives at 0x2000, reached with offset >= 8. */
function apply(rig: Rig, base: number, ops: Op[]): number[] {
  const reads: number[] = [];
  for (const op of ops) {
    if (op.kind === "host") {
      rig.host?.(op.op, op.bytes);
      continue;
    }
    const port = base + op.offset;
    const size = Math.min(op.size, 0x10000 - port) as 1 | 2 | 4;
    if (op.write) rig.bus.writeValue(port, size, op.value % 2 ** (8 * size));
    else reads.push(rig.bus.readValue(port, size));
  }
  return reads;
}

describe("device state: what a restored device does is what the saved one would have done", () => {
  for (const k of KINDS) {
    it(`${k.name}: save after random accesses, restore into a fresh device, then both see the same future`, () => {
      fc.assert(
        fc.property(fc.array(opArb(k.ports[1]), { maxLength: 60 }), fc.array(opArb(k.ports[1]), { maxLength: 60 }), (before, after) => {
          const a = k.make();
          apply(a, k.ports[0], before);
          const saved = JSON.parse(JSON.stringify(a.state.saveState())) as JsonValue;
          const b = k.make();
          b.state.restoreState(saved);
          expect(b.state.saveState()).toEqual(a.state.saveState());
          a.events.length = 0;
          const ra = apply(a, k.ports[0], after);
          const rb = apply(b, k.ports[0], after);
          expect(rb).toEqual(ra);
          expect(b.events).toEqual(a.events);
          expect(b.state.saveState()).toEqual(a.state.saveState());
        }),
        { numRuns: 300 },
      );
    });

    it(`${k.name}: a malformed state is refused with DEVICE_BAD_STATE, and the device is left as it was`, () => {
      const a = k.make();
      const before = a.state.saveState();
      for (const bad of [null, 7, "x", [], { nonsense: true }] as JsonValue[]) {
        let err: unknown;
        try {
          a.state.restoreState(bad);
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(DeviceError);
        expect((err as DeviceError).code).toBe("DEVICE_BAD_STATE");
        expect((err as DeviceError).message).toContain(a.state === undefined ? "" : String((a.state as unknown as { name: string }).name));
      }
      expect(a.state.saveState()).toEqual(before);
    });
  }

  it("uart16550: bytes in the receive FIFO and host input behind it survive, in order", () => {
    const a = KINDS[0]!.make();
    const uart = a.state as Uart16550;
    a.bus.writeValue(0x3fa, 1, 0x01); // FIFO on
    uart.queueInput("0123456789abcdefXYZ"); // 16 in the FIFO, 3 behind it
    expect(uart.rxLevel).toBe(16);
    a.bus.readValue(0x3f8, 1); // '0'
    const b = KINDS[0]!.make();
    b.state.restoreState(JSON.parse(JSON.stringify(uart.saveState())) as JsonValue);
    let got = "";
    while (b.bus.readValue(0x3fd, 1) & 1) got += String.fromCharCode(b.bus.readValue(0x3f8, 1));
    expect(got).toBe("123456789abcdefXYZ");
    expect((b.state as Uart16550).irqLevel).toBe(false);
  });

  it("hypercall: each vCPU's last status survives", () => {
    const mem = new GuestMemoryMap([{ base: 0, size: 0x1000, buffer: Buffer.alloc(0x1000), name: "ram" }]);
    const a = new HypercallDevice(mem);
    a.doorbell(3, 1); // misaligned: E_BADBLOCK on vCPU 1
    const b = new HypercallDevice(mem);
    b.restoreState(JSON.parse(JSON.stringify(a.saveState())));
    expect(b.lastStatus(1)).toBe(a.lastStatus(1));
    expect(b.lastStatus(1)).toBeLessThan(0);
    expect(b.lastStatus(0)).toBe(0);
  });

  it("every face of a multi-range device names the object that holds its state", () => {
    const bus = new PioBus();
    const kbd = new I8042();
    kbd.attach(bus);
    const testdev = new PcTestDev();
    testdev.attach(bus);
    const pm = new PmDevice();
    pm.attach(bus);
    const owners = new Map<object, number>();
    for (const e of bus.entries()) {
      const owner = e.device.stateOwner ?? e.device;
      expect(isStateful(owner)).toBe(true);
      owners.set(owner, (owners.get(owner) ?? 0) + 1);
    }
    expect(owners.size).toBe(3);
    expect(owners.get(kbd)).toBe(2);
    expect(owners.get(testdev)).toBe(3);
    expect(owners.get(pm)).toBe(3);
  });

  it("isStateful tells devices with both methods from those without", () => {
    expect(isStateful(new PostCodePort())).toBe(true);
    expect(isStateful({ name: "x", read() {}, write() {} })).toBe(false);
    expect(isStateful({ saveState() {} })).toBe(false);
    expect(isStateful(null)).toBe(false);
  });
});
