import { CHECKS, checkVmEntry, getProfile, VmcsState, validVmcsTemplate, vmEntryResult } from "@tsvmm/vmcs";
import { describe, expect, it } from "vitest";
import { MUTATIONS, mutationFor } from "../src/arbitraries/index.js";

const ids = (v: { id: string }[]): string[] => [...new Set(v.map((x) => x.id))].sort();

describe("catalog", () => {
  it("has 184 checks with unique ids and an SDM subsection each, and a mutation for every one", () => {
    expect(CHECKS.length).toBe(184);
    expect(new Set(CHECKS.map((c) => c.id)).size).toBe(184);
    for (const c of CHECKS) expect(c.sdm).toMatch(/^2[67]\.[23](\.\d+)+\+?$/);
    expect(Object.keys(MUTATIONS).sort()).toEqual(CHECKS.map((c) => c.id).sort());
  });
});

// Per-check: the valid template passes, and the rule's one-field mutation fails with exactly that id
// (plus only the checks the SDM makes fail with it). Each mutation is exercised with several bad values.
describe.each(CHECKS.map((c) => [c.id, c.sdm] as const))("%s (§%s)", (id, sdm) => {
  const m = mutationFor(id);
  const base = getProfile(m.profile ?? "full-featured");
  const caps = m.caps ? m.caps(base) : base;
  it("valid state passes; mutation fails with exactly this id", () => {
    const valid = validVmcsTemplate(base, m.mode);
    expect(checkVmEntry(valid, base, {})).toEqual([]);
    for (const r of [0, 1, 2, 3, 5, 7, 11, 200]) {
      const s = valid.clone();
      m.apply(s, r);
      const v = checkVmEntry(s, caps, m.env ? m.env() : {});
      expect(ids(v), `r=${r}: ${JSON.stringify(v)}`).toEqual([id, ...(m.also ?? [])].sort());
      const mine = v.find((x) => x.id === id)!;
      expect(mine.sdm).toBe(sdm);
      expect(mine.message).toMatch(/[A-Z0-9_]+=/);
    }
  });
});

describe("checkVmEntry robustness", () => {
  it("never throws on hostile input", () => {
    const caps = getProfile("intel-core-i7-5600u");
    expect(checkVmEntry({} as VmcsState, caps)[0]!.id).toBe("INPUT.INVALID_STATE");
    expect(checkVmEntry(new VmcsState(), {} as typeof caps)[0]!.id).toBe("INPUT.INVALID_CAPS");
    expect(checkVmEntry(new VmcsState(), null as unknown as typeof caps)[0]!.id).toBe("INPUT.INVALID_CAPS");
    const badMem = { readU8: () => { throw new Error("boom"); } } as never;
    expect(() => checkVmEntry(new VmcsState(), caps, { memory: badMem })).not.toThrow();
  });

  it("an all-zero VMCS fails controls, host and guest checks", () => {
    const v = checkVmEntry(new VmcsState(), getProfile("intel-core-i7-5600u"));
    const groups = new Set(v.map((x) => CHECKS.find((c) => c.id === x.id)!.group));
    expect(groups).toEqual(new Set(["controls", "host", "guest"]));
  });
});

describe("vmEntryResult: the CPU's ordering", () => {
  const caps = getProfile("full-featured");
  const broken = (id: string): VmcsState => {
    const m = mutationFor(id);
    const s = validVmcsTemplate(caps, m.mode);
    m.apply(s, 0);
    return s;
  };
  it("success for a valid state", () => {
    expect(vmEntryResult(validVmcsTemplate(caps, "long"), caps).kind).toBe("success");
  });
  it("controls → VMfailValid error 7, even when host and guest are also broken", () => {
    const s = broken("CTRL.PROC2.VPID_NONZERO");
    s.set("HOST_CS_SELECTOR", 0);
    s.set("GUEST_RFLAGS", 0n);
    const r = vmEntryResult(s, caps);
    expect(r).toMatchObject({ kind: "vmfail-valid", vmInstructionError: 7 });
  });
  it("host → VMfailValid error 8", () => {
    expect(vmEntryResult(broken("HOST.SEL.CS_NONZERO"), caps)).toMatchObject({ kind: "vmfail-valid", vmInstructionError: 8 });
  });
  it("guest → VM-entry failure, exit reason 33 | bit 31, qualification 0", () => {
    expect(vmEntryResult(broken("GUEST.RFLAGS.RESERVED"), caps)).toMatchObject({
      kind: "entry-failure",
      basicExitReason: 33,
      exitReason: 0x8000_0021,
      exitQualification: 0,
    });
  });
  it("invalid VMCS link pointer → qualification 4; PDPTE load → 2", () => {
    expect(vmEntryResult(broken("GUEST.LINK.ALIGN"), caps)).toMatchObject({ kind: "entry-failure", exitQualification: 4 });
    const m = mutationFor("GUEST.PDPTE.FROM_CR3");
    expect(vmEntryResult(broken("GUEST.PDPTE.FROM_CR3"), caps, m.env!())).toMatchObject({ kind: "entry-failure", exitQualification: 2 });
  });
});
