import { capsFromJSON, capsToJSON, checkVmEntry, getProfile, isProfileName, PROFILES, VmcsError, VmcsState, validVmcsTemplate } from "@tsvmm/vmcs";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

const typed = (code: string, path?: string) => expect.objectContaining(path === undefined ? { code } : { code, path });

describe("getProfile", () => {
  it("returns the built-in profiles by name", () => {
    for (const name of Object.keys(PROFILES)) expect(getProfile(name).name).toBe(name);
  });

  it.each(["toString", "__proto__", "constructor", "hasOwnProperty", "valueOf", "", "FULL-FEATURED", "intel"])(
    "%j is not a profile: VMCS_UNKNOWN_PROFILE",
    (name) => {
      expect(isProfileName(name)).toBe(false);
      expect(() => getProfile(name)).toThrow(VmcsError);
      expect(() => getProfile(name)).toThrow(typed("VMCS_UNKNOWN_PROFILE"));
    },
  );

  it("a non-string name is refused with the same typed error", () => {
    for (const bad of [undefined, null, 1, {}, Symbol.iterator]) {
      expect(() => getProfile(bad as unknown as string)).toThrow(typed("VMCS_UNKNOWN_PROFILE"));
    }
  });

  it("any string that is not an own key of PROFILES throws, never returns", () => {
    fc.assert(
      fc.property(fc.string(), (name) => {
        fc.pre(!Object.hasOwn(PROFILES, name));
        expect(() => getProfile(name)).toThrow(typed("VMCS_UNKNOWN_PROFILE"));
      }),
      { numRuns: 300 },
    );
  });
});

describe("capsFromJSON: unknown keys are refused at every level, naming the key", () => {
  it("maxphyaddr at the top level is an error, not a silent MAXPHYADDR 36", () => {
    const text = JSON.stringify({ base: "intel-pentium-n3530", maxphyaddr: 46 });
    expect(() => capsFromJSON(text)).toThrow(typed("VMCS_INVALID_CAPS", "maxphyaddr"));
    expect(() => capsFromJSON(text)).toThrow(/unknown key "maxphyaddr".*did you mean cpu\.maxPhysAddr/);
  });

  it.each([
    [{ msrs: {}, cpus: {} }, "cpus"],
    [{ base: "full-featured", Base: "x" }, "Base"],
    [{ cpu: { maxphyaddr: 46 } }, "cpu.maxphyaddr"],
    [{ cpu: { maxPhysAddr: 46, toString: 1 } }, "cpu.toString"],
    [JSON.parse('{"cpu": {"__proto__": {"maxPhysAddr": 40}}}'), "cpu.__proto__"],
    [{ msrs: { IA32_VMX_NOPE: "0x1" } }, "msrs.IA32_VMX_NOPE"],
    [{ msrs: { toString: "0x1" } }, "msrs.toString"],
    [{ msrs: { constructor: "0x1" } }, "msrs.constructor"],
    [{ msrs: { "0x494": "0x1" } }, "msrs.0x494"],
    [{ msrs: { "0x100000480": "0x1" } }, "msrs.0x100000480"],
    [JSON.parse('{"__proto__": {"base": "full-featured"}}'), "__proto__"],
  ])("%j → path %s", (json, path) => {
    expect(() => capsFromJSON(json)).toThrow(typed("VMCS_INVALID_CAPS", path));
    expect(() => capsFromJSON(JSON.stringify(json))).toThrow(typed("VMCS_INVALID_CAPS", path));
  });

  it("known keys at each level still work, by name or by MSR index", () => {
    const c = capsFromJSON({ name: "mine", base: "intel-core-i7-5600u", msrs: { "0x48b": "0x0", IA32_VMX_VMFUNC: 0 }, cpu: { maxPhysAddr: 46, pcid: false } });
    expect(c.name).toBe("mine");
    expect(c.cpu.maxPhysAddr).toBe(46);
    expect(c.msrs.IA32_VMX_PROCBASED_CTLS2).toBe(0n);
    expect(c.msrs.IA32_VMX_BASIC).toBe(PROFILES["intel-core-i7-5600u"]!.msrs.IA32_VMX_BASIC);
  });

  it("wrong types and values are typed errors with a path", () => {
    expect(() => capsFromJSON({ base: 5 })).toThrow(typed("VMCS_INVALID_CAPS", "base"));
    expect(() => capsFromJSON({ base: "toString" })).toThrow(typed("VMCS_UNKNOWN_PROFILE"));
    expect(() => capsFromJSON({ name: 5 })).toThrow(typed("VMCS_INVALID_CAPS", "name"));
    expect(() => capsFromJSON({ msrs: [] })).toThrow(typed("VMCS_INVALID_CAPS", "msrs"));
    expect(() => capsFromJSON({ cpu: "x" })).toThrow(typed("VMCS_INVALID_CAPS", "cpu"));
    expect(() => capsFromJSON({ cpu: { pcid: 1 } })).toThrow(typed("VMCS_INVALID_CAPS", "cpu.pcid"));
    expect(() => capsFromJSON({ cpu: { pmuGpCounters: 1.5 } })).toThrow(typed("VMCS_INVALID_CAPS", "cpu.pmuGpCounters"));
    expect(() => capsFromJSON({ cpu: { pmuFixedCounters: 99 } })).toThrow(typed("VMCS_INVALID_CAPS", "cpu.pmuFixedCounters"));
    expect(() => capsFromJSON({ cpu: { maxPhysAddr: 60 } })).toThrow(typed("VMCS_INVALID_CAPS", "cpu.maxPhysAddr"));
    expect(() => capsFromJSON({ msrs: { IA32_VMX_BASIC: "0x10000000000000000" } })).toThrow(typed("VMCS_INVALID_CAPS", "msrs.IA32_VMX_BASIC"));
    expect(() => capsFromJSON("[1]")).toThrow(typed("VMCS_INVALID_CAPS"));
    expect(() => capsFromJSON("{")).toThrow(typed("VMCS_INVALID_CAPS"));
  });

  it("capsToJSON output is accepted back for every profile (round trip)", () => {
    for (const p of Object.values(PROFILES)) {
      const back = capsFromJSON(JSON.parse(JSON.stringify(capsToJSON(p))));
      expect(back.msrs).toEqual(p.msrs);
      expect(back.cpu).toEqual(p.cpu);
      const s = validVmcsTemplate(p, "protected");
      expect(checkVmEntry(s, back)).toEqual(checkVmEntry(s, p));
    }
  });
});

describe("VmcsState.fromJSON: unknown top-level keys are refused too", () => {
  it("names the key", () => {
    expect(() => VmcsState.fromJSON({ fields: {}, feilds: {} })).toThrow(typed("VMCS_INVALID_JSON", "feilds"));
    expect(() => VmcsState.fromJSON({ fields: { GUEST_CR9: "0x1" } })).toThrow(typed("VMCS_UNKNOWN_FIELD", "fields.GUEST_CR9"));
    expect(() => VmcsState.fromJSON({ fields: { toString: "0x1" } })).toThrow(typed("VMCS_UNKNOWN_FIELD", "fields.toString"));
  });
});

describe("error messages never fail on the values they show", () => {
  it("bigints, symbols and functions in inputs give typed errors, not TypeError", () => {
    expect(() => capsFromJSON({ cpu: { pcid: 5n } })).toThrow(typed("VMCS_INVALID_CAPS", "cpu.pcid"));
    expect(() => capsFromJSON({ msrs: { IA32_VMX_BASIC: Symbol("x") } })).toThrow(typed("VMCS_INVALID_CAPS", "msrs.IA32_VMX_BASIC"));
    expect(() => capsFromJSON({ msrs: { IA32_VMX_BASIC: 1n << 64n } })).toThrow(typed("VMCS_INVALID_CAPS", "msrs.IA32_VMX_BASIC"));
    expect(capsFromJSON({ msrs: { IA32_VMX_BASIC: 5n } }).msrs.IA32_VMX_BASIC).toBe(5n);
    expect(() => VmcsState.fromJSON({ fields: { GUEST_CR0: Symbol("x") } })).toThrow(typed("VMCS_INVALID_JSON"));
    expect(() => VmcsState.fromJSON({ fields: { GUEST_CR0: -1n } })).toThrow(typed("VMCS_INVALID_JSON"));
    expect(() => VmcsState.fromJSON({ fields: { GUEST_CS_SELECTOR: 1n << 16n } })).toThrow(typed("VMCS_VALUE_OUT_OF_RANGE"));
    expect(VmcsState.fromJSON({ fields: { GUEST_CR0: 0x31n } }).get("GUEST_CR0")).toBe(0x31n);
    expect(() => getProfile(5n as unknown as string)).toThrow(typed("VMCS_UNKNOWN_PROFILE"));
  });
});
