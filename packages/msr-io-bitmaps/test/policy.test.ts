import { BitmapError, diffIo, diffMsr, formatDiff, MsrPolicy, SvmIopm, SvmMsrpm, VmxIoBitmap, VmxMsrBitmap } from "@tsvmm/msr-io-bitmaps";
import { describe, expect, it } from "vitest";

const EFER = 0xc000_0080;

describe("MsrPolicy", () => {
  it("allow-list denies by default, deny-list allows by default", () => {
    const allow = MsrPolicy.fromAllowList([0x10, { msrs: { first: 0x4000_0000, last: 0x4000_00ff }, access: "read" }]);
    expect(allow.allows(0x10, "write")).toBe(true);
    expect(allow.allows(0x4000_0001, "read")).toBe(true);
    expect(allow.allows(0x4000_0001, "write")).toBe(false);
    expect(allow.allows(0xffff_ffff, "read")).toBe(false);
    const deny = MsrPolicy.fromDenyList([{ msrs: EFER, access: "write" }]);
    expect(deny.allows(EFER, "write")).toBe(false);
    expect(deny.allows(EFER, "read")).toBe(true);
    expect(deny.deniedRanges("write")).toEqual([{ first: EFER, last: EFER }]);
    expect(deny.allowedRanges("write")).toEqual([
      { first: 0, last: EFER - 1 },
      { first: EFER + 1, last: 0xffff_ffff },
    ]);
  });

  it("union denies where either denies; intersection only where both do", () => {
    const a = MsrPolicy.fromDenyList([{ first: 0, last: 9 }]);
    const b = MsrPolicy.fromDenyList([{ first: 5, last: 14 }]);
    expect(a.union(b).deniedRanges("read")).toEqual([{ first: 0, last: 14 }]);
    expect(a.intersection(b).deniedRanges("read")).toEqual([{ first: 5, last: 9 }]);
  });

  it("serializes to a documented JSON form and back", () => {
    const p = MsrPolicy.fromAllowList([{ first: 0x10, last: 0x1f }, { msrs: EFER, access: "read" }]);
    const json = p.toJSON();
    expect(json).toEqual({ format: "tsvmm.msr-policy/1", allow: { read: ["0x10-0x1f", "0xc0000080"], write: ["0x10-0x1f"] } });
    expect(MsrPolicy.fromJSON(JSON.parse(JSON.stringify(json))).equals(p)).toBe(true);
    expect(() => MsrPolicy.fromJSON({ format: "tsvmm.msr-policy/1", allow: { read: ["0x10-0xg"], write: [] } })).toThrow(BitmapError);
    expect(() => MsrPolicy.fromJSON({ format: "tsvmm.msr-policy/1", allow: { read: ["0x20-0x10"], write: [] } })).toThrow(
      expect.objectContaining({ code: "BITMAP_BAD_JSON" }),
    );
    expect(() => MsrPolicy.fromJSON({ format: "other" })).toThrow(expect.objectContaining({ code: "BITMAP_BAD_JSON" }));
    expect(() => MsrPolicy.fromJSON(null)).toThrow(expect.objectContaining({ code: "BITMAP_BAD_JSON" }));
  });
});

describe("bitmap JSON", () => {
  it("lists intercepted MSRs per direction as hex ranges", () => {
    const b = VmxMsrBitmap.fromAllowList([{ first: 0x0, last: 0x1ffe }, { msrs: { first: 0xc000_0000, last: 0xc000_1fff }, access: "read" }]);
    expect(b.toJSON()).toEqual({
      format: "tsvmm.msr-bitmap/1",
      kind: "vmx-msr-bitmap",
      intercept: { read: ["0x1fff"], write: ["0x1fff", "0xc0000000-0xc0001fff"] },
    });
    expect(VmxMsrBitmap.fromJSON(b.toJSON()).equals(b)).toBe(true);
    // The kind is checked, and MSRs the page cannot hold are refused.
    expect(() => SvmMsrpm.fromJSON(b.toJSON())).toThrow(expect.objectContaining({ code: "BITMAP_BAD_JSON" }));
    expect(() =>
      VmxMsrBitmap.fromJSON({ format: "tsvmm.msr-bitmap/1", kind: "vmx-msr-bitmap", intercept: { read: ["0xc0010000"], write: [] } }),
    ).toThrow(expect.objectContaining({ code: "BITMAP_BAD_JSON" }));
  });

  it("lists intercepted ports, SVM's overflow bits included", () => {
    const io = new VmxIoBitmap().intercept({ first: 0x3f8, last: 0x3ff }).intercept(0x80);
    expect(io.toJSON()).toEqual({ format: "tsvmm.io-bitmap/1", kind: "vmx-io-bitmap", intercept: ["0x80", "0x3f8-0x3ff"] });
    expect(VmxIoBitmap.fromJSON(io.toJSON()).equals(io)).toBe(true);
    const svm = new SvmIopm().intercept(0xffff).setInterceptBeyondPortSpace(true);
    expect(svm.toJSON().intercept).toEqual(["0xffff-0x10002"]);
    expect(SvmIopm.fromJSON(svm.toJSON()).equals(svm)).toBe(true);
    expect(() => VmxIoBitmap.fromJSON({ format: "tsvmm.io-bitmap/1", kind: "vmx-io-bitmap", intercept: ["0x10000"] })).toThrow(
      expect.objectContaining({ code: "BITMAP_BAD_JSON" }),
    );
  });
});

describe("diff", () => {
  it("reports changed ranges per direction, readable", () => {
    const before = VmxMsrBitmap.fromAllowList([{ first: 0x10, last: 0x13 }, EFER]);
    const after = before.clone().intercept(0x11, "write").allow({ first: 0x14, last: 0x15 }, "read").intercept(EFER);
    const d = diffMsr(before, after);
    expect(d).toEqual([
      { direction: "read", first: 0x14, last: 0x15, before: "intercept", after: "allow" },
      { direction: "read", first: EFER, last: EFER, before: "allow", after: "intercept" },
      { direction: "write", first: 0x11, last: 0x11, before: "allow", after: "intercept" },
      { direction: "write", first: EFER, last: EFER, before: "allow", after: "intercept" },
    ]);
    expect(formatDiff(d).split("\n")).toEqual([
      "read  0x14-0x15: intercept -> allow",
      "read  0xc0000080: allow -> intercept",
      "write 0x11: allow -> intercept",
      "write 0xc0000080: allow -> intercept",
    ]);
    expect(diffMsr(before, before.clone())).toEqual([]);
  });

  it("compares across kinds over the whole MSR space", () => {
    // The MSRPM can allow an MSR in 0xC0010000-0xC0011FFF that a VMX bitmap can only intercept.
    const vmx = new VmxMsrBitmap();
    const svm = new SvmMsrpm();
    const d = diffMsr(vmx, svm);
    expect(d).toEqual([
      { direction: "read", first: 0xc001_0000, last: 0xc001_1fff, before: "intercept", after: "allow" },
      { direction: "write", first: 0xc001_0000, last: 0xc001_1fff, before: "intercept", after: "allow" },
    ]);
  });

  it("diffs I/O bitmaps by port", () => {
    const a = VmxIoBitmap.fromAllowList([{ first: 0x3f8, last: 0x3ff }]);
    const b = a.clone().intercept(0x3fc).allow(0x80);
    expect(formatDiff(diffIo(a, b))).toBe("0x80: intercept -> allow\n0x3fc: allow -> intercept");
  });
});
