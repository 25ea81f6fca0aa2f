import { type GuestMemory, GuestMemoryMap, HC_BLOCK_SIZE, HC_MAGIC, HC_PORT, HC_SIGNATURE, HC_SIGNATURE_PORT, HcBlock, HcCall, HcStatus } from "@tsvmm/abi";
import { accessContext, HypercallDevice, type HypercallHost, type HypercallOutcome, PioBus } from "@tsvmm/devices";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

/** The doorbell as the guest reaches it: port accesses on a PIO bus, from vCPU 0. */
class Doorbell {
  readonly bus = new PioBus();
  readonly dev: HypercallDevice;
  last: HypercallOutcome | undefined;
  constructor(mem: GuestMemory, host: HypercallHost) {
    this.dev = new HypercallDevice(mem, { ...host, call: (o) => (this.last = o) });
    this.dev.attach(this.bus);
  }
  doorbell(value: number, size: number): HypercallOutcome {
    const b = Buffer.alloc(size);
    b.writeUIntLE(size === 4 ? value >>> 0 : value & ((1 << (8 * size)) - 1), 0, size);
    this.bus.write(HC_PORT, b, 0);
    return this.last!;
  }
  read(port: number, size: 1 | 2 | 4): number {
    return this.bus.readValue(port, size, 0);
  }
}

function setup() {
  const mem = GuestMemoryMap.allocate([{ base: 0, size: 0x10000 }]);
  const seen = { console: [] as string[], reports: [] as [string, boolean][], values: [] as [string, bigint][], exits: [] as number[] };
  const d = new Doorbell(mem, {
    console: (b) => seen.console.push(b.toString()),
    report: (n, p) => seen.reports.push([n, p]),
    value: (n, v) => seen.values.push([n, v]),
    exit: (c) => seen.exits.push(c),
  });
  const call = (gpa: number, call: number, args: (number | bigint)[] = [], version = 1): bigint => {
    mem.writeU32(gpa + HcBlock.magic, HC_MAGIC);
    mem.writeU16(gpa + HcBlock.version, version);
    mem.writeU16(gpa + HcBlock.call, call);
    for (let i = 0; i < 4; i++) mem.writeU64(gpa + HcBlock.arg0 + 8 * i, BigInt(args[i] ?? 0));
    mem.writeU64(gpa + HcBlock.result, 0x7777n);
    d.doorbell(gpa, 4);
    return BigInt.asIntN(64, mem.readU64(gpa + HcBlock.result));
  };
  return { mem, d, seen, call };
}

describe("hypercall ABI v1 (the doorbell device)", () => {
  it("keeps one status per vCPU", () => {
    const mem = GuestMemoryMap.allocate([{ base: 0, size: 0x10000 }]);
    const dev = new HypercallDevice(mem);
    const b = Buffer.alloc(4);
    b.writeUInt32LE(0x104);
    dev.write(0, b, accessContext(1));
    const s = Buffer.alloc(4);
    dev.read(0, s, accessContext(1));
    expect(s.readInt32LE(0)).toBe(HcStatus.E_BADBLOCK);
    dev.read(0, s, accessContext(0));
    expect(s.readInt32LE(0)).toBe(HcStatus.OK);
  });

  it("negotiates a version, then writes to the console, reports and exits", () => {
    const { mem, d, seen, call } = setup();
    expect(d.read(HC_SIGNATURE_PORT, 4)).toBe(HC_SIGNATURE);
    expect(call(0x100, HcCall.VERSION, [5])).toBe(1n);
    mem.write(0x2000, Buffer.from("hello\n"));
    mem.write(0x2100, Buffer.from("cpuid.eax"));
    expect(call(0x100, HcCall.CONSOLE_WRITE, [0x2000, 6])).toBe(6n);
    expect(call(0x100, HcCall.REPORT, [0x2100, 5, 1])).toBe(0n);
    expect(call(0x100, HcCall.REPORT_VALUE, [0x2100, 9, 0xdeadbeefn])).toBe(0n);
    expect(call(0x100, HcCall.EXIT, [3])).toBe(0n);
    expect(seen).toEqual({ console: ["hello\n"], reports: [["cpuid", true]], values: [["cpuid.eax", 0xdeadbeefn]], exits: [3] });
    expect(HC_PORT).toBe(0xef0);
  });

  it("answers bad input with its documented status and never calls the host", () => {
    const { d, seen, call } = setup();
    expect(call(0x100, HcCall.VERSION, [0])).toBe(BigInt(HcStatus.E_VERSION));
    expect(call(0x100, 99)).toBe(BigInt(HcStatus.E_NOSYS));
    expect(call(0x100, HcCall.CONSOLE_WRITE, [0x2000, 1], 2)).toBe(BigInt(HcStatus.E_VERSION));
    expect(call(0x100, HcCall.CONSOLE_WRITE, [0xfff0, 0x20])).toBe(BigInt(HcStatus.E_FAULT));
    expect(call(0x100, HcCall.CONSOLE_WRITE, [2n ** 63n, 1])).toBe(BigInt(HcStatus.E_FAULT));
    expect(call(0x100, HcCall.CONSOLE_WRITE, [0, 0x10001])).toBe(BigInt(HcStatus.E_INVAL));
    expect(call(0x100, HcCall.REPORT, [0x2000, 4, 2])).toBe(BigInt(HcStatus.E_INVAL));
    expect(call(0x100, HcCall.EXIT, [256])).toBe(BigInt(HcStatus.E_INVAL));
    expect(d.doorbell(0x104, 4).status).toBe(HcStatus.E_BADBLOCK); // misaligned
    expect(d.doorbell(0xfff8, 4).status).toBe(HcStatus.E_BADBLOCK); // runs off memory
    expect(d.doorbell(0x8000, 4).status).toBe(HcStatus.E_BADBLOCK); // no magic there
    expect(d.read(HC_PORT, 4)).toBe(HcStatus.E_BADBLOCK >>> 0);
    expect(d.doorbell(0x100, 2).status).toBe(HcStatus.E_ACCESS);
    expect(seen).toEqual({ console: [], reports: [], values: [], exits: [] });
  });

  it("never throws and never writes outside the block, whatever the guest puts in memory", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.uint8Array({ minLength: HC_BLOCK_SIZE, maxLength: HC_BLOCK_SIZE }),
        fc.boolean(),
        fc.integer({ min: 0, max: 6 }),
        (gpa, block, withMagic, call) => {
          const { mem, d } = setup();
          const at = gpa % 0x10000;
          if (at + HC_BLOCK_SIZE <= 0x10000) {
            mem.write(at, block);
            if (withMagic) {
              mem.writeU32(at, HC_MAGIC);
              mem.writeU16(at + HcBlock.call, call);
            }
          }
          const before = mem.read(0, 0x10000);
          const out = d.doorbell(gpa, 4);
          const after = mem.read(0, 0x10000);
          for (let i = 0; i < 0x10000; i += 1) {
            if (before[i] !== after[i] && !(i >= gpa + HcBlock.result && i < gpa + HcBlock.result + 8)) {
              throw new Error(`byte 0x${i.toString(16)} changed outside the result field`);
            }
          }
          expect(typeof out.status).toBe("number");
          expect(d.read(HC_PORT, 4)).toBe(out.status >>> 0);
        },
      ),
      { numRuns: 300 },
    );
  });
});
