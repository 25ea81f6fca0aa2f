import { CpuidTable, setXsave, validateXsave, XSAVE_COMPONENTS, xsaveMasks, xsaveOffsets, xsaveSizes } from "@tsvmm/cpuid";
import { describe, expect, it } from "vitest";
import { hostCpuid } from "./helpers/host.js";

describe("XSAVE sizes", () => {
  it("match the sizes real processors report", () => {
    // x87|SSE|AVX: 832 (0x340) on every AVX part; AVX-512 + PKRU (Skylake-SP): 0xA88;
    // + AMX tiles (Sapphire Rapids): 0x2B00
    expect(xsaveSizes(0x7n).standardSize).toBe(0x340);
    expect(xsaveSizes(0x2e7n).standardSize).toBe(0xa88);
    expect(xsaveSizes(0x602e7n).standardSize).toBe(0x2b00);
    expect(xsaveSizes(0x3n).standardSize).toBe(576);
    // compacted: AVX-512 and PKRU packed after the header, tile data 64-byte aligned
    expect(xsaveSizes(0x2e7n).compactedSize).toBe(576 + 256 + 64 + 512 + 1024 + 8);
    expect(xsaveSizes(0x602e7n).compactedSize).toBe(Math.ceil((576 + 256 + 64 + 512 + 1024 + 8 + 64) / 64) * 64 + 8192);
  });

  it("agree with this host's CPUID leaf 0xD component by component (sizes are architectural, placement is the host's)", () => {
    const host = new CpuidTable(hostCpuid());
    const { xcr0, xss } = xsaveMasks(host);
    const offsets = xsaveOffsets(host);
    let checked = 0;
    for (let i = 2; i < 64; i++) {
      const inXcr0 = ((xcr0 >> BigInt(i)) & 1n) === 1n;
      const inXss = ((xss >> BigInt(i)) & 1n) === 1n;
      if (!inXcr0 && !inXss) continue;
      const mine = XSAVE_COMPONENTS[i]!;
      const theirs = host.get(0xd, i)!;
      expect({ i, size: mine.size, supervisor: mine.supervisor }).toEqual({ i, size: theirs.eax, supervisor: (theirs.ecx & 1) === 1 });
      if (!mine.supervisor) {
        // Where this processor puts it: past the legacy area and header, 64-byte aligned.
        expect(offsets.get(i)).toBe(theirs.ebx);
        expect(theirs.ebx % 64 === 0 && theirs.ebx >= 576).toBe(true);
      }
      checked++;
    }
    expect(checked).toBeGreaterThan(0);
    const userOnly = xcr0 & ~((1n << 8n) | (1n << 10n));
    expect(xsaveSizes(userOnly, 0n, offsets).standardSize).toBe(host.get(0xd, 0)!.ecx);
    // setXsave keeps the host's placement: the guest's XSAVE image is the one the hardware writes.
    const t = setXsave(new CpuidTable(hostCpuid()), userOnly, 0n);
    for (const [i, off] of offsets) if (((userOnly >> BigInt(i)) & 1n) === 1n) expect(t.get(0xd, i)!.ebx).toBe(off);
  });

  it("refuses component sets the architecture does not allow", () => {
    for (const [xcr0, xss] of [
      [0x2n, 0n], // no x87
      [0x5n, 0n], // AVX without SSE
      [0x27n, 0n], // opmask without the ZMM halves
      [0x8003n, 0n], // CET_U is a supervisor component
      [0x3n, 0x4n], // AVX is not a supervisor component
      [0x3n | (1n << 40n), 0n], // unknown component
      [0x20003n | 0x40000n, 0n], // fine
    ] as const) {
      const ok = xcr0 === 0x60003n;
      if (ok) expect(() => validateXsave(xcr0, xss)).not.toThrow();
      else expect(() => validateXsave(xcr0, xss)).toThrow(expect.objectContaining({ code: "CPUID_INVALID_XSAVE" }));
    }
  });

  it("setXsave writes leaf 0xD for exactly the enabled components", () => {
    const t = new CpuidTable().set(0xd, 1, { eax: 0xf, ebx: 0, ecx: 0, edx: 0 }).set(0xd, 9, { eax: 8, ebx: 2688, ecx: 0, edx: 0 });
    setXsave(t, 0x7n, 1n << 11n);
    expect(t.subleaves(0xd)).toEqual([0, 1, 2, 11]);
    expect(t.get(0xd, 0)).toEqual({ eax: 7, ebx: 576, ecx: 0x340, edx: 0 });
    expect(t.get(0xd, 1)).toEqual({ eax: 0xf, ebx: 576 + 256 + 16, ecx: 1 << 11, edx: 0 });
    expect(t.get(0xd, 2)).toEqual({ eax: 256, ebx: 576, ecx: 0, edx: 0 });
    expect(t.get(0xd, 11)).toEqual({ eax: 16, ebx: 0, ecx: 1, edx: 0 });
    expect(xsaveMasks(t)).toEqual({ xcr0: 7n, xss: 1n << 11n });
  });
});
