// LOCK read-modify-writes over X86Cpu.compareExchangePhys: the emulator retries a compare-exchange
// of the aligned 8 or 16 bytes holding the operand until no other writer got in between, so the
// result is the instruction applied to memory as the other writer left it. The test CPU plays the
// other vCPU: before some compare-exchanges it changes the window, as a vCPU running natively would.
import { GuestMemoryMap } from "@tsvmm/abi";
import { Emulator, SimpleCpu, STATUS } from "@tsvmm/x86";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

const CODE = 0x1000n;
const DATA = 0x8000n;
const MMIO = 0xf000n;
const RAX = 0, RDI = 7;

class RacingCpu extends SimpleCpu {
  readonly calls: { gpa: bigint; size: number }[] = [];
  /** Applied to guest memory before the compare of the first `interference.length` calls. */
  interference: ((mem: GuestMemoryMap) => void)[] = [];
  physReads: bigint[] = [];
  constructor(readonly mem: GuestMemoryMap) {
    super({ memory: mem });
  }
  override readPhys(gpa: bigint, length: number): Uint8Array {
    this.physReads.push(gpa);
    return super.readPhys(gpa, length);
  }
  compareExchangePhys(gpa: bigint, expected: Uint8Array, desired: Uint8Array): Uint8Array | undefined {
    const size = expected.length;
    if ((size !== 8 && size !== 16) || gpa % BigInt(size) !== 0n) throw new Error(`bad compare-exchange ${gpa.toString(16)}+${size}`);
    if (gpa >= MMIO) return undefined;
    this.calls.push({ gpa, size });
    this.interference[this.calls.length - 1]?.(this.mem);
    const old = Uint8Array.from(this.mem.read(gpa, size));
    if (Buffer.from(old).equals(Buffer.from(expected))) this.mem.write(gpa, desired);
    return old;
  }
}

function setup(code: string, at: bigint): { cpu: RacingCpu; emu: Emulator; mem: GuestMemoryMap } {
  const mem = GuestMemoryMap.allocate([{ base: 0, size: 0x10000 }]);
  mem.write(Number(CODE), Buffer.from(code.replace(/ /g, ""), "hex"));
  const cpu = new RacingCpu(mem);
  cpu.rip = CODE;
  cpu.gpr[RDI] = at;
  return { cpu, emu: new Emulator(cpu), mem };
}

describe("LOCK read-modify-write", () => {
  it("lock add retries until no other writer got in between, and adds to what that writer left", () => {
    const { cpu, emu, mem } = setup("f0 48 01 07", DATA); // lock add [rdi], rax
    mem.writeU64(Number(DATA), 100n);
    cpu.gpr[RAX] = 5n;
    cpu.interference = [(m) => m.writeU64(Number(DATA), 200n), (m) => m.writeU64(Number(DATA), 300n)];
    expect(emu.step()).toMatchObject({ kind: "executed", mnemonic: "add" });
    expect(mem.readU64(Number(DATA))).toBe(305n);
    // First attempt expects zeros (nothing read before the CPU says RAM) and meets 200, then 300 is met, then 300 holds.
    expect(cpu.calls).toEqual([{ gpa: DATA, size: 8 }, { gpa: DATA, size: 8 }, { gpa: DATA, size: 8 }]);
    expect(cpu.physReads.filter((g) => g >= DATA && g < DATA + 0x100n)).toEqual([]);
  });

  it("a dword across an 8-byte boundary uses the aligned 16 bytes; across a 16-byte boundary or a page, plain access", () => {
    const a = setup("f0 ff 07", DATA + 6n); // lock inc dword [rdi]
    a.emu.step();
    expect(a.cpu.calls.map((c) => c.size)).toContain(16);
    expect(a.cpu.calls.every((c) => c.gpa === DATA)).toBe(true);
    expect(a.mem.readU32(Number(DATA) + 6)).toBe(1);
    const b = setup("f0 ff 07", DATA + 14n);
    b.emu.step();
    expect(b.cpu.calls).toEqual([]);
    expect(b.mem.readU32(Number(DATA) + 14)).toBe(1);
    const c = setup("f0 ff 07", DATA + 0xffen);
    c.emu.step();
    expect(c.cpu.calls).toEqual([]);
    expect(c.mem.readU32(Number(DATA) + 0xffe)).toBe(1);
  });

  it("outside RAM (compareExchangePhys says undefined) the update is a plain read and write", () => {
    const { cpu, emu, mem } = setup("f0 80 0f 81", MMIO + 3n); // lock or byte [rdi], 0x81
    mem.writeU8(Number(MMIO) + 3, 0x10);
    expect(emu.step()).toMatchObject({ kind: "executed" });
    expect(mem.readU8(Number(MMIO) + 3)).toBe(0x91);
    expect(cpu.physReads).toContain(MMIO + 3n);
  });

  it("lock cmpxchg8b off 8-byte alignment: one 16-byte window, result as without a race", () => {
    const { cpu, emu, mem } = setup("f0 0f c7 0f", DATA + 4n);
    mem.writeU64(Number(DATA) + 4, 0x0000000200000001n);
    [cpu.gpr[RAX], cpu.gpr[2], cpu.gpr[3], cpu.gpr[1]] = [1n, 2n, 0x33n, 0x44n];
    cpu.interference = [(m) => m.writeU32(Number(DATA), 0xdead)]; // a neighbour in the window changes
    emu.step();
    expect(mem.readU64(Number(DATA) + 4)).toBe(0x0000004400000033n);
    expect(mem.readU32(Number(DATA))).toBe(0xdead);
    expect(cpu.calls.every((c) => c.gpa === DATA && c.size === 16)).toBe(true);
  });

  // The same instruction without LOCK on memory as the racing writer left it is the reference.
  const OPS: Record<string, { op8: string; op: string; modrm?: string; imm?: boolean }> = {
    add: { op8: "00", op: "01" }, or: { op8: "08", op: "09" }, adc: { op8: "10", op: "11" }, sbb: { op8: "18", op: "19" },
    and: { op8: "20", op: "21" }, sub: { op8: "28", op: "29" }, xor: { op8: "30", op: "31" },
    inc: { op8: "fe", op: "ff", modrm: "07" }, dec: { op8: "fe", op: "ff", modrm: "0f" },
    not: { op8: "f6", op: "f7", modrm: "17" }, neg: { op8: "f6", op: "f7", modrm: "1f" },
  };
  it("property: LOCK op under interference = the op on the memory the interference left", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...Object.keys(OPS)),
        fc.constantFrom(8, 16, 32, 64),
        fc.integer({ min: 0, max: 15 }),
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        fc.bigInt({ min: 0n, max: 0xfffn }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 15 }), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
        (name, bits, off0, initial, rax, flags, pokes) => {
          const bytes = bits / 8;
          const off = Math.min(off0, 16 - bytes);
          const d = OPS[name]!;
          const prefix = bits === 16 ? "66" : bits === 64 ? "48" : "";
          const insn = `${prefix}${bits === 8 ? d.op8 : d.op}${d.modrm ?? "07"}`;
          let raced = 0;
          const run = (lock: boolean, applied: number) => {
            const m = setup(`${lock ? "f0" : ""}${insn}`, DATA + BigInt(off));
            m.mem.write(Number(DATA), initial);
            m.cpu.gpr[RAX] = rax;
            m.cpu.rflags = 2n | (flags & STATUS);
            for (const [i, v] of pokes.slice(0, applied)) m.mem.writeU8(Number(DATA) + i, v);
            if (lock) m.cpu.interference = pokes.map(([i, v]) => (mm) => mm.writeU8(Number(DATA) + i, v));
            const out = m.emu.step();
            raced = Math.min(m.cpu.calls.length, pokes.length);
            return { out: out.kind, mem: Buffer.from(m.mem.read(Number(DATA), 16)).toString("hex"), flags: m.cpu.rflags & STATUS, rax: m.cpu.gpr[RAX] };
          };
          const locked = run(true, 0);
          expect(locked).toEqual(run(false, raced));
        },
      ),
      { numRuns: 400 },
    );
  });
});
