import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  KVM_MSR_FILTER_DEFAULT_ALLOW, KVM_MSR_FILTER_DEFAULT_DENY, KVM_MSR_FILTER_MAX_BITMAP_SIZE, KVM_MSR_FILTER_MAX_NMSRS,
  KVM_MSR_FILTER_MAX_RANGES, KVM_MSR_FILTER_READ, KVM_MSR_FILTER_WRITE, type KvmMsrFilter, KvmMsrFilterError,
  kvmBitmapBytes, TsvmmError, validateKvmMsrFilter,
} from "@tsvmm/abi";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

const RW = KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE;
type Range = KvmMsrFilter["ranges"][number];
const range = (r: Partial<Range> = {}): Range => ({ flags: RW, base: 0x10, nmsrs: 1, bitmap: new Uint8Array(8), ...r });

/** The typed error a filter provokes, or "ok". */
function verdict(filter: KvmMsrFilter): string {
  try {
    validateKvmMsrFilter(filter);
    return "ok";
  } catch (e) {
    if (!(e instanceof KvmMsrFilterError)) throw e;
    expect(e).toBeInstanceOf(TsvmmError);
    expect(e.rangesNeeded).toBeUndefined();
    return e.code;
  }
}
const allow = (...ranges: Range[]): KvmMsrFilter => ({ flags: KVM_MSR_FILTER_DEFAULT_ALLOW, ranges });

describe("KVM_MSR_FILTER_MAX_BITMAP_SIZE against this machine's <asm/kvm.h>", () => {
  it("is the value the header defines, and a range spans 8 MSRs per byte of it", () => {
    const dir = mkdtempSync(join(tmpdir(), "tsvmm-abi-msrf-"));
    try {
      writeFileSync(join(dir, "m.c"), `#include <stdio.h>\n#include <linux/kvm.h>\nint main(void) { printf("%d\\n", KVM_MSR_FILTER_MAX_BITMAP_SIZE); return 0; }\n`);
      execFileSync("cc", ["-o", join(dir, "m"), join(dir, "m.c")], { stdio: "pipe" });
      expect(Number(execFileSync(join(dir, "m"), { encoding: "utf8" }).trim())).toBe(KVM_MSR_FILTER_MAX_BITMAP_SIZE);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(KVM_MSR_FILTER_MAX_NMSRS).toBe(KVM_MSR_FILTER_MAX_BITMAP_SIZE * 8);
  });
});

describe("kvmBitmapBytes: the bytes KVM copies for a range (whole 64-bit longs)", () => {
  it("is the least multiple of 8 holding one bit per MSR", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1 << 20 }), (n) => {
        const b = kvmBitmapBytes(n);
        expect(b % 8).toBe(0);
        expect(b * 8).toBeGreaterThanOrEqual(n);
        expect((b - 8) * 8).toBeLessThan(Math.max(n, 1));
      }),
      { numRuns: 500 },
    );
    expect([0, 1, 64, 65, 128].map(kvmBitmapBytes)).toEqual([0, 8, 8, 16, 16]);
  });
});

describe("validateKvmMsrFilter accepts what KVM accepts", () => {
  it("any well-formed filter of up to 16 ranges passes", () => {
    const goodRange = fc
      .record({
        flags: fc.constantFrom(KVM_MSR_FILTER_READ, KVM_MSR_FILTER_WRITE, RW),
        nmsrs: fc.integer({ min: 1, max: KVM_MSR_FILTER_MAX_NMSRS }),
        base: fc.nat(),
        extra: fc.nat({ max: 16 }),
      })
      .filter((r) => r.base + r.nmsrs <= 0xffff_ffff)
      .map((r) => ({ flags: r.flags, nmsrs: r.nmsrs, base: r.base, bitmap: new Uint8Array(kvmBitmapBytes(r.nmsrs) + r.extra) }));
    fc.assert(
      fc.property(fc.array(goodRange, { minLength: 1, maxLength: KVM_MSR_FILTER_MAX_RANGES }), fc.constantFrom(KVM_MSR_FILTER_DEFAULT_ALLOW, KVM_MSR_FILTER_DEFAULT_DENY), (ranges, flags) => {
        expect(verdict({ flags, ranges })).toBe("ok");
      }),
      { numRuns: 300 },
    );
  });
  it("edge values: a full 0x600-byte range, a range ending at 0xfffffffe, no ranges with default allow", () => {
    expect(verdict(allow(range({ nmsrs: KVM_MSR_FILTER_MAX_NMSRS, bitmap: new Uint8Array(KVM_MSR_FILTER_MAX_BITMAP_SIZE) })))).toBe("ok");
    expect(verdict(allow(range({ base: 0xffff_fffe, nmsrs: 1 })))).toBe("ok");
    expect(verdict(allow())).toBe("ok");
    expect(verdict(allow(...Array.from({ length: KVM_MSR_FILTER_MAX_RANGES }, () => range())))).toBe("ok");
  });
  it("an empty range (nmsrs 0) is skipped as KVM skips it, whatever its flags and bitmap", () => {
    expect(verdict(allow(range({ nmsrs: 0, flags: 0xff, bitmap: new Uint8Array(0) })))).toBe("ok");
    expect(verdict({ flags: KVM_MSR_FILTER_DEFAULT_DENY, ranges: [range({ nmsrs: 0 }), range()] })).toBe("ok");
  });
});

describe("validateKvmMsrFilter refuses what KVM refuses, or could never match", () => {
  const INVALID = "KVM_MSR_FILTER_INVALID";
  it("filter flags must be a u32 with only DEFAULT_DENY defined", () => {
    for (const flags of [2, 3, 0x8000_0000, -1, 2 ** 32, 0.5, Number.NaN]) expect(verdict({ flags, ranges: [range()] }), String(flags)).toBe(INVALID);
    expect(verdict({ flags: "1" as unknown as number, ranges: [range()] })).toBe(INVALID);
  });
  it("at most 16 ranges", () => {
    expect(verdict(allow(...Array.from({ length: KVM_MSR_FILTER_MAX_RANGES + 1 }, () => range())))).toBe(INVALID);
  });
  it("base, nmsrs and flags of every range are u32, even in an empty range", () => {
    for (const bad of [-1, 2 ** 32, 1.5, Number.NaN]) {
      expect(verdict(allow(range({ base: bad })))).toBe(INVALID);
      expect(verdict(allow(range({ nmsrs: bad })))).toBe(INVALID);
      expect(verdict(allow(range({ flags: bad, nmsrs: 0 })))).toBe(INVALID);
    }
  });
  it("a non-empty range's flags are READ, WRITE or both", () => {
    for (const flags of [0, 4, RW | 4, 0x100]) expect(verdict(allow(range({ flags }))), String(flags)).toBe(INVALID);
  });
  it("a range spans at most 0x600 bitmap bytes", () => {
    const n = KVM_MSR_FILTER_MAX_NMSRS + 1;
    expect(verdict(allow(range({ nmsrs: n, bitmap: new Uint8Array(kvmBitmapBytes(n)) })))).toBe(INVALID);
  });
  it("the bitmap holds every long KVM copies, and is a byte array", () => {
    expect(verdict(allow(range({ nmsrs: 65, bitmap: new Uint8Array(15) })))).toBe(INVALID);
    expect(verdict(allow(range({ nmsrs: 65, bitmap: new Uint8Array(16) })))).toBe("ok");
    // 1 MSR needs one bit, but KVM copies a whole long.
    expect(verdict(allow(range({ nmsrs: 1, bitmap: new Uint8Array(1) })))).toBe(INVALID);
    expect(verdict(allow(range({ bitmap: Array(8).fill(0) as unknown as Uint8Array })))).toBe(INVALID);
  });
  it("a range reaching MSR 0xffffffff is refused: KVM's u32 end would wrap to 0", () => {
    expect(verdict(allow(range({ base: 0xffff_ffff, nmsrs: 1 })))).toBe(INVALID);
    expect(verdict(allow(range({ base: 0xffff_ff00, nmsrs: 0x100, bitmap: new Uint8Array(32) })))).toBe(INVALID);
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 0x3000 }), fc.integer({ min: 0, max: 0x3000 }), (nmsrs, k) => {
        const base = 0xffff_ffff - nmsrs + 1 + Math.min(k, nmsrs - 1);
        expect(verdict(allow(range({ base, nmsrs, bitmap: new Uint8Array(kvmBitmapBytes(nmsrs)) })))).toBe(INVALID);
        expect(verdict(allow(range({ base: 0xffff_ffff - nmsrs, nmsrs, bitmap: new Uint8Array(kvmBitmapBytes(nmsrs)) })))).toBe("ok");
      }),
      { numRuns: 200 },
    );
  });
  it("default deny needs a non-empty range (KVM rejects a deny-all filter)", () => {
    expect(verdict({ flags: KVM_MSR_FILTER_DEFAULT_DENY, ranges: [] })).toBe(INVALID);
    expect(verdict({ flags: KVM_MSR_FILTER_DEFAULT_DENY, ranges: [range({ nmsrs: 0 }), range({ nmsrs: 0 })] })).toBe(INVALID);
  });
  it("messages name the range at fault", () => {
    expect(() => validateKvmMsrFilter(allow(range(), range({ flags: 0 })))).toThrowError(/range 1: flags 0/);
  });
});

describe("KvmMsrFilterError", () => {
  it("carries the ranges a policy needs when a planner reports TOO_MANY_RANGES", () => {
    const e = new KvmMsrFilterError("KVM_MSR_FILTER_TOO_MANY_RANGES", "needs 20", 20);
    expect(e).toBeInstanceOf(TsvmmError);
    expect([e.code, e.rangesNeeded, e.name]).toEqual(["KVM_MSR_FILTER_TOO_MANY_RANGES", 20, "KvmMsrFilterError"]);
  });
});
