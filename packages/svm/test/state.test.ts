import { capsFromJSON, capsToJSON, featureGaps, featureNames, getProfile, hasFeature, INT_CTL, PROFILES, SVM_FEATURE, VMCB_FIELDS, VmcbState, validVmcbTemplate } from "@tsvmm/svm";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

describe("VmcbState", () => {
  it("get/set by name, width-checked, stored at the field's offset of the page", () => {
    const s = new VmcbState().set("save.cr0", 0x8000_0011n).set("control.guestAsid", 7).set("control.tlbControl", 3);
    expect(s.get("save.cr0")).toBe(0x8000_0011n);
    const page = s.toBuffer();
    expect(page.length).toBe(4096);
    expect(s.decode().save.cr0).toBe(0x8000_0011n);
    expect(s.decode().control.guestAsid).toBe(7);
    expect(s.decode().control.tlbControl).toBe(3);
    expect(() => s.set("control.guestAsid", 0x1_0000_0000n)).toThrow(expect.objectContaining({ code: "SVM_VALUE_OUT_OF_RANGE" }));
    expect(() => s.set("control.tlbControl", 256)).toThrow(expect.objectContaining({ code: "SVM_VALUE_OUT_OF_RANGE" }));
    expect(() => s.set("save.cr0", -1n)).toThrow(expect.objectContaining({ code: "SVM_VALUE_OUT_OF_RANGE" }));
    expect(() => s.set("save.cr0", 2 ** 60)).toThrow(expect.objectContaining({ code: "SVM_VALUE_OUT_OF_RANGE" }));
    expect(() => s.get("save.nope")).toThrow(expect.objectContaining({ code: "SVM_UNKNOWN_FIELD" }));
    expect(() => VmcbState.fromBuffer(Buffer.alloc(100))).toThrow(expect.objectContaining({ code: "SVM_INVALID_VMCB" }));
  });

  it("any value in any field round-trips through set/get, the page and JSON", () => {
    const anyField = fc.constantFrom(...VMCB_FIELDS).chain((f) => fc.tuple(fc.constant(f), fc.bigInt({ min: 0n, max: (1n << BigInt(8 * f.size)) - 1n })));
    fc.assert(
      fc.property(fc.array(anyField, { maxLength: 20 }), (writes) => {
        const s = new VmcbState();
        for (const [f, v] of writes) s.set(f.name, v);
        const back = VmcbState.fromJSON(JSON.stringify(s.toJSON()));
        expect(back.toBuffer()).toEqual(s.toBuffer());
        expect(VmcbState.fromBuffer(s.toBuffer()).toJSON()).toEqual(s.toJSON());
        for (const [f] of writes) expect(back.get(f.name)).toBe(s.get(f.name));
      }),
      { numRuns: 300 },
    );
  });

  it("the 15 instruction bytes are one little-endian field", () => {
    const s = new VmcbState().set("control.insnBytes", 0x0f01d8n).set("control.insnLen", 3);
    expect(s.decode().control.insnBytes.subarray(0, 3)).toEqual(Buffer.from([0xd8, 0x01, 0x0f]));
  });

  it("JSON errors are typed", () => {
    expect(() => VmcbState.fromJSON("{")).toThrow(expect.objectContaining({ code: "SVM_INVALID_JSON" }));
    expect(() => VmcbState.fromJSON("[]")).toThrow(expect.objectContaining({ code: "SVM_INVALID_JSON" }));
    expect(() => VmcbState.fromJSON({ fields: { "save.cr0": "zz" } })).toThrow(expect.objectContaining({ code: "SVM_INVALID_JSON" }));
    expect(() => VmcbState.fromJSON({ fields: { "save.cr5": "0x1" } })).toThrow(expect.objectContaining({ code: "SVM_UNKNOWN_FIELD" }));
    expect(VmcbState.fromJSON({ fields: { "save.cr0": 17, "save.cr4": "32" } }).get("save.cr4")).toBe(32n);
  });

  it("brand check recognises states, not look-alikes", () => {
    expect(VmcbState.isVmcbState(new VmcbState())).toBe(true);
    expect(VmcbState.isVmcbState({ get: () => 0n })).toBe(false);
    expect(VmcbState.isVmcbState(null)).toBe(false);
  });
});

describe("capabilities", () => {
  it("profiles decode CPUID Fn8000_000A as recorded", () => {
    const zen = getProfile("amd-ryzen-7-1800x");
    expect(zen.svm).toEqual({ revision: 1, nasid: 0x8000, features: 0x1bcff });
    expect(featureNames(zen.svm.features)).toEqual(["NP", "LbrVirt", "SVML", "NRIPS", "TscRateMsr", "VmcbClean", "FlushByAsid", "DecodeAssists", "PauseFilter", "PauseFilterThreshold", "AVIC", "VMSAVEvirt", "VGIF"]);
    expect(zen.cpu).toMatchObject({ maxPhysAddr: 48, longMode: true, nx: true, smep: true, smap: true, fsgsbase: true, pcid: false, xsave: true, umip: false });
    const k10 = getProfile("amd-phenom-ii-x6-1100t");
    expect(featureNames(k10.svm.features)).toEqual(["NP", "LbrVirt", "SVML", "NRIPS", "PauseFilter"]);
    expect(k10.svm.nasid).toBe(64);
    expect(featureNames(getProfile("amd-fx-8150").svm.features)).toEqual(["NP", "LbrVirt", "SVML", "NRIPS", "TscRateMsr", "VmcbClean", "FlushByAsid", "DecodeAssists", "PauseFilter", "PauseFilterThreshold"]);
    expect(hasFeature(getProfile("full-featured"), "x2AVIC")).toBe(true);
    expect(Object.keys(SVM_FEATURE).length).toBe(featureNames(getProfile("full-featured").svm.features).length);
  });
  it("JSON round-trips and overrides a base", () => {
    for (const c of Object.values(PROFILES)) expect(capsFromJSON(JSON.stringify(capsToJSON(c)))).toEqual(c);
    const c = capsFromJSON({ base: "amd-fx-8150", svm: { features: "0x1" }, cpu: { maxPhysAddr: 40 } });
    expect(c.svm.features).toBe(1);
    expect(c.cpu.maxPhysAddr).toBe(40);
    expect(c.name).toBe("amd-fx-8150+custom");
    for (const bad of ["{", "[]", { base: 1 }, { base: "nope" }, { svm: { x: 1 } }, { svm: { nasid: -1 } }, { cpu: { nope: true } }, { cpu: { nx: 1 } }, { cpu: { maxPhysAddr: 64 } }]) {
      expect(() => capsFromJSON(bad)).toThrow(expect.objectContaining({ code: expect.stringMatching(/^SVM_(INVALID_CAPS|UNKNOWN_PROFILE)$/) }));
    }
    expect(() => getProfile("toString")).toThrow(expect.objectContaining({ code: "SVM_UNKNOWN_PROFILE" }));
  });
  it("featureGaps reports fields that need a feature the CPU lacks", () => {
    const k10 = getProfile("amd-phenom-ii-x6-1100t");
    const s = validVmcbTemplate(k10, "long").set("control.intCtl", INT_CTL.AVIC_ENABLE >>> 0).set("control.vmcbClean", 0xffff).set("control.tlbControl", 3).set("control.pauseFilterCount", 100);
    expect(featureGaps(s, k10).map((g) => g.feature).sort()).toEqual(["AVIC", "FlushByAsid", "VmcbClean"]);
    expect(featureGaps(s, getProfile("full-featured"))).toEqual([]);
  });
});
