import { BitmapError, type IoInterceptPolicy, SvmIopm, VmxIoBitmap } from "@tsvmm/msr-io-bitmaps";
import { describe, expect, it } from "vitest";

describe("VmxIoBitmap (SDM 26.1.3)", () => {
  it("keeps ports 0x0000-0x7FFF in page A and 0x8000-0xFFFF in page B, LSB first", () => {
    const b = new VmxIoBitmap().intercept(0x3f9).intercept(0x8000).intercept(0xffff);
    const { a, b: pb } = b.toPages();
    expect(a.length).toBe(4096);
    expect(pb.length).toBe(4096);
    expect(a[0x3f9 >> 3]).toBe(1 << 1);
    expect(pb[0]).toBe(1);
    expect(pb[0xfff]).toBe(0x80);
    expect(a.reduce((n, v) => n + (v ? 1 : 0), 0)).toBe(1);
    expect(VmxIoBitmap.fromPages(a, pb).equals(b)).toBe(true);
  });

  it("intercepts a multi-byte access if any byte's port is intercepted", () => {
    const b = new VmxIoBitmap().intercept(0x71);
    expect(b.intercepts(0x70, 1)).toBe(false);
    expect(b.intercepts(0x70, 2)).toBe(true);
    expect(b.intercepts(0x6e, 4)).toBe(true);
    expect(b.intercepts(0x6d, 4)).toBe(false);
    expect(b.intercepts(0x71, 4)).toBe(true);
    expect(b.intercepts(0x72, 4)).toBe(false);
    // Across the A/B page boundary.
    const ab = new VmxIoBitmap().intercept(0x8000);
    expect(ab.intercepts(0x7ffe, 2)).toBe(false);
    expect(ab.intercepts(0x7fff, 2)).toBe(true);
  });

  it("always exits for an access that wraps past 0xFFFF, even with every bit clear", () => {
    const b = new VmxIoBitmap();
    expect(b.intercepts(0xffff, 1)).toBe(false);
    expect(b.intercepts(0xfffc, 4)).toBe(false);
    expect(b.intercepts(0xffff, 2)).toBe(true);
    expect(b.intercepts(0xfffd, 4)).toBe(true);
  });

  it("builds from allow/deny lists and lists ranges", () => {
    const allow = VmxIoBitmap.fromAllowList([0x80, { first: 0x3f8, last: 0x3ff }]);
    expect(allow.allowedRanges()).toEqual([
      { first: 0x80, last: 0x80 },
      { first: 0x3f8, last: 0x3ff },
    ]);
    expect(allow.intercepts(0x3f8, 1)).toBe(false);
    expect(allow.intercepts(0x3fe, 4)).toBe(true);
    const deny = VmxIoBitmap.fromDenyList([{ first: 0x60, last: 0x64 }]);
    expect(deny.interceptedRanges()).toEqual([{ first: 0x60, last: 0x64 }]);
  });

  it("rejects bad ports, sizes and page lengths with typed errors", () => {
    const b = new VmxIoBitmap();
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return e instanceof BitmapError ? e.code : `untyped ${String(e)}`;
      }
      return "no error";
    };
    expect(code(() => b.intercepts(0x10000, 1))).toBe("IO_INVALID_PORT");
    expect(code(() => b.intercepts(-1, 1))).toBe("IO_INVALID_PORT");
    expect(code(() => b.intercepts(0x60, 3))).toBe("IO_INVALID_SIZE");
    expect(code(() => b.intercepts(0x60, 8))).toBe("IO_INVALID_SIZE");
    expect(code(() => b.intercept({ first: 2, last: 1 }))).toBe("BITMAP_INVALID_RANGE");
    expect(code(() => VmxIoBitmap.fromBuffer(Buffer.alloc(4096)))).toBe("BITMAP_BAD_LENGTH");
    expect(code(() => VmxIoBitmap.fromPages(Buffer.alloc(4096), Buffer.alloc(12)))).toBe("BITMAP_BAD_LENGTH");
    expect(code(() => b.union(new SvmIopm() as unknown as VmxIoBitmap))).toBe("BITMAP_KIND_MISMATCH");
  });
});

describe("SvmIopm (APM vol. 2 15.10.1)", () => {
  it("is 12 KiB with one bit per port", () => {
    const p = new SvmIopm().intercept(0x3f8).toBuffer();
    expect(p.length).toBe(12288);
    expect(p[0x3f8 >> 3]).toBe(1);
  });

  it("checks the bits past 0xFFFF instead of wrapping", () => {
    const m = new SvmIopm();
    expect(m.intercepts(0xffff, 2)).toBe(false);
    expect(m.intercepts(0xfffd, 4)).toBe(false);
    m.setInterceptBeyondPortSpace(true);
    expect(m.interceptsBeyondPortSpace).toBe(true);
    expect(m.toBuffer()[0x2000]).toBe(0b111);
    expect(m.intercepts(0xffff, 1)).toBe(false);
    expect(m.intercepts(0xffff, 2)).toBe(true);
    expect(m.intercepts(0xfffd, 4)).toBe(true);
    expect(m.intercepts(0xfffc, 4)).toBe(false);
    // Port 0 plays no part: an SVM access never wraps.
    const zero = new SvmIopm().intercept(0);
    expect(zero.intercepts(0xffff, 2)).toBe(false);
  });

  it("interceptAll sets the overflow bits too", () => {
    const all = SvmIopm.interceptAll();
    expect(all.interceptsBeyondPortSpace).toBe(true);
    expect(all.toBuffer().subarray(0, 0x2000).every((v) => v === 0xff)).toBe(true);
    expect(all.toBuffer()[0x2000]).toBe(0b111);
  });

  it("both bitmaps satisfy the structural IoInterceptPolicy a PIO bus accepts", () => {
    const policies: IoInterceptPolicy[] = [new VmxIoBitmap().intercept(0x3f8), new SvmIopm().intercept(0x3f8)];
    for (const p of policies) {
      expect(p.intercepts(0x3f8, 1)).toBe(true);
      expect(p.intercepts(0x3f9, 1)).toBe(false);
    }
  });
});
