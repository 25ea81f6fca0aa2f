import {
  CMOS_PORT,
  CMOS_SIZE,
  CmosRtc,
  DEBUG_EXIT_PORT,
  DEBUG_EXIT_SIZE,
  DebugExit,
  FW_CFG_PORT,
  FW_CFG_SIZE,
  FwCfg,
  I8042,
  PioBus,
  POST_PORT,
  PostCodePort,
} from "@tsvmm/devices";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

describe("DebugExit", () => {
  it("qemu convention: a 4-byte OUT to 0xf4 ends with (value << 1) | 1", () => {
    const codes: [number, number][] = [];
    const dev = new DebugExit({ onExit: (c, v) => codes.push([c, v]) });
    const bus = new PioBus();
    bus.register(DEBUG_EXIT_PORT, DEBUG_EXIT_SIZE, dev);
    bus.writeValue(0xf4, 4, 0);
    bus.writeValue(0xf4, 1, 0x7f);
    bus.writeValue(0xf4, 2, 0x1234);
    expect(codes).toEqual([
      [1, 0],
      [0xff, 0x7f],
      [0x2469, 0x1234],
    ]);
    expect(dev.exitCode).toBe(0x2469);
    expect(bus.readValue(0xf4, 4)).toBe(0);
  });

  it("qemu convention over all 32-bit values: odd, and halves back to the value", () => {
    const dev = new DebugExit();
    const bus = new PioBus();
    bus.register(DEBUG_EXIT_PORT, DEBUG_EXIT_SIZE, dev);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), (v) => {
        bus.writeValue(0xf4, 4, v);
        const c = dev.exitCode!;
        expect(c % 2).toBe(1);
        expect((c - 1) / 2).toBe(v);
        expect(BigInt(c)).toBe((BigInt(v) << 1n) | 1n);
      }),
      { numRuns: 200 },
    );
  });

  it("raw convention passes the value through; listeners can be removed", () => {
    const seen: number[] = [];
    const dev = new DebugExit({ convention: "raw" });
    const off = dev.onExit((c) => seen.push(c));
    const bus = new PioBus();
    bus.register(0x501, 2, dev);
    bus.writeValue(0x501, 1, 3);
    off();
    bus.writeValue(0x501, 1, 4);
    expect(seen).toEqual([3]);
    expect(dev.exitCode).toBe(4);
  });

  it("an 8-byte write is a device fault the bus reports, not a crash", () => {
    const dev = new DebugExit();
    const bus = new PioBus();
    bus.register(0xf4, 8, dev);
    bus.write(0xf4, Buffer.alloc(8));
    expect(bus.lastFault?.cause).toMatchObject({ code: "DEVICE_INVALID_ACCESS" });
    expect(dev.exitCode).toBeNull();
  });

  it("rejects an unknown convention", () => {
    expect(() => new DebugExit({ convention: "odd" as "raw" })).toThrow(
      expect.objectContaining({ code: "DEVICE_INVALID_OPTION" }),
    );
  });
});

describe("I8042", () => {
  function setup() {
    let resets = 0;
    const kbc = new I8042({ onReset: () => resets++ });
    const bus = new PioBus();
    kbc.attach(bus);
    return { kbc, bus, inb: (p: number) => bus.readValue(p, 1), outb: (p: number, v: number) => bus.writeValue(p, 1, v), resets: () => resets };
  }

  it("idles with no data and an empty input buffer", () => {
    const { inb } = setup();
    const st = inb(0x64);
    expect(st & 0x01).toBe(0); // OBF
    expect(st & 0x02).toBe(0); // IBF
    expect(inb(0x60)).toBe(0);
    // Port 0x61 sits between the two faces and is not the controller's.
    expect(inb(0x61)).toBe(0xff);
  });

  it("Linux's reboot: wait for IBF clear, then 0xFE on 0x64 resets", () => {
    const { inb, outb, resets } = setup();
    let spins = 0;
    while (inb(0x64) & 0x02 && spins < 10) spins++;
    expect(spins).toBe(0);
    outb(0x64, 0xfe);
    expect(resets()).toBe(1);
    // Other pulse commands with bit 0 clear pulse reset too; odd ones do not.
    outb(0x64, 0xff);
    outb(0x64, 0xf0);
    expect(resets()).toBe(2);
  });

  it("writing the output port with bit 0 clear resets; A20 commands move bit 1", () => {
    const { kbc, inb, outb, resets } = setup();
    outb(0x64, 0xd0);
    expect(inb(0x60)).toBe(0x03);
    outb(0x64, 0xdd);
    expect(kbc.a20).toBe(false);
    outb(0x64, 0xdf);
    expect(kbc.a20).toBe(true);
    outb(0x64, 0xd1);
    outb(0x60, 0x03);
    expect(resets()).toBe(0);
    outb(0x64, 0xd1);
    outb(0x60, 0x02);
    expect(resets()).toBe(1);
  });

  it("self-tests answer like a healthy controller", () => {
    const { inb, outb } = setup();
    outb(0x64, 0xaa);
    expect(inb(0x64) & 0x01).toBe(1);
    expect(inb(0x60)).toBe(0x55);
    expect(inb(0x64) & 0x01).toBe(0);
    outb(0x64, 0xab);
    expect(inb(0x60)).toBe(0x00);
    outb(0x64, 0xa9);
    expect(inb(0x60)).toBe(0x00);
  });

  it("reads and writes the command byte; 0xAD/0xAE and 0xA7/0xA8 toggle its disable bits", () => {
    const { kbc, inb, outb } = setup();
    outb(0x64, 0x20);
    const ctr = inb(0x60);
    expect(ctr & 0x04).toBe(0x04); // system flag after POST
    outb(0x64, 0x60);
    outb(0x60, 0x65);
    expect(kbc.commandByte).toBe(0x65);
    expect(inb(0x64) & 0x08).toBe(0); // last write went to the data port
    outb(0x64, 0xad);
    outb(0x64, 0xa7);
    expect(kbc.commandByte).toBe(0x65 | 0x10 | 0x20);
    outb(0x64, 0xae);
    outb(0x64, 0xa8);
    outb(0x64, 0x20);
    expect(inb(0x60)).toBe(0x45);
  });

  it("echoes 0xD3 writes through the aux output buffer (Linux's AUX loop test)", () => {
    const { inb, outb } = setup();
    outb(0x64, 0xd3);
    outb(0x60, 0x5a);
    expect(inb(0x60)).toBe(0x5a);
    // Keyboard commands go to no keyboard.
    outb(0x60, 0xff);
    expect(inb(0x64) & 0x01).toBe(0);
  });
});

describe("PostCodePort", () => {
  it("keeps the last code, reads 0xff", () => {
    const post = new PostCodePort();
    const bus = new PioBus({ defaultHandler: { read: (_a, d) => d.fill(0), write: () => {} } });
    bus.register(POST_PORT, 1, post);
    bus.writeValue(0x80, 1, 0x42);
    expect(post.lastCode).toBe(0x42);
    expect(bus.readValue(0x80, 1)).toBe(0xff);
  });
});

describe("FwCfg", () => {
  // kvm-unit-tests' fwcfg_get_u(): outw(index, 0x510), then `bytes` inb(0x511), little-endian.
  function fwcfgGet(bus: PioBus, index: number, bytes: number): bigint {
    bus.writeValue(0x510, 2, index);
    let r = 0n;
    for (let i = 0; i < bytes; i++) r |= BigInt(bus.readValue(0x511, 1)) << BigInt(8 * i);
    return r;
  }

  function setup(opts: ConstructorParameters<typeof FwCfg>[0] = {}) {
    const bus = new PioBus();
    bus.register(FW_CFG_PORT, FW_CFG_SIZE, new FwCfg(opts));
    return bus;
  }

  it("serves the signature, RAM size and CPU count the way kvm-unit-tests reads them", () => {
    const bus = setup({ ramSize: 256n << 20n, cpus: 2 });
    const sig = Buffer.alloc(4);
    sig.writeUInt32LE(Number(fwcfgGet(bus, 0, 4)));
    expect(sig.toString("latin1")).toBe("QEMU");
    expect(fwcfgGet(bus, 1, 4)).toBe(1n);
    expect(fwcfgGet(bus, 3, 8)).toBe(256n << 20n);
    expect(fwcfgGet(bus, 5, 2)).toBe(2n);
    expect(fwcfgGet(bus, 0x0f, 2)).toBe(2n);
  });

  it("unknown items and reads past an item's end are zeros; reselecting rewinds", () => {
    const bus = setup({ items: new Map([[0x8000, Uint8Array.of(9, 8)]]) });
    expect(fwcfgGet(bus, 0x19, 4)).toBe(0n);
    expect(fwcfgGet(bus, 0x8000, 4)).toBe(0x0809n);
    expect(fwcfgGet(bus, 0x8000, 1)).toBe(9n);
  });

  it("without the signature option everything reads as zeros", () => {
    const bus = setup({ signature: false });
    expect(fwcfgGet(bus, 0, 4)).toBe(0n);
    expect(fwcfgGet(bus, 3, 8)).toBe(0n);
  });

  it("rejects bad options with typed errors", () => {
    expect(() => new FwCfg({ cpus: 0 })).toThrow(expect.objectContaining({ code: "DEVICE_INVALID_OPTION" }));
    expect(() => new FwCfg({ ramSize: -1 })).toThrow(expect.objectContaining({ code: "DEVICE_INVALID_OPTION" }));
    expect(() => new FwCfg().setItem(0x10000, new Uint8Array())).toThrow(
      expect.objectContaining({ code: "DEVICE_INVALID_OPTION" }),
    );
  });
});

describe("CmosRtc", () => {
  function setup(ms: number) {
    const rtc = new CmosRtc({ now: () => ms });
    const bus = new PioBus();
    bus.register(CMOS_PORT, CMOS_SIZE, rtc);
    const read = (i: number) => {
      bus.writeValue(0x70, 1, 0x80 | i);
      return bus.readValue(0x71, 1);
    };
    const write = (i: number, v: number) => {
      bus.writeValue(0x70, 1, i);
      bus.writeValue(0x71, 1, v);
    };
    return { rtc, read, write, bus };
  }
  const bcd = (v: number) => (v >> 4) * 10 + (v & 0xf);

  it("reads the host's UTC time in BCD, 24-hour, by default", () => {
    const { rtc, read } = setup(Date.UTC(2024, 1, 29, 13, 5, 9));
    expect([read(0), read(2), read(4), read(6), read(7), read(8), read(9), read(0x32)]).toEqual([
      0x09, 0x05, 0x13, 0x05 /* Thursday: Sunday = 1 */, 0x29, 0x02, 0x24, 0x20,
    ]);
    expect(rtc.nmiDisabled).toBe(true);
  });

  it("status registers: A 0x26 without UIP, B 24h BCD, C 0, D valid RAM", () => {
    const { read, write } = setup(0);
    expect([read(0x0a), read(0x0b), read(0x0c), read(0x0d)]).toEqual([0x26, 0x02, 0x00, 0x80]);
    write(0x0a, 0xa6);
    write(0x0c, 0xff);
    write(0x0d, 0x00);
    expect([read(0x0a), read(0x0c), read(0x0d)]).toEqual([0x26, 0x00, 0x80]);
  });

  it("binary and 12-hour modes follow status B", () => {
    const { read, write } = setup(Date.UTC(2031, 11, 31, 23, 59, 58));
    write(0x0b, 0x04); // binary, 12-hour
    expect([read(0), read(4), read(9)]).toEqual([58, 0x80 | 11, 31]);
    write(0x0b, 0x00); // BCD, 12-hour
    expect(read(4)).toBe(0x80 | 0x11);
  });

  it("decodes back to the host's date for any time", () => {
    fc.assert(
      fc.property(fc.integer({ min: Date.UTC(1970, 0, 1), max: Date.UTC(2199, 11, 31) }), (ms) => {
        const { read } = setup(ms);
        const d = new Date(ms);
        const year = bcd(read(0x32)) * 100 + bcd(read(9));
        expect(Date.UTC(year, bcd(read(8)) - 1, bcd(read(7)), bcd(read(4)), bcd(read(2)), bcd(read(0)))).toBe(
          Math.floor(ms / 1000) * 1000,
        );
        expect(bcd(read(6))).toBe(d.getUTCDay() + 1);
      }),
      { numRuns: 200 },
    );
  });

  it("other CMOS bytes are plain RAM; time writes are ignored; the index port reads 0xff", () => {
    const { rtc, read, write, bus } = setup(Date.UTC(2024, 0, 1));
    write(0x40, 0x12);
    write(0x00, 0x59);
    rtc.setByte(0x34, 0x77);
    expect([read(0x40), read(0x00), read(0x34)]).toEqual([0x12, 0x00, 0x77]);
    expect(bus.readValue(0x70, 1)).toBe(0xff);
    expect(() => rtc.setByte(0x80, 0)).toThrow(expect.objectContaining({ code: "DEVICE_INVALID_OPTION" }));
  });
});
