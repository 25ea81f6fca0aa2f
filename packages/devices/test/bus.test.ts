import {
  BusError,
  BusOverlapError,
  type Device,
  DeviceFaultError,
  fillDefaultHandler,
  type IoInterceptPolicy,
  MmioBus,
  PioBus,
  type UnclaimedAccess,
} from "@tsvmm/devices";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

/** A device that records what it sees and answers reads with `offset + i` in byte i. */
class Recorder implements Device {
  readonly log: string[] = [];
  constructor(readonly name: string) {}
  read(offset: number, data: Buffer): void {
    for (let i = 0; i < data.length; i++) data[i] = (offset + i) & 0xff;
    this.log.push(`r${offset}/${data.length}`);
  }
  write(offset: number, data: Buffer): void {
    this.log.push(`w${offset}/${data.toString("hex")}`);
  }
}

class Thrower implements Device {
  readonly name = "thrower";
  read(): void {
    throw new Error("boom on read");
  }
  write(): void {
    throw new Error("boom on write");
  }
}

/** A VMX-style I/O bitmap: one bit per port, an access exits when any of its ports' bits is set. */
class BitmapPolicy implements IoInterceptPolicy {
  readonly bits = new Uint8Array(0x2000);
  set(port: number): void {
    this.bits[port >> 3]! |= 1 << (port & 7);
  }
  intercepts(port: number, size: number): boolean {
    for (let p = port; p < port + size; p++) {
      if (p > 0xffff) return true;
      if ((this.bits[p >> 3]! >> (p & 7)) & 1) return true;
    }
    return false;
  }
}

describe("PioBus", () => {
  it("dispatches reads and writes with the offset inside the range", () => {
    const bus = new PioBus();
    const dev = new Recorder("com1");
    bus.register(0x3f8, 8, dev);
    expect(bus.readValue(0x3fa, 1)).toBe(2);
    expect(bus.read(0x3fc, 2)).toEqual(Buffer.from([4, 5]));
    bus.write(0x3ff, Buffer.from([0xab]));
    bus.writeValue(0x3f8, 4, 0x04030201);
    expect(dev.log).toEqual(["r2/1", "r4/2", "w7/ab", "w0/01020304"]);
  });

  it("sends unclaimed accesses to the default handler: all-ones by default", () => {
    const bus = new PioBus();
    expect(bus.readValue(0x1234, 4)).toBe(0xffffffff);
    expect(() => bus.writeValue(0x1234, 1, 7)).not.toThrow();
  });

  it("takes a user default handler and logs with a reason", () => {
    const seen: UnclaimedAccess[] = [];
    const bus = new PioBus({ defaultHandler: fillDefaultHandler(0, (a) => seen.push(a)) });
    bus.register(0x60, 1, new Recorder("kbd"));
    expect(bus.readValue(0x80, 1)).toBe(0);
    bus.writeValue(0x80, 1, 0x42);
    expect(bus.readValue(0x60, 2)).toBe(0);
    expect(seen.map((a) => [a.address, a.size, a.isWrite, a.data.toString("hex"), a.reason])).toEqual([
      [0x80, 1, false, "00", "unclaimed"],
      [0x80, 1, true, "42", "unclaimed"],
      [0x60, 2, false, "0000", "straddles"],
    ]);
  });

  it("refuses overlapping ranges with an error naming both devices", () => {
    const bus = new PioBus();
    bus.register(0x3f8, 8, new Recorder("com1"));
    let err: unknown;
    try {
      bus.register(0x3fc, 8, new Recorder("other"));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BusOverlapError);
    const o = err as BusOverlapError;
    expect(o.code).toBe("BUS_OVERLAP");
    expect([o.device, o.existing, o.existingBase, o.existingLength]).toEqual(["other", "com1", 0x3f8, 8]);
    expect(o.message).toContain("com1");
    expect(o.message).toContain("other");
  });

  it("rejects bad ranges, bad ports and unknown unregistrations with typed errors", () => {
    const bus = new PioBus();
    const d = new Recorder("d");
    for (const [b, l] of [
      [0, 0],
      [-1, 1],
      [0xffff, 2],
      [1.5, 1],
      [0x10000, 1],
    ] as const) {
      expect(() => bus.register(b, l, d)).toThrow(expect.objectContaining({ code: "BUS_INVALID_RANGE" }));
    }
    expect(() => bus.read(0x10000, 1)).toThrow(expect.objectContaining({ code: "BUS_INVALID_ACCESS" }));
    expect(() => bus.read(0, 0)).toThrow(expect.objectContaining({ code: "BUS_INVALID_ACCESS" }));
    expect(() => bus.writeValue(0, 1, 256)).toThrow(expect.objectContaining({ code: "BUS_INVALID_ACCESS" }));
    expect(() => bus.unregister(5)).toThrow(expect.objectContaining({ code: "BUS_NOT_REGISTERED" }));
    bus.register(4, 4, d);
    // Only the first port of a range names it.
    expect(() => bus.unregister(5)).toThrow(BusError);
    expect(bus.unregister(4)).toBe(d);
    expect(bus.readValue(4, 1)).toBe(0xff);
    bus.register(2, 6, d);
    expect(bus.readValue(7, 1)).toBe(5);
  });

  it("a throwing device does not escape: the guest sees the default value and the fault is reported", () => {
    const faults: DeviceFaultError[] = [];
    const bus = new PioBus({ onDeviceFault: (e) => faults.push(e) });
    bus.register(0x100, 4, new Thrower());
    expect(bus.readValue(0x101, 2)).toBe(0xffff);
    expect(() => bus.writeValue(0x100, 1, 1)).not.toThrow();
    expect(faults).toHaveLength(2);
    expect(faults[0]).toBeInstanceOf(DeviceFaultError);
    expect([faults[0]!.code, faults[0]!.device, faults[0]!.address, faults[0]!.isWrite]).toEqual([
      "DEVICE_FAULT",
      "thrower",
      0x101,
      false,
    ]);
    expect((faults[1]!.cause as Error).message).toBe("boom on write");
    expect(bus.faultCount).toBe(2);
  });

  it("a throwing default handler or fault callback does not escape either", () => {
    const bus = new PioBus({
      defaultHandler: {
        read() {
          throw new Error("bad handler");
        },
        write() {
          throw new Error("bad handler");
        },
      },
      onDeviceFault: () => {
        throw new Error("bad callback");
      },
    });
    expect(bus.readValue(0x10, 1)).toBe(0xff);
    bus.writeValue(0x10, 1, 0);
    expect(bus.faultCount).toBe(2);
    expect(bus.lastFault?.device).toBe("<default handler>");
  });

  it("ports the intercept policy does not intercept go to the default handler", () => {
    const policy = new BitmapPolicy();
    policy.set(0x3f8);
    const reasons: string[] = [];
    const bus = new PioBus({ policy, defaultHandler: fillDefaultHandler(0xff, (a) => reasons.push(a.reason)) });
    const dev = new Recorder("com1");
    bus.register(0x3f8, 8, dev);
    expect(bus.readValue(0x3f8, 1)).toBe(0);
    expect(bus.readValue(0x3f9, 1)).toBe(0xff);
    // A 2-byte access exits when any of its ports is intercepted (the SDM's rule for I/O bitmaps).
    expect(bus.readValue(0x3f7, 2)).toBe(0xffff);
    expect(reasons).toEqual(["not-intercepted", "unclaimed"]);
    bus.policy = null;
    expect(bus.readValue(0x3f9, 1)).toBe(1);
  });

  it("reuses scratch buffers for 1/2/4/8-byte reads", () => {
    const bus = new PioBus();
    expect(bus.read(1, 4)).toBe(bus.read(2, 4));
    expect(bus.read(1, 3)).not.toBe(bus.read(1, 3));
  });

  it("observer sees every access with the data the guest got", () => {
    const bus = new PioBus();
    bus.register(0x10, 2, new Recorder("x"));
    const seen: string[] = [];
    bus.observer = (a, d, w, v) => seen.push(`${a}:${d.toString("hex")}:${w}:${v}`);
    bus.read(0x11, 1, 3);
    bus.writeValue(0x20, 2, 0x1234, 1);
    expect(seen).toEqual(["17:01:false:3", "32:3412:true:1"]);
  });

  it("matches a reference model under random registrations and accesses", () => {
    const op = fc.oneof(
      fc.record({ k: fc.constant("reg" as const), base: fc.integer({ min: 0, max: 300 }), len: fc.integer({ min: 1, max: 40 }) }),
      fc.record({ k: fc.constant("unreg" as const), base: fc.integer({ min: 0, max: 300 }) }),
      fc.record({ k: fc.constant("read" as const), port: fc.integer({ min: 0, max: 340 }), size: fc.constantFrom(1, 2, 4) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const bus = new PioBus({ defaultHandler: fillDefaultHandler(0xee) });
        const model: { base: number; len: number; name: string }[] = [];
        let n = 0;
        for (const o of ops) {
          if (o.k === "reg") {
            const name = `d${n++}`;
            // The error names the lowest-addressed registration the new range overlaps.
            const clash = model
              .filter((m) => m.base < o.base + o.len && o.base < m.base + m.len)
              .sort((a, b) => a.base - b.base)[0];
            if (clash) {
              expect(() => bus.register(o.base, o.len, new Recorder(name))).toThrow(
                expect.objectContaining({ code: "BUS_OVERLAP", existing: clash.name }),
              );
            } else {
              bus.register(o.base, o.len, new Recorder(name));
              model.push({ base: o.base, len: o.len, name });
            }
          } else if (o.k === "unreg") {
            const i = model.findIndex((m) => m.base === o.base);
            if (i < 0) expect(() => bus.unregister(o.base)).toThrow(BusError);
            else {
              expect(bus.unregister(o.base).name).toBe(model[i]!.name);
              model.splice(i, 1);
            }
          } else {
            const m = model.find((r) => r.base <= o.port && o.port + o.size <= r.base + r.len);
            const want = Buffer.alloc(o.size, 0xee);
            if (m) for (let i = 0; i < o.size; i++) want[i] = (o.port - m.base + i) & 0xff;
            expect(bus.read(o.port, o.size)).toEqual(want);
          }
        }
        expect(bus.entries().map((e) => e.device.name)).toEqual(
          [...model].sort((a, b) => a.base - b.base).map((m) => m.name),
        );
      }),
      { numRuns: 150 },
    );
  });
});

describe("MmioBus", () => {
  it("dispatches by binary search, accepts bigint addresses, 8-byte accesses", () => {
    const bus = new MmioBus();
    const a = new Recorder("a");
    const b = new Recorder("b");
    bus.register(0xfee00000n, 0x1000n, a);
    bus.register(0xd0000000, 0x100, b);
    expect(bus.read(0xfee00020n, 8)).toEqual(Buffer.from([0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27]));
    bus.write(0xd0000010, Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]));
    expect(b.log).toEqual(["w16/0102030405060708"]);
    expect(bus.readValue(0xd0000100, 4)).toBe(0xffffffff);
    expect(bus.read(0xfee00ffc, 8).toString("hex")).toBe("ffffffffffffffff");
    expect(bus.read(2n ** 60n, 4).toString("hex")).toBe("ffffffff");
    expect(() => bus.register(0xd00000f0, 0x20, new Recorder("c"))).toThrow(
      expect.objectContaining({ code: "BUS_OVERLAP", existing: "b", device: "c" }),
    );
    expect(() => bus.register(2 ** 53 - 1, 2, new Recorder("c"))).toThrow(
      expect.objectContaining({ code: "BUS_INVALID_RANGE" }),
    );
    expect(bus.unregister(0xd0000000n)).toBe(b);
    expect(bus.readValue(0xd0000010, 1)).toBe(0xff);
  });

  it("matches a reference model for random disjoint-or-not ranges", () => {
    const range = fc.record({ base: fc.integer({ min: 0, max: 2 ** 40 }), len: fc.integer({ min: 1, max: 2 ** 20 }) });
    fc.assert(
      fc.property(fc.array(range, { maxLength: 25 }), fc.array(fc.integer({ min: 0, max: 2 ** 40 + 2 ** 20 }), { maxLength: 25 }), (ranges, probes) => {
        const bus = new MmioBus({ defaultHandler: fillDefaultHandler(0) });
        const model: { base: number; len: number; name: string }[] = [];
        ranges.forEach((r, i) => {
          const clash = model.some((m) => m.base < r.base + r.len && r.base < m.base + m.len);
          let threw = false;
          try {
            bus.register(r.base, r.len, new Recorder(`d${i}`));
          } catch (e) {
            threw = true;
            expect(e).toBeInstanceOf(BusOverlapError);
          }
          expect(threw).toBe(clash);
          if (!clash) model.push({ ...r, name: `d${i}` });
        });
        // Probe near every range edge too, where off-by-one errors live.
        const all = [...probes, ...model.flatMap((m) => [m.base - 1, m.base, m.base + m.len - 1, m.base + m.len])];
        for (const p of all.filter((x) => x >= 0)) {
          const m = model.find((r) => r.base <= p && p < r.base + r.len);
          expect(bus.readValue(p, 1)).toBe(m ? (p - m.base) & 0xff : 0);
        }
      }),
      { numRuns: 150 },
    );
  });
});
