import { decodeEncoding, encodeEncoding, field, findField, VMCS_FIELDS, VmcsError } from "@tsvmm/vmcs";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

const parts = fc.record({
  width: fc.constantFrom("16", "64", "32", "natural" as const),
  type: fc.constantFrom("control", "exit-info", "guest", "host" as const),
  index: fc.integer({ min: 0, max: 0x1ff }),
  access: fc.constantFrom("full", "high" as const),
});

describe("encoding layout (SDM §24.11.2)", () => {
  it("encode/decode round-trip for every valid part combination", () => {
    fc.assert(
      fc.property(parts, (p) => {
        fc.pre(p.access === "full" || p.width === "64");
        const enc = encodeEncoding(p);
        expect(enc & 0x1000).toBe(0);
        expect(enc >>> 15).toBe(0);
        expect(decodeEncoding(enc)).toEqual(p);
      }),
      { numRuns: 500 },
    );
  });

  it("decode/encode round-trip over all valid 15-bit encodings", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0x7fff }), (enc) => {
        const ok = (enc & 0x1000) === 0 && (!(enc & 1) || ((enc >>> 13) & 3) === 1);
        if (ok) expect(encodeEncoding(decodeEncoding(enc))).toBe(enc);
        else expect(() => decodeEncoding(enc)).toThrow(VmcsError);
      }),
      { numRuns: 1000 },
    );
  });

  it("rejects reserved bits and non-integers with a typed error", () => {
    for (const bad of [0x1000, 0x8000, -1, 1.5, 2 ** 32, 0x6801]) {
      expect(() => decodeEncoding(bad)).toThrow(VmcsError);
    }
    expect(() => encodeEncoding({ width: "32", type: "guest", index: 0, access: "high" })).toThrow(VmcsError);
    expect(() => encodeEncoding({ width: "32", type: "guest", index: 0x200, access: "full" })).toThrow(VmcsError);
  });
});

describe("field table (SDM Appendix B)", () => {
  it("names and encodings are unique and width/type agree with the encoding", () => {
    expect(new Set(VMCS_FIELDS.map((f) => f.name)).size).toBe(VMCS_FIELDS.length);
    expect(new Set(VMCS_FIELDS.map((f) => f.encoding)).size).toBe(VMCS_FIELDS.length);
    for (const f of VMCS_FIELDS) {
      expect(decodeEncoding(f.encoding)).toEqual({ width: f.width, type: f.type, index: f.index, access: f.access });
      expect(field(f.name)).toBe(f);
      expect(field(f.encoding)).toBe(f);
    }
  });

  it("every 64-bit field has a _HIGH half at encoding+1", () => {
    for (const f of VMCS_FIELDS.filter((x) => x.width === "64" && x.access === "full")) {
      const h = field(f.encoding + 1);
      expect(h.name).toBe(`${f.name}_HIGH`);
      expect(h.bits).toBe(32);
    }
  });

  // Spot values from Linux arch/x86/include/asm/vmx.h (enum vmcs_field).
  it.each([
    ["VIRTUAL_PROCESSOR_ID", 0x0000, "16", "control"],
    ["GUEST_TR_SELECTOR", 0x080e, "16", "guest"],
    ["HOST_TR_SELECTOR", 0x0c0c, "16", "host"],
    ["EPT_POINTER", 0x201a, "64", "control"],
    ["TSC_MULTIPLIER", 0x2032, "64", "control"],
    ["GUEST_PHYSICAL_ADDRESS", 0x2400, "64", "exit-info"],
    ["VMCS_LINK_POINTER", 0x2800, "64", "guest"],
    ["HOST_IA32_EFER", 0x2c02, "64", "host"],
    ["SECONDARY_VM_EXEC_CONTROL", 0x401e, "32", "control"],
    ["VM_EXIT_REASON", 0x4402, "32", "exit-info"],
    ["GUEST_ACTIVITY_STATE", 0x4826, "32", "guest"],
    ["HOST_IA32_SYSENTER_CS", 0x4c00, "32", "host"],
    ["EXIT_QUALIFICATION", 0x6400, "natural", "exit-info"],
    ["GUEST_RIP", 0x681e, "natural", "guest"],
    ["HOST_RIP", 0x6c16, "natural", "host"],
  ])("%s = 0x%s", (name, enc, width, type) => {
    const f = field(name);
    expect(f.encoding).toBe(enc);
    expect(f.width).toBe(width);
    expect(f.type).toBe(type);
  });

  it("unknown fields are a typed error", () => {
    expect(findField("GUEST_CR9")).toBeUndefined();
    expect(() => field("GUEST_CR9")).toThrow(expect.objectContaining({ code: "VMCS_UNKNOWN_FIELD" }));
    expect(() => field(0x6fff)).toThrow(VmcsError);
  });
});
