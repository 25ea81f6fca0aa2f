import { BitmapError, MsrPolicy, SvmMsrpm, VmxMsrBitmap } from "@tsvmm/msr-io-bitmaps";
import { describe, expect, it } from "vitest";

const EFER = 0xc000_0080;
const VM_HSAVE_PA = 0xc001_0117;

function setBytes(buf: Buffer): number[] {
  const out: number[] = [];
  buf.forEach((v, i) => {
    if (v !== 0) out.push(i);
  });
  return out;
}

describe("VmxMsrBitmap page layout (SDM 25.6.9)", () => {
  it("puts read-low, read-high, write-low, write-high at 0x000/0x400/0x800/0xC00", () => {
    const cases: Array<[number, "read" | "write", number, number]> = [
      [0x0000_0010, "read", 0x000 + 0x10 / 8, 0], // TSC
      [0x0000_001b, "read", 0x000 + 3, 3], // APIC_BASE
      [EFER, "read", 0x400 + 0x80 / 8, 0],
      [0x0000_0010, "write", 0x800 + 2, 0],
      [EFER, "write", 0xc00 + 0x10, 0],
      [0xc000_1fff, "write", 0xfff, 7],
    ];
    for (const [msr, dir, byte, bit] of cases) {
      const b = new VmxMsrBitmap().intercept(msr, dir);
      const page = b.toBuffer();
      expect(page.length).toBe(4096);
      expect(setBytes(page)).toEqual([byte]);
      expect(page[byte]).toBe(1 << bit);
      expect(b.intercepts(msr, dir)).toBe(true);
      expect(b.intercepts(msr, dir === "read" ? "write" : "read")).toBe(false);
    }
  });

  it("always intercepts MSRs outside its two ranges, and refuses to allow them", () => {
    const b = new VmxMsrBitmap();
    expect(b.intercepts(0x1fff, "read")).toBe(false);
    for (const msr of [0x2000, 0x4000_0000, 0xbfff_ffff, 0xc000_2000, VM_HSAVE_PA, 0xffff_ffff]) {
      expect(b.covers(msr)).toBe(false);
      expect(b.intercepts(msr, "read")).toBe(true);
      expect(b.intercepts(msr, "write")).toBe(true);
    }
    expect(() => b.allow(0x4000_0000)).toThrow(expect.objectContaining({ code: "MSR_NOT_COVERED" }));
    // A range reaching past the coverage is refused as a whole: nothing was cleared.
    const full = VmxMsrBitmap.interceptAll();
    expect(() => full.allow({ first: 0x1ff0, last: 0x2000 })).toThrow(BitmapError);
    expect(full.intercepts(0x1ff0, "read")).toBe(true);
    // Intercepting an uncovered MSR is what the CPU does anyway: accepted, no bit changes.
    expect(setBytes(new VmxMsrBitmap().intercept({ first: 0x2000, last: 0xbfff_ffff }).toBuffer())).toEqual([]);
  });

  it("sets ranges per direction across byte boundaries", () => {
    const b = new VmxMsrBitmap().intercept({ first: 0x3, last: 0x11 }, "write");
    const p = b.toBuffer();
    expect([p[0x800], p[0x801], p[0x802], p[0x803]]).toEqual([0xf8, 0xff, 0x03, 0]);
    expect(b.interceptedRanges("write")).toEqual([{ first: 3, last: 0x11 }]);
    expect(b.interceptedRanges("read")).toEqual([]);
    b.allow({ first: 0x8, last: 0xf }, "readwrite");
    expect(b.interceptedRanges("write")).toEqual([
      { first: 3, last: 7 },
      { first: 0x10, last: 0x11 },
    ]);
  });

  it("builds from allow- and deny-lists", () => {
    const allow = VmxMsrBitmap.fromAllowList([0x10, { msrs: EFER, access: "read" }, { first: 0xc000_0100, last: 0xc000_0102 }]);
    expect(allow.intercepts(0x10, "read")).toBe(false);
    expect(allow.intercepts(0x10, "write")).toBe(false);
    expect(allow.intercepts(EFER, "read")).toBe(false);
    expect(allow.intercepts(EFER, "write")).toBe(true);
    expect(allow.intercepts(0xc000_0102, "write")).toBe(false);
    expect(allow.intercepts(0x11, "read")).toBe(true);
    expect(allow.allowedRanges("read")).toEqual([
      { first: 0x10, last: 0x10 },
      { first: EFER, last: EFER },
      { first: 0xc000_0100, last: 0xc000_0102 },
    ]);
    expect(() => VmxMsrBitmap.fromAllowList([0x4000_0000])).toThrow(expect.objectContaining({ code: "MSR_NOT_COVERED" }));

    const deny = VmxMsrBitmap.fromDenyList([{ msrs: 0x1b, access: "write" }, 0x4000_0000]);
    expect(deny.interceptedRanges("write")).toEqual([{ first: 0x1b, last: 0x1b }]);
    expect(deny.interceptedRanges("read")).toEqual([]);
  });

  it("rejects bad indices, directions, ranges and page sizes with typed errors", () => {
    const b = new VmxMsrBitmap();
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return e instanceof BitmapError ? e.code : `untyped ${String(e)}`;
      }
      return "no error";
    };
    expect(code(() => b.intercepts(-1, "read"))).toBe("MSR_INVALID_INDEX");
    expect(code(() => b.intercepts(2 ** 32, "read"))).toBe("MSR_INVALID_INDEX");
    expect(code(() => b.intercepts(1.5, "read"))).toBe("MSR_INVALID_INDEX");
    expect(code(() => b.intercepts(1, "exec" as "read"))).toBe("MSR_INVALID_ACCESS");
    expect(code(() => b.intercept(1, "rw" as "read"))).toBe("MSR_INVALID_ACCESS");
    expect(code(() => b.intercept({ first: 5, last: 4 }))).toBe("BITMAP_INVALID_RANGE");
    expect(code(() => VmxMsrBitmap.fromBuffer(Buffer.alloc(4095)))).toBe("BITMAP_BAD_LENGTH");
    expect(code(() => SvmMsrpm.fromBuffer(Buffer.alloc(4096)))).toBe("BITMAP_BAD_LENGTH");
    expect(code(() => b.union(new SvmMsrpm() as unknown as VmxMsrBitmap))).toBe("BITMAP_KIND_MISMATCH");
  });
});

describe("SvmMsrpm layout (APM vol. 2 15.11)", () => {
  it("uses two bits per MSR, read then write, in three 2-KiB vectors", () => {
    const cases: Array<[number, number, number]> = [
      [0x0000_0000, 0x000, 0],
      [0x0000_0010, 0x004, 0], // 0x10 * 2 = bit 0x20
      [0x0000_1fff, 0x7ff, 6],
      [EFER, 0x800 + 0x20, 0],
      [VM_HSAVE_PA, 0x1000 + 0x45, 6], // 0x117 * 2 = 0x22e = byte 0x45 bit 6
      [0xc001_1fff, 0x17ff, 6],
    ];
    for (const [msr, byte, bit] of cases) {
      const r = new SvmMsrpm().intercept(msr, "read").toBuffer();
      expect(r.length).toBe(8192);
      expect(setBytes(r)).toEqual([byte]);
      expect(r[byte]).toBe(1 << bit);
      const w = new SvmMsrpm().intercept(msr, "write").toBuffer();
      expect(w[byte]).toBe(1 << (bit + 1));
    }
  });

  it("covers the third range VMX does not, and intercepts everything else", () => {
    const svm = new SvmMsrpm();
    expect(svm.covers(VM_HSAVE_PA)).toBe(true);
    expect(svm.intercepts(VM_HSAVE_PA, "read")).toBe(false);
    expect(svm.intercepts(0xc001_2000, "read")).toBe(true);
    expect(svm.coverage).toEqual([
      { first: 0, last: 0x1fff },
      { first: 0xc000_0000, last: 0xc000_1fff },
      { first: 0xc001_0000, last: 0xc001_1fff },
    ]);
    // The reserved last 2 KiB are never written by interceptAll.
    const all = SvmMsrpm.interceptAll().toBuffer();
    expect(all.subarray(0, 0x1800).every((v) => v === 0xff)).toBe(true);
    expect(all.subarray(0x1800).every((v) => v === 0)).toBe(true);
  });
});

describe("combining and converting", () => {
  it("union intercepts where either does, intersection where both do", () => {
    const a = new VmxMsrBitmap().intercept({ first: 0, last: 0xf }, "read");
    const b = new VmxMsrBitmap().intercept({ first: 8, last: 0x17 }, "read").intercept(EFER, "write");
    expect(a.union(b).interceptedRanges("read")).toEqual([{ first: 0, last: 0x17 }]);
    expect(a.union(b).interceptedRanges("write")).toEqual([{ first: EFER, last: EFER }]);
    expect(a.intersection(b).interceptedRanges("read")).toEqual([{ first: 8, last: 0xf }]);
    expect(a.intersection(b).interceptedRanges("write")).toEqual([]);
  });

  it("a bitmap's policy denies every uncovered MSR, and a policy builds back the same bitmap", () => {
    const b = VmxMsrBitmap.fromAllowList([{ first: 0x10, last: 0x20 }, { msrs: EFER, access: "write" }]);
    const p = b.toPolicy();
    expect(p.allowedRanges("read")).toEqual([{ first: 0x10, last: 0x20 }]);
    expect(p.allowedRanges("write")).toEqual([
      { first: 0x10, last: 0x20 },
      { first: EFER, last: EFER },
    ]);
    expect(VmxMsrBitmap.fromPolicy(p).equals(b)).toBe(true);
    expect(() => VmxMsrBitmap.fromPolicy(MsrPolicy.allowAll())).toThrow(expect.objectContaining({ code: "MSR_NOT_COVERED" }));
  });
});
