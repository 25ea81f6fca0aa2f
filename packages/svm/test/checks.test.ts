import { CHECKS, canonicalizeAddress, checkVmrun, EFER, getProfile, PROFILES, VMEXIT_INVALID, VmcbState, validVmcbTemplate, vmrunResult } from "@tsvmm/svm";
import { describe, expect, it } from "vitest";
import { MUTATIONS, mutationCaps, mutationFor } from "../src/arbitraries/index.js";

const ids = (v: { id: string }[]): string[] => [...new Set(v.map((x) => x.id))].sort();

describe("catalog", () => {
  it("has 25 checks with unique ids, an APM section each, and a mutation for every one", () => {
    expect(CHECKS.length).toBe(25);
    expect(new Set(CHECKS.map((c) => c.id)).size).toBe(CHECKS.length);
    for (const c of CHECKS) {
      expect(c.id).toMatch(/^svm\.(ctrl|save)\.[a-z0-9-]+$/);
      expect(c.apm).toMatch(/^15\.\d+(\.\d+)?(, 15\.\d+(\.\d+)?)?$/);
    }
    expect(Object.keys(MUTATIONS).sort()).toEqual(CHECKS.map((c) => c.id).sort());
  });
});

// Per check: the template passes; the rule's one-field mutation fails with exactly that id, with
// several bad values.
describe.each(CHECKS.map((c) => [c.id, c.apm] as const))("%s (APM %s)", (id, apm) => {
  const m = mutationFor(id);
  const base = getProfile(m.profile ?? "full-featured");
  const caps = mutationCaps(m);
  it("valid VMCB passes; mutation fails with exactly this id", () => {
    const valid = validVmcbTemplate(base, m.mode);
    expect(checkVmrun(valid, base)).toEqual([]);
    for (const r of [0, 1, 2, 3, 5, 7, 11, 200, 4097]) {
      const s = valid.clone();
      m.apply(s, r);
      const v = checkVmrun(s, caps, m.env ? m.env() : {});
      expect(ids(v), `r=${r}: ${JSON.stringify(v)}`).toEqual([id, ...(m.also ?? [])].sort());
      const mine = v.find((x) => x.id === id)!;
      expect(mine.apm).toBe(apm);
      expect(mine.message).toMatch(/^(control|save)\.[A-Za-z0-9.]+=0x[0-9a-f]+: /);
    }
  });
});

describe("templates pass on every profile in every mode", () => {
  for (const [name, caps] of Object.entries(PROFILES)) {
    for (const mode of ["real", "protected", "long"] as const) {
      it(`${name} ${mode}`, () => expect(checkVmrun(validVmcbTemplate(caps, mode), caps)).toEqual([]));
    }
  }
});

describe("rules that are not failures", () => {
  const caps = getProfile("amd-ryzen-7-1800x");
  it("paged real mode (CR0.PE=0, PG=1) is a state VMRUN loads", () => {
    const s = validVmcbTemplate(caps, "real").set("save.cr0", 0x8000_0010n);
    expect(checkVmrun(s, caps)).toEqual([]);
  });
  it("CR0.CD=1 with NW=1 (the reset value 60000010h) passes; only NW without CD fails", () => {
    expect(checkVmrun(validVmcbTemplate(caps, "real").set("save.cr0", 0x6000_0010n), caps)).toEqual([]);
  });
  it("non-canonical segment bases are canonicalized by VMRUN, not rejected", () => {
    const s = validVmcbTemplate(caps, "long").set("save.fs.base", 0x0000_8000_0000_1000n).set("save.gdtr.base", 0xffff_0000_0000_0000n);
    expect(checkVmrun(s, caps)).toEqual([]);
    const r = vmrunResult(s, caps);
    expect(r.kind).toBe("success");
    if (r.kind !== "success") return;
    expect(r.loaded.get("save.fs.base")).toBe(0xffff_8000_0000_1000n);
    expect(r.loaded.get("save.gdtr.base")).toBe(0n);
  });
  it("EFER.LMA is loaded as LME & CR0.PG whatever the VMCB says", () => {
    const r = vmrunResult(validVmcbTemplate(caps, "long").set("save.efer", EFER.SVME | EFER.LME), caps);
    expect(r.kind === "success" && r.loaded.get("save.efer") & EFER.LMA).toBe(EFER.LMA);
    const p = vmrunResult(validVmcbTemplate(caps, "protected").set("save.efer", EFER.SVME | EFER.LMA), caps);
    expect(p.kind === "success" && p.loaded.get("save.efer") & EFER.LMA).toBe(0n);
  });
  it("canonicalizeAddress sign-extends bit 47 (bit 56 with LA57)", () => {
    expect(canonicalizeAddress(0x0000_8000_0000_0000n)).toBe(0xffff_8000_0000_0000n);
    expect(canonicalizeAddress(0xffff_7fff_ffff_ffffn)).toBe(0x0000_7fff_ffff_ffffn);
    expect(canonicalizeAddress(0x0100_0000_0000_0000n, true)).toBe(0xff00_0000_0000_0000n);
  });
});

describe("vmrunResult", () => {
  const caps = getProfile("full-featured");
  it("any failure is #VMEXIT(VMEXIT_INVALID), EXITCODE −1", () => {
    const s = validVmcbTemplate(caps, "long").set("control.guestAsid", 0).set("save.efer", 0n);
    const r = vmrunResult(s, caps);
    expect(r).toMatchObject({ kind: "vmexit-invalid", exitCode: VMEXIT_INVALID });
    expect(VMEXIT_INVALID).toBe(BigInt.asUintN(64, -1n));
    if (r.kind === "vmexit-invalid") expect(ids(r.violations)).toEqual(["svm.ctrl.asid-zero", "svm.save.efer-svme"]);
  });
});

describe("checkVmrun robustness", () => {
  const caps = getProfile("amd-fx-8150");
  it("never throws on hostile input", () => {
    expect(checkVmrun({} as VmcbState, caps)[0]!.id).toBe("input.invalid-vmcb");
    expect(checkVmrun(null as unknown as VmcbState, caps)[0]!.id).toBe("input.invalid-vmcb");
    expect(checkVmrun(new VmcbState(), {} as typeof caps)[0]!.id).toBe("input.invalid-caps");
    expect(checkVmrun(new VmcbState(), null as unknown as typeof caps)[0]!.id).toBe("input.invalid-caps");
    expect(checkVmrun(new VmcbState(), { ...caps, cpu: { ...caps.cpu, maxPhysAddr: 99 } })[0]!.id).toBe("input.invalid-caps");
    expect(checkVmrun(new VmcbState(), caps, null as never).length).toBeGreaterThan(0);
    const forged = { [Symbol.for("@tsvmm/svm.VmcbState")]: true, get: () => { throw new Error("boom"); } } as unknown as VmcbState;
    expect(checkVmrun(forged, caps)[0]!.id).toBe("input.invalid-vmcb");
  });
  it("an all-zero VMCB fails both areas", () => {
    const got = ids(checkVmrun(new VmcbState(), caps));
    expect(got).toEqual(["svm.ctrl.asid-zero", "svm.ctrl.vmrun-intercept", "svm.save.efer-svme"]);
  });
});
