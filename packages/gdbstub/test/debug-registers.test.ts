import { allocateDebugRegisters, type Breakpoint, type DebugRegisterSlot, DebugRegisters, decodeDr7, encodeDr7, splitRange } from "@tsvmm/gdbstub";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

const bp = (kind: Breakpoint["kind"], address: bigint, length = 1): Breakpoint => ({ kind, address, length });

describe("DR7 encoding (SDM Vol. 3B 17.2.4)", () => {
  it("matches values worked out by hand from the bit layout", () => {
    // G0; R/W0 = 00, LEN0 = 00; bit 10 always 1.
    expect(encodeDr7([{ address: 0x1000n, condition: "execute", length: 1 }])).toBe(0x402n);
    // G1 (bit 3); R/W1 = 01 (bits 21:20); LEN1 = 11 (bits 23:22); GE (bit 9) with a data slot.
    expect(encodeDr7([undefined, { address: 0x2000n, condition: "write", length: 4 }])).toBe(0xd00608n);
    // G2 (bit 5); R/W2 = 01 (bits 25:24); LEN2 = 01 (bits 27:26).
    expect(encodeDr7([undefined, undefined, { address: 0x2002n, condition: "write", length: 2 }])).toBe(0x5000620n);
    // G3 (bit 7); R/W3 = 11 (bits 29:28); LEN3 = 10, eight bytes (bits 31:30).
    expect(encodeDr7([undefined, undefined, undefined, { address: 0x2008n, condition: "read-write", length: 8 }])).toBe(0xb0000680n);
    expect(encodeDr7([])).toBe(0x400n);
  });

  it("refuses what the CPU would silently change: misalignment, execute with LEN ≠ 00", () => {
    expect(() => encodeDr7([{ address: 0x1002n, condition: "write", length: 4 }])).toThrow(expect.objectContaining({ code: "GDBSTUB_DEBUG_REGISTER" }));
    expect(() => encodeDr7([{ address: 0x1000n, condition: "execute", length: 4 }])).toThrow(expect.objectContaining({ code: "GDBSTUB_DEBUG_REGISTER" }));
    expect(() => encodeDr7([undefined, undefined, undefined, undefined, undefined])).toThrow();
  });

  it("decodeDr7 inverts encodeDr7 and reads L bits too", () => {
    const slot = fc.option(
      fc.oneof(
        fc.record({ address: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), condition: fc.constant("execute" as const), length: fc.constant(1 as const) }),
        fc
          .record({ base: fc.bigInt({ min: 0n, max: (1n << 61n) - 1n }), condition: fc.constantFrom("write" as const, "io" as const, "read-write" as const), length: fc.constantFrom(1 as const, 2 as const, 4 as const, 8 as const) })
          .map(({ base, condition, length }) => ({ address: base * 8n, condition, length })),
      ),
      { nil: undefined },
    );
    fc.assert(
      fc.property(fc.array(slot, { minLength: 4, maxLength: 4 }), (slots: (DebugRegisterSlot | undefined)[]) => {
        const dr7 = encodeDr7(slots);
        const back = decodeDr7(dr7, slots.map((s) => s?.address ?? 0n));
        expect(back.map((s) => s && { address: s.address, condition: s.condition, length: s.length })).toEqual(slots);
        expect(back.every((s) => !s || (s.global && !s.local))).toBe(true);
      }),
      { numRuns: 500 },
    );
    expect(decodeDr7(0x1n, [0x40n])[0]).toEqual({ address: 0x40n, condition: "execute", length: 1, local: true, global: false });
  });
});

describe("splitRange", () => {
  it("covers a range exactly with naturally aligned pieces, each as large as alignment and length allow", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 1n << 48n }), fc.integer({ min: 1, max: 64 }), fc.boolean(), (address, length, allow8) => {
        const parts = splitRange(address, length, allow8);
        let at = address;
        for (const p of parts) {
          expect(p.address).toBe(at);
          expect(p.address % BigInt(p.length)).toBe(0n);
          if (!allow8) expect(p.length).not.toBe(8);
          const bigger = p.length * 2;
          const end = address + BigInt(length);
          if (bigger <= (allow8 ? 8 : 4)) expect(p.address % BigInt(bigger) !== 0n || p.address + BigInt(bigger) > end).toBe(true);
          at += BigInt(p.length);
        }
        expect(at).toBe(address + BigInt(length));
      }),
      { numRuns: 1000 },
    );
    expect(splitRange(0x1001n, 3)).toEqual([{ address: 0x1001n, length: 1 }, { address: 0x1002n, length: 2 }]);
    expect(splitRange(0x1000n, 16, false).map((p) => p.length)).toEqual([4, 4, 4, 4]);
  });
});

describe("DebugRegisters: the four slots as gdb's breakpoints use them", () => {
  it("gives four execute breakpoints and refuses a fifth with no-slots; removal frees a slot", () => {
    const d = new DebugRegisters();
    for (let i = 0; i < 4; i++) expect(d.insert(bp(i % 2 ? "hw" : "sw", 0x1000n + BigInt(i)))).toBe("ok");
    expect(d.insert(bp("hw", 0x2000n))).toBe("no-slots");
    expect(d.state().dr).toEqual([0x1000n, 0x1001n, 0x1002n, 0x1003n]);
    expect(d.state().dr7).toBe(0x4aan); // G0..G3, all execute/LEN 00
    expect(d.remove(bp("hw", 0x1001n))).toBe("ok");
    expect(d.remove(bp("hw", 0x1001n))).toBe("error");
    expect(d.insert(bp("write", 0x3000n, 4))).toBe("ok");
    expect(d.state().dr[1]).toBe(0x3000n);
    expect(d.state().debugreg).toEqual([0x1000n, 0x3000n, 0x1002n, 0x1003n, 0n, 0n, 0n, d.state().dr7]);
  });

  it("splits a watched range over slots, all or nothing", () => {
    const d = new DebugRegisters();
    expect(d.insert(bp("access", 0x1000n, 16))).toBe("ok");
    expect(d.used).toBe(2);
    expect(d.insert(bp("write", 0x2001n, 7))).toBe("no-slots"); // needs 3: 1 + 2 + 4
    expect(d.used).toBe(2);
    expect(d.insert(bp("write", 0x2002n, 6))).toBe("ok"); // 2 + 4
    expect(d.used).toBe(4);
    expect(new DebugRegisters({ allowLength8: false }).insert(bp("write", 0x1000n, 16))).toBe("ok");
    expect(new DebugRegisters({ allowLength8: false }).insert(bp("write", 0x1000n, 20))).toBe("error");
    expect(d.remove(bp("access", 0x1000n, 16))).toBe("ok");
    expect(d.used).toBe(2);
  });

  it("has no read-only condition (Z3 is unsupported) and rejects impossible ranges", () => {
    const d = new DebugRegisters();
    expect(d.insert(bp("read", 0x1000n, 4))).toBe("unsupported");
    expect(d.insert(bp("write", 0x1001n, 32))).toBe("error");
    expect(d.insert(bp("write", 0x1000n, 0))).toBe("error");
    expect(d.insert(bp("write", (1n << 64n) - 2n, 4))).toBe("error");
    expect(d.insert(bp("sw", 0x1000n, 0))).toBe("error");
    expect(d.used).toBe(0);
  });

  it("shares a slot between identical pieces until the last owner leaves", () => {
    const d = new DebugRegisters();
    expect(d.insert(bp("sw", 0x1000n))).toBe("ok");
    expect(d.insert(bp("hw", 0x1000n))).toBe("ok");
    expect(d.used).toBe(1);
    expect(d.stopCause(1n)).toEqual({ type: "swbreak" });
    expect(d.remove(bp("sw", 0x1000n))).toBe("ok");
    expect(d.used).toBe(1);
    expect(d.stopCause(1n)).toEqual({ type: "hwbreak" });
    expect(d.remove(bp("hw", 0x1000n))).toBe("ok");
    expect(d.state()).toEqual({ dr: [0n, 0n, 0n, 0n], dr7: 0x400n, debugreg: [0n, 0n, 0n, 0n, 0n, 0n, 0n, 0x400n], active: false });
  });

  it("maps DR6's B0–B3 to the breakpoint that owns the slot; other bits and idle slots report nothing", () => {
    const d = new DebugRegisters();
    d.insert(bp("hw", 0x1000n));
    d.insert(bp("write", 0x2000n, 8));
    d.insert(bp("access", 0x3004n, 2));
    expect(d.stopCause(0b001n)).toEqual({ type: "hwbreak" });
    expect(d.stopCause(0b010n | (1n << 14n))).toEqual({ type: "watch", address: 0x2000n });
    expect(d.stopCause(0b100n)).toEqual({ type: "awatch", address: 0x3004n });
    expect(d.stopCause(0b1000n)).toBeUndefined(); // slot 3 idle
    expect(d.stopCause(1n << 14n)).toBeUndefined(); // BS: a single step
  });

  it("allocateDebugRegisters reports the first breakpoint that does not fit", () => {
    const all = [bp("hw", 1n), bp("hw", 2n), bp("write", 0x10n, 8), bp("access", 0x20n, 4), bp("sw", 3n)];
    expect(allocateDebugRegisters(all.slice(0, 4))).toMatchObject({ active: true, dr: [1n, 2n, 0x10n, 0x20n] });
    expect(allocateDebugRegisters(all)).toEqual({ failed: all[4], result: "no-slots" });
  });
});
