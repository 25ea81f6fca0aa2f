import { allowedControls, capsFromJSON, capsToJSON, checkVmEntry, getProfile, hasTrueCtls, isProfileName, PROFILES, supportsMode, VmcsError, VmcsState, type VmxCaps, validVmcsTemplate } from "@tsvmm/vmcs";
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

describe("non-TRUE capability MSRs (IA32_VMX_BASIC[55] = 0)", () => {
  const x5482 = getProfile("intel-xeon-x5482");
  const withBasic55 = (c: VmxCaps, on: boolean): VmxCaps => ({
    ...c,
    name: `${c.name}${on ? "+" : "-"}true`,
    msrs: { ...c.msrs, IA32_VMX_BASIC: on ? c.msrs.IA32_VMX_BASIC | (1n << 55n) : c.msrs.IA32_VMX_BASIC & ~(1n << 55n) },
  });

  it("a real pre-Nehalem profile: bit 55 clear, so allowedControls reads the non-TRUE MSRs", () => {
    // Values as recorded by VirtualBox for the Xeon X5482 (MSRs 0x481-0x484).
    expect(hasTrueCtls(x5482)).toBe(false);
    expect(allowedControls(x5482, "pin")).toEqual({ must1: 0x16, may1: 0x3f });
    expect(allowedControls(x5482, "proc")).toEqual({ must1: 0x0401e172, may1: 0xf7f9fffe });
    expect(allowedControls(x5482, "exit")).toEqual({ must1: 0x36dff, may1: 0x3ffff });
    expect(allowedControls(x5482, "entry")).toEqual({ must1: 0x11ff, may1: 0x3fff });
    // A TRUE-capable CPU reads IA32_VMX_TRUE_*: the default1 bits may be 0 there.
    const bdw = getProfile("intel-core-i7-5600u");
    expect(hasTrueCtls(bdw)).toBe(true);
    expect(allowedControls(bdw, "proc").must1).toBe(0x04006172);
    expect(allowedControls(withBasic55(bdw, false), "proc").must1).toBe(0x0401e172);
  });

  it("the X5482 runs protected- and long-mode guests (no EPT, no unrestricted guest)", () => {
    expect(supportsMode(x5482, "real")).toBe(false);
    for (const mode of ["protected", "long"] as const) {
      const s = validVmcsTemplate(x5482, mode);
      expect(checkVmEntry(s, x5482)).toEqual([]);
      expect(s.get("CPU_BASED_VM_EXEC_CONTROL") & 0x18000n).toBe(0x18000n); // CR3 load/store exiting: default1
      expect(s.get("VM_ENTRY_CONTROLS") & 4n).toBe(4n); // load debug controls: default1
      expect(s.get("SECONDARY_VM_EXEC_CONTROL") & 2n).toBe(0n); // no EPT on Penryn
    }
  });

  it("clearing a default1 bit is refused by the non-TRUE MSR and accepted by the TRUE one", () => {
    const cases: [string, string, number][] = [
      ["CPU_BASED_VM_EXEC_CONTROL", "CTRL.PROC.ALLOWED_BITS", 1 << 15],
      ["CPU_BASED_VM_EXEC_CONTROL", "CTRL.PROC.ALLOWED_BITS", 1 << 16],
      ["VM_EXIT_CONTROLS", "CTRL.EXIT.ALLOWED_BITS", 1 << 2],
      ["VM_ENTRY_CONTROLS", "CTRL.ENTRY.ALLOWED_BITS", 1 << 2],
    ];
    const bdw = getProfile("intel-core-i7-5600u");
    const nonTrue = withBasic55(bdw, false);
    for (const [f, id, bit] of cases) {
      const s = validVmcsTemplate(nonTrue, "long");
      expect(checkVmEntry(s, nonTrue)).toEqual([]);
      s.set(f, (Number(s.get(f)) & ~bit) >>> 0);
      const v = checkVmEntry(s, nonTrue);
      expect(v.map((x) => x.id)).toEqual([id]);
      expect(v[0]!.message).toContain(`bits 0x${bit.toString(16)} must be 1`);
      expect(checkVmEntry(s, bdw)).toEqual([]);
      // And on the real non-TRUE CPU.
      const p = validVmcsTemplate(x5482, "long");
      p.set(f, (Number(p.get(f)) & ~bit) >>> 0);
      expect(checkVmEntry(p, x5482).map((x) => x.id)).toEqual([id]);
    }
  });

  it("property: ALLOWED_BITS verdicts follow the MSR pair that bit 55 selects", () => {
    const words = [
      ["pin", "PIN_BASED_VM_EXEC_CONTROL", "CTRL.PIN.ALLOWED_BITS", "IA32_VMX_PINBASED_CTLS", "IA32_VMX_TRUE_PINBASED_CTLS"],
      ["proc", "CPU_BASED_VM_EXEC_CONTROL", "CTRL.PROC.ALLOWED_BITS", "IA32_VMX_PROCBASED_CTLS", "IA32_VMX_TRUE_PROCBASED_CTLS"],
      ["exit", "VM_EXIT_CONTROLS", "CTRL.EXIT.ALLOWED_BITS", "IA32_VMX_EXIT_CTLS", "IA32_VMX_TRUE_EXIT_CTLS"],
      ["entry", "VM_ENTRY_CONTROLS", "CTRL.ENTRY.ALLOWED_BITS", "IA32_VMX_ENTRY_CTLS", "IA32_VMX_TRUE_ENTRY_CTLS"],
    ] as const;
    const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
    fc.assert(
      fc.property(fc.boolean(), fc.array(fc.tuple(u32, u32, u32, u32, u32), { minLength: 4, maxLength: 4 }), (trueCtls, draws) => {
        const msrs = { ...PROFILES["full-featured"]!.msrs };
        msrs.IA32_VMX_BASIC = trueCtls ? msrs.IA32_VMX_BASIC | (1n << 55n) : msrs.IA32_VMX_BASIC & ~(1n << 55n);
        const s = new VmcsState();
        const want = new Set<string>();
        words.forEach(([, field, id, plain, tru], i) => {
          const [must1a, may1a, must1b, may1b, value] = draws[i]!;
          msrs[plain] = (BigInt(may1a) << 32n) | BigInt(must1a);
          msrs[tru] = (BigInt(may1b) << 32n) | BigInt(must1b);
          const [must1, may1] = trueCtls ? [must1b, may1b] : [must1a, may1a];
          s.set(field, value);
          // Independent reference: every must-be-1 bit set and no bit outside may-be-1.
          if ((value & must1) >>> 0 !== must1 >>> 0 || (value & ~may1) >>> 0 !== 0) want.add(id);
        });
        const caps = { name: "random", msrs, cpu: PROFILES["full-featured"]!.cpu };
        const got = new Set(checkVmEntry(s, caps).map((v) => v.id).filter((id) => id.endsWith(".ALLOWED_BITS") && !id.includes("PROC2") && !id.includes("PROC3") && !id.includes("EXIT2")));
        expect(got).toEqual(want);
      }),
      { numRuns: 500 },
    );
  });
});
