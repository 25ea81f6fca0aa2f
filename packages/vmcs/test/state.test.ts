import { fieldMax, isVmcsState, VMCS_FIELDS, VmcsState } from "@tsvmm/vmcs";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

const writable = VMCS_FIELDS.filter((f) => f.access === "full");

describe("VmcsState", () => {
  it("accepts exactly the values that fit each field's width", () => {
    fc.assert(
      fc.property(fc.constantFrom(...writable), fc.bigInt({ min: 0n, max: (1n << 66n) - 1n }), (f, v) => {
        const s = new VmcsState();
        if (v <= fieldMax(f)) {
          s.set(f.name, v);
          expect(s.get(f.encoding)).toBe(v);
        } else {
          expect(() => s.set(f.name, v)).toThrow(expect.objectContaining({ code: "VMCS_VALUE_OUT_OF_RANGE" }));
          expect(s.has(f.name)).toBe(false);
        }
      }),
      { numRuns: 400 },
    );
  });

  it("16-bit fields reject 0x10000; 32-bit reject 2^32; negative and fractional numbers are rejected", () => {
    const s = new VmcsState();
    expect(() => s.set("GUEST_CS_SELECTOR", 0x10000)).toThrow(expect.objectContaining({ code: "VMCS_VALUE_OUT_OF_RANGE" }));
    expect(() => s.set("GUEST_CS_LIMIT", 2 ** 32)).toThrow(expect.objectContaining({ code: "VMCS_VALUE_OUT_OF_RANGE" }));
    expect(() => s.set("GUEST_CS_LIMIT", -1)).toThrow(expect.objectContaining({ code: "VMCS_VALUE_OUT_OF_RANGE" }));
    expect(() => s.set("GUEST_CS_LIMIT", 1.5)).toThrow(expect.objectContaining({ code: "VMCS_VALUE_OUT_OF_RANGE" }));
    s.set("GUEST_CS_LIMIT", 0xffff_ffff);
    expect(s.getNumber("GUEST_CS_LIMIT")).toBe(0xffff_ffff);
  });

  it("a _HIGH half reads and writes bits 63:32 of its full field", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.bigInt({ min: 0n, max: 0xffff_ffffn }), (v, h) => {
        const s = new VmcsState().set("EPT_POINTER", v);
        expect(s.get("EPT_POINTER_HIGH")).toBe(v >> 32n);
        s.set("EPT_POINTER_HIGH", h);
        expect(s.get("EPT_POINTER")).toBe((h << 32n) | (v & 0xffff_ffffn));
      }),
      { numRuns: 200 },
    );
  });

  it("JSON export/import round-trips", () => {
    const arbState = fc
      .array(fc.tuple(fc.constantFrom(...writable), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })), { maxLength: 20 })
      .map((pairs) => {
        const s = new VmcsState();
        for (const [f, v] of pairs) s.set(f.name, v & fieldMax(f));
        return s;
      });
    fc.assert(
      fc.property(arbState, (s) => {
        const text = JSON.stringify(s.toJSON());
        const back = VmcsState.fromJSON(text);
        expect(back.toJSON()).toEqual(s.toJSON());
        for (const [f, v] of s.entries()) expect(back.get(f.name)).toBe(v);
      }),
      { numRuns: 100 },
    );
  });

  it("JSON import takes names, encodings, hex, decimal and numbers; rejects the rest with typed errors", () => {
    const s = VmcsState.fromJSON({ fields: { GUEST_CR0: "0x80000031", "0x681e": "4096", GUEST_RSP: 16 } });
    expect(s.get("GUEST_CR0")).toBe(0x8000_0031n);
    expect(s.get("GUEST_RIP")).toBe(4096n);
    expect(s.get("GUEST_RSP")).toBe(16n);
    expect(() => VmcsState.fromJSON("{")).toThrow(expect.objectContaining({ code: "VMCS_INVALID_JSON" }));
    expect(() => VmcsState.fromJSON({})).toThrow(expect.objectContaining({ code: "VMCS_INVALID_JSON" }));
    expect(() => VmcsState.fromJSON({ fields: { NOPE: "0x1" } })).toThrow(expect.objectContaining({ code: "VMCS_UNKNOWN_FIELD" }));
    expect(() => VmcsState.fromJSON({ fields: { GUEST_CR0: "zz" } })).toThrow(expect.objectContaining({ code: "VMCS_INVALID_JSON" }));
    expect(() => VmcsState.fromJSON({ fields: { GUEST_CS_SELECTOR: "0x10000" } })).toThrow(
      expect.objectContaining({ code: "VMCS_VALUE_OUT_OF_RANGE" }),
    );
  });
});

describe("VmcsState identity across copies of the package", () => {
  it("isVmcsState/instanceof accept a branded state with this slot layout and nothing else", () => {
    const s = new VmcsState();
    expect(isVmcsState(s)).toBe(true);
    expect(s instanceof VmcsState).toBe(true);
    const brand = Symbol.for("@tsvmm/vmcs.VmcsState");
    const own = (s as unknown as Record<symbol, unknown>)[brand];
    expect(typeof own).toBe("string");
    // Another copy with the same layout carries the same brand value: accepted.
    expect(isVmcsState({ [brand]: own })).toBe(true);
    // A copy with another layout (another version) or no brand: refused.
    expect(isVmcsState({ [brand]: "vmcs-state/1:1:0" })).toBe(false);
    expect(isVmcsState({ getSlot: () => 0n })).toBe(false);
    expect(isVmcsState(null)).toBe(false);
    expect({ getSlot: () => 0n } instanceof VmcsState).toBe(false);
  });
});
