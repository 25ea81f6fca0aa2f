import {
  AddressWidthError, accessFromSvmAttrib, accessFromVmxAr, canonicalize, decodeSegmentDescriptor, encodeSegmentDescriptor, isCanonical,
  KvmSegmentLayout, kvmSegmentFromSegment, linearAddressWidth, SEGMENT_TYPE, type Segment, type SegmentAccess, SegmentError, SVM_ATTRIB,
  segmentFromKvmSegment, svmAttribFromAccess, VMX_AR, vmxArFromAccess,
} from "@tsvmm/abi";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

const RUNS = 1000;
const bit = fc.integer({ min: 0, max: 1 });
const access: fc.Arbitrary<SegmentAccess> = fc.record({
  type: fc.integer({ min: 0, max: 15 }),
  s: bit,
  dpl: fc.integer({ min: 0, max: 3 }),
  p: bit,
  avl: bit,
  l: bit,
  db: bit,
  g: bit,
  unusable: bit,
});
const segment: fc.Arbitrary<Segment> = fc.record({
  a: access,
  selector: fc.integer({ min: 0, max: 0xffff }),
  base: fc.bigInt({ min: 0n, max: 0xffff_ffff_ffff_ffffn }),
  limit: fc.integer({ min: 0, max: 0xffff_ffff }),
}).map(({ a, ...rest }) => ({ ...a, ...rest }));
/** The VMCS AR values with the reserved bits 11:8 and 31:17 zero. */
const vmxAr = fc.integer({ min: 0, max: 0x1ffff }).map((v) => v & ~VMX_AR.RESERVED_11_8);
/** SVM's view of a segment: unusable exactly when not present. */
const svmNormal = (a: SegmentAccess): SegmentAccess => {
  const p = a.unusable ? 0 : a.p;
  return { ...a, p, unusable: p ^ 1 };
};

describe("segment encodings: VMX AR, common access, SVM attrib, kvm_segment", () => {
  it("VMX AR -> access -> VMX AR is the identity on AR values with reserved bits 0", () => {
    fc.assert(fc.property(vmxAr, (ar) => vmxArFromAccess(accessFromVmxAr(ar)) === ar), { numRuns: RUNS });
  });
  it("access -> VMX AR -> access is the identity, and the reserved AR bits stay 0", () => {
    fc.assert(
      fc.property(access, (a) => {
        const ar = vmxArFromAccess(a);
        expect(ar & (VMX_AR.RESERVED_11_8 | VMX_AR.RESERVED_31_17)).toBe(0);
        expect(accessFromVmxAr(ar)).toEqual(a);
      }),
      { numRuns: RUNS },
    );
  });
  it("decoding VMX AR ignores the reserved bits", () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 0xffff_ffff }), (ar) => {
      expect(accessFromVmxAr(ar)).toEqual(accessFromVmxAr(ar & 0x1f0ff));
    }), { numRuns: RUNS });
  });
  it("SVM attrib -> access -> SVM attrib is the identity on every 12-bit attrib", () => {
    for (let v = 0; v <= 0xfff; v++) expect(svmAttribFromAccess(accessFromSvmAttrib(v))).toBe(v);
  });
  it("access -> SVM attrib -> access gives SVM's view: unusable is P = 0", () => {
    fc.assert(fc.property(access, (a) => {
      expect(accessFromSvmAttrib(svmAttribFromAccess(a))).toEqual(svmNormal(a));
    }), { numRuns: RUNS });
  });
  it("VMX AR -> access -> SVM attrib -> access -> VMX AR keeps every usable segment", () => {
    fc.assert(fc.property(vmxAr, (ar) => {
      const back = vmxArFromAccess(accessFromSvmAttrib(svmAttribFromAccess(accessFromVmxAr(ar))));
      const usable = (ar & VMX_AR.UNUSABLE) === 0;
      // An unusable segment crosses SVM as "not present"; a usable, not-present one comes back unusable.
      if (usable && ar & VMX_AR.P) expect(back).toBe(ar);
      else expect(back).toBe((ar & ~VMX_AR.P) | VMX_AR.UNUSABLE);
    }), { numRuns: RUNS });
  });
  it("the two encodings place the descriptor's bits 55:52 at AR 15:12 and attrib 11:8", () => {
    fc.assert(fc.property(vmxAr.filter((ar) => (ar & VMX_AR.UNUSABLE) === 0 && (ar & VMX_AR.P) !== 0), (ar) => {
      expect(svmAttribFromAccess(accessFromVmxAr(ar))).toBe((ar & 0xff) | ((ar >> 4) & 0xf00));
    }), { numRuns: RUNS });
  });
  it("each named bit of VMX_AR and SVM_ATTRIB is the field it names", () => {
    const zero: SegmentAccess = { type: 0, s: 0, dpl: 0, p: 0, avl: 0, l: 0, db: 0, g: 0, unusable: 0 };
    const one = (k: keyof SegmentAccess, v = 1): SegmentAccess => ({ ...zero, [k]: v, p: k === "p" ? v : 1 });
    const fields = [["S", "s"], ["P", "p"], ["AVL", "avl"], ["L", "l"], ["DB", "db"], ["G", "g"]] as const;
    for (const [name, k] of fields) {
      expect(vmxArFromAccess(one(k)) & ~VMX_AR.P, name).toBe(name === "P" ? 0 : VMX_AR[name]);
      expect(svmAttribFromAccess(one(k)) & ~SVM_ATTRIB.P, name).toBe(name === "P" ? 0 : SVM_ATTRIB[name]);
    }
    expect(vmxArFromAccess(one("p"))).toBe(VMX_AR.P);
    expect(svmAttribFromAccess(one("p"))).toBe(SVM_ATTRIB.P);
    expect(vmxArFromAccess({ ...zero, unusable: 1 })).toBe(VMX_AR.UNUSABLE);
    expect(vmxArFromAccess({ ...zero, dpl: 3 })).toBe(VMX_AR.DPL_MASK);
    expect(svmAttribFromAccess({ ...zero, p: 1, dpl: 3 })).toBe(SVM_ATTRIB.DPL_MASK | SVM_ATTRIB.P);
    expect(vmxArFromAccess({ ...zero, type: 15 })).toBe(VMX_AR.TYPE_MASK);
    expect(VMX_AR.TYPE_ACCESSED | VMX_AR.TYPE_RW | VMX_AR.TYPE_DC | VMX_AR.TYPE_CODE).toBe(VMX_AR.TYPE_MASK);
  });
  it("Segment -> kvm_segment -> Segment is the identity, through the C layout too", () => {
    fc.assert(fc.property(segment, (s) => {
      const k = kvmSegmentFromSegment(s);
      expect(segmentFromKvmSegment(k)).toEqual(s);
      const buf = Buffer.alloc(KvmSegmentLayout.size);
      KvmSegmentLayout.encode(k, buf);
      expect(segmentFromKvmSegment(KvmSegmentLayout.decode(buf))).toEqual(s);
    }), { numRuns: RUNS });
  });
});

describe("segment descriptors", () => {
  it("the boot protocol's flat descriptors decode to the segments KVM and VMX/SVM hold (SDM Vol. 3A Figure 3-8)", () => {
    const code64 = decodeSegmentDescriptor(0x00af9b000000ffffn, 0x10);
    expect(code64).toEqual({ selector: 0x10, base: 0n, limit: 0xffff_ffff, type: SEGMENT_TYPE.CODE_EXEC_READ_ACCESSED, s: 1, dpl: 0, p: 1, avl: 0, l: 1, db: 0, g: 1, unusable: 0 });
    expect(vmxArFromAccess(code64)).toBe(0xa09b);
    expect(svmAttribFromAccess(code64)).toBe(0xa9b);
    const data = decodeSegmentDescriptor(0x00cf93000000ffffn);
    expect([data.type, data.db, data.g, data.limit]).toEqual([SEGMENT_TYPE.DATA_RW_ACCESSED, 1, 1, 0xffff_ffff]);
    expect(vmxArFromAccess(data)).toBe(0xc093);
    const tss = decodeSegmentDescriptor(0x0000_8b00_0000_ffffn);
    expect([tss.type, tss.s, tss.limit, tss.g]).toEqual([SEGMENT_TYPE.TSS32_BUSY, 0, 0xffff, 0]);
    // Base bits 23:0 sit at descriptor bits 39:16, base 31:24 at 63:56.
    expect(decodeSegmentDescriptor(0x1200_9a34_5678_0000n).base).toBe(0x1234_5678n);
  });
  it("descriptor -> segment -> descriptor is the identity on every 8-byte descriptor", () => {
    fc.assert(fc.property(fc.bigInt({ min: 0n, max: 0xffff_ffff_ffff_ffffn }), (d) => encodeSegmentDescriptor(decodeSegmentDescriptor(d)) === d), { numRuns: RUNS });
  });
  it("a segment no descriptor holds is refused, not truncated", () => {
    const flat = decodeSegmentDescriptor(0x00cf93000000ffffn);
    expect(() => encodeSegmentDescriptor({ ...flat, base: 1n << 32n })).toThrow(SegmentError);
    expect(() => encodeSegmentDescriptor({ ...flat, limit: 0xffff_f000 })).toThrow(SegmentError);
    expect(() => encodeSegmentDescriptor({ ...flat, g: 0, limit: 0x10_0000 })).toThrow(expect.objectContaining({ code: "SEGMENT_NOT_ENCODABLE" }));
  });
});

describe("canonical addresses", () => {
  const u64 = fc.bigInt({ min: 0n, max: 0xffff_ffff_ffff_ffffn });
  const width = fc.integer({ min: 32, max: 64 });
  it("canonicalize gives a canonical address that keeps the low width bits", () => {
    fc.assert(fc.property(u64, width, (v, w) => {
      const c = canonicalize(v, w);
      const low = (1n << BigInt(w)) - 1n;
      return isCanonical(c, w) && (c & low) === (v & low) && c <= 0xffff_ffff_ffff_ffffn;
    }), { numRuns: RUNS });
  });
  it("an address is canonical exactly when canonicalize leaves it alone (the 48/57 fast paths agree)", () => {
    const near = (w: number) => fc.bigInt({ min: 0n, max: 3n }).chain((hi) => fc.bigInt({ min: 0n, max: (1n << BigInt(w - 1)) - 1n }).map((lo) => BigInt.asUintN(64, (hi === 0n ? 0n : hi === 1n ? -1n : hi << 62n) << BigInt(w - 1)) | lo));
    for (const w of [48, 57]) {
      fc.assert(fc.property(fc.oneof(u64, near(w)), (v) => isCanonical(v, w) === (canonicalize(v, w) === v)), { numRuns: RUNS });
    }
    fc.assert(fc.property(u64, width, (v, w) => isCanonical(v, w) === (canonicalize(v, w) === v)), { numRuns: RUNS });
  });
  it("the boundary addresses of 4- and 5-level paging", () => {
    expect(isCanonical(0x0000_7fff_ffff_ffffn, 48)).toBe(true);
    expect(isCanonical(0x0000_8000_0000_0000n, 48)).toBe(false);
    expect(isCanonical(0xffff_8000_0000_0000n, 48)).toBe(true);
    expect(isCanonical(0x0000_8000_0000_0000n, 57)).toBe(true);
    expect(isCanonical(0x0100_0000_0000_0000n, 57)).toBe(false);
    expect(canonicalize(0x0000_8000_0000_0000n, 48)).toBe(0xffff_8000_0000_0000n);
    expect(linearAddressWidth(true)).toBe(57);
    expect(linearAddressWidth(false)).toBe(48);
    expect(() => canonicalize(0n, 31)).toThrow(AddressWidthError);
    expect(() => isCanonical(0n, 65)).toThrow(AddressWidthError);
  });
});
