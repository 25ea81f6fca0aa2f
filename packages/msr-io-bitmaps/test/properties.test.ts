import {
  BitmapError,
  KvmMsrFilterError,
  type MsrBitmapBase,
  MsrPolicy,
  SvmIopm,
  SvmMsrpm,
  toKvmMsrFilter,
  VmxIoBitmap,
  VmxMsrBitmap,
  validateKvmMsrFilter,
} from "@tsvmm/msr-io-bitmaps";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { kvmAllows } from "./kvm-reference.js";

type Dir = "read" | "write";
type Access = Dir | "readwrite";
const dirsOf = (a: Access): Dir[] => (a === "readwrite" ? ["read", "write"] : [a]);

// Boundaries where off-by-one mistakes live: the VMX and SVM ranges, x2APIC, the top of the space.
const HOT = [0x0, 0x1, 0x7ff, 0x800, 0x8ff, 0x900, 0x1fff, 0x2000, 0x4000_0000, 0xbfff_ffff, 0xc000_0000, 0xc000_0080, 0xc000_1fff, 0xc000_2000,
  0xc000_ffff, 0xc001_0000, 0xc001_1fff, 0xc001_2000, 0xffff_fffe, 0xffff_ffff];
const anchor = fc.oneof(fc.constantFrom(...HOT), fc.integer({ min: 0, max: 0xffff_ffff }));
const msrNear = anchor.chain((a) => fc.integer({ min: -40, max: 40 }).map((d) => Math.min(0xffff_ffff, Math.max(0, a + d))));
const access = fc.constantFrom<Access>("read", "write", "readwrite");

/** Covered ranges of each kind, used to aim the random operations where the bits are. */
const COVER = {
  vmx: [[0, 0x1fff], [0xc000_0000, 0xc000_1fff]],
  svm: [[0, 0x1fff], [0xc000_0000, 0xc000_1fff], [0xc001_0000, 0xc001_1fff]],
} as const;

const MAKE = {
  vmx: { empty: (): MsrBitmapBase => new VmxMsrBitmap(), full: (): MsrBitmapBase => VmxMsrBitmap.interceptAll() },
  svm: { empty: (): MsrBitmapBase => new SvmMsrpm(), full: (): MsrBitmapBase => SvmMsrpm.interceptAll() },
};

const msrOp = (kind: "vmx" | "svm") =>
  fc.record({
    intercept: fc.boolean(),
    seg: fc.nat({ max: COVER[kind].length - 1 }),
    // Mostly inside a segment; sometimes poking past its end.
    offset: fc.oneof(fc.integer({ min: 0, max: 0x1fff }), fc.integer({ min: 0x1fe0, max: 0x1fff })),
    len: fc.integer({ min: 1, max: 48 }),
    access,
  });

describe("MSR bitmaps agree with a reference Set", () => {
  for (const kind of ["vmx", "svm"] as const) {
    it(`${kind}: random intercept/allow sequences`, () => {
      fc.assert(
        fc.property(fc.boolean(), fc.array(msrOp(kind), { maxLength: 25 }), fc.array(msrNear, { maxLength: 20 }), (startFull, ops, probes) => {
          const bm = startFull ? MAKE[kind].full() : MAKE[kind].empty();
          const covered = (m: number) => COVER[kind].some(([a, b]) => m >= a && m <= b);
          // Reference: covered pairs start allowed unless startFull; `changed` records every later write.
          const changed = new Map<string, boolean>();
          const refIntercepts = (m: number, d: Dir) => !covered(m) || (changed.get(`${m}:${d}`) ?? startFull);
          const touched: number[] = [];
          for (const op of ops) {
            const first = COVER[kind][op.seg]![0] + op.offset;
            const last = first + op.len - 1;
            touched.push(first - 1, first, last, last + 1);
            const all = Array.from({ length: op.len }, (_, i) => first + i);
            if (op.intercept) {
              bm.intercept({ first, last }, op.access);
              for (const m of all) for (const d of dirsOf(op.access)) changed.set(`${m}:${d}`, true);
            } else if (all.every(covered)) {
              bm.allow({ first, last }, op.access);
              for (const m of all) for (const d of dirsOf(op.access)) changed.set(`${m}:${d}`, false);
            } else {
              const before = bm.toBuffer();
              expect(() => bm.allow({ first, last }, op.access)).toThrow(BitmapError);
              expect(bm.toBuffer().equals(before)).toBe(true);
            }
          }
          const allowedRanges = { read: bm.allowedRanges("read"), write: bm.allowedRanges("write") };
          for (const m of [...touched, ...probes, ...[...changed.keys()].map((k) => Number(k.split(":")[0]))]) {
            if (m < 0 || m > 0xffff_ffff) continue;
            for (const d of ["read", "write"] as const) {
              expect(bm.intercepts(m, d)).toBe(refIntercepts(m, d));
              // The range listing says the same as the per-MSR query.
              expect(allowedRanges[d].some((r) => m >= r.first && m <= r.last)).toBe(!refIntercepts(m, d));
            }
          }
        }),
        { numRuns: 60 },
      );
    });
  }
});

const ioOp = fc.record({
  intercept: fc.boolean(),
  first: fc.oneof(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0x7ff0, max: 0x800f }), fc.integer({ min: 0xffe0, max: 0xffff })),
  len: fc.integer({ min: 1, max: 20 }),
});
const ioProbe = fc.record({
  port: fc.oneof(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0xfff8, max: 0xffff }), fc.integer({ min: 0, max: 8 })),
  size: fc.constantFrom(1, 2, 4),
});

describe("I/O bitmaps agree with a reference Set", () => {
  for (const kind of ["vmx", "svm"] as const) {
    it(`${kind}: random sequences, multi-byte and wrap rules`, () => {
      fc.assert(
        fc.property(fc.array(ioOp, { maxLength: 25 }), fc.boolean(), fc.array(ioProbe, { maxLength: 40 }), (ops, beyond, probes) => {
          const bm = kind === "vmx" ? new VmxIoBitmap() : new SvmIopm();
          const set = new Set<number>();
          const touched: number[] = [];
          for (const op of ops) {
            const last = Math.min(0xffff, op.first + op.len - 1);
            if (op.intercept) bm.intercept({ first: op.first, last });
            else bm.allow({ first: op.first, last });
            for (let p = op.first; p <= last; p++) op.intercept ? set.add(p) : set.delete(p);
            touched.push(op.first, last);
          }
          if (bm instanceof SvmIopm) {
            bm.setInterceptBeyondPortSpace(beyond);
            // The three bits past 0xFFFF behave like ports 0x10000-0x10002.
            if (beyond) for (const p of [0x10000, 0x10001, 0x10002]) set.add(p);
          }
          const expected = (port: number, size: number) => {
            if (kind === "vmx" && port + size > 0x10000) return true;
            for (let p = port; p < port + size; p++) if (set.has(p)) return true;
            return false;
          };
          for (const { port, size } of [...probes, ...touched.flatMap((p) => [1, 2, 4].map((size) => ({ port: Math.max(0, p - size + 1), size })))]) {
            expect(bm.intercepts(port, size)).toBe(expected(port, size));
          }
        }),
        { numRuns: 80 },
      );
    });
  }
});

describe("raw pages and JSON round-trip", () => {
  interface Page {
    toBuffer(): Buffer;
    toJSON(): unknown;
  }
  // `exact`: every bit of the page means something, so JSON carries all of it.
  const codecs: Array<{ name: string; BYTE_LENGTH: number; exact: boolean; fromBuffer(b: Uint8Array): Page; fromJSON(j: unknown): Page }> = [
    { name: "VmxMsrBitmap", BYTE_LENGTH: VmxMsrBitmap.BYTE_LENGTH, exact: true, fromBuffer: (b) => VmxMsrBitmap.fromBuffer(b), fromJSON: (j) => VmxMsrBitmap.fromJSON(j) },
    { name: "SvmMsrpm", BYTE_LENGTH: SvmMsrpm.BYTE_LENGTH, exact: false, fromBuffer: (b) => SvmMsrpm.fromBuffer(b), fromJSON: (j) => SvmMsrpm.fromJSON(j) },
    { name: "VmxIoBitmap", BYTE_LENGTH: VmxIoBitmap.BYTE_LENGTH, exact: true, fromBuffer: (b) => VmxIoBitmap.fromBuffer(b), fromJSON: (j) => VmxIoBitmap.fromJSON(j) },
    { name: "SvmIopm", BYTE_LENGTH: SvmIopm.BYTE_LENGTH, exact: false, fromBuffer: (b) => SvmIopm.fromBuffer(b), fromJSON: (j) => SvmIopm.fromJSON(j) },
  ];
  for (const Cls of codecs) {
    it(`${Cls.name}: any page bytes survive fromBuffer/toBuffer; JSON round-trips`, () => {
      fc.assert(
        fc.property(
          fc.uint8Array({ minLength: Cls.BYTE_LENGTH, maxLength: Cls.BYTE_LENGTH }),
          fc.integer({ min: 0, max: Cls.BYTE_LENGTH - 1 }),
          fc.nat({ max: 255 }),
          fc.boolean(),
          (bytes, at, v, dense) => {
            // Sparse pages too: long zero and one runs are where range code breaks.
            const page = dense ? bytes : Buffer.alloc(Cls.BYTE_LENGTH, at % 2 ? 0xff : 0).fill(v, at, Math.min(at + 3, Cls.BYTE_LENGTH));
            const bm = Cls.fromBuffer(page);
            expect(bm.toBuffer().equals(Buffer.from(page))).toBe(true);
            const viaJson = Cls.fromJSON(JSON.parse(JSON.stringify(bm.toJSON())));
            if (Cls.exact) {
              expect(viaJson.toBuffer().equals(Buffer.from(page))).toBe(true);
            } else {
              // SVM pages have reserved bytes JSON does not carry; the meaning must still match.
              expect(JSON.stringify(viaJson.toJSON())).toBe(JSON.stringify(bm.toJSON()));
            }
          },
        ),
        { numRuns: 25 },
      );
    });
  }

  it("VMX I/O pages A and B split and join losslessly", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 8192, maxLength: 8192 }), (bytes) => {
        const bm = VmxIoBitmap.fromBuffer(bytes);
        const { a, b } = bm.toPages();
        expect(Buffer.concat([a, b]).equals(Buffer.from(bytes))).toBe(true);
        expect(VmxIoBitmap.fromPages(a, b).equals(bm)).toBe(true);
      }),
      { numRuns: 10 },
    );
  });
});

const policyOp = fc.record({
  allow: fc.boolean(),
  first: msrNear,
  len: fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 0x8000 })),
  access,
});

describe("KVM filter conversion allows exactly what the source allows", () => {
  const check = (source: { toPolicy(): MsrPolicy }, extraProbes: number[], x2apic: "encode" | "dont-care") => {
    const policy = source.toPolicy();
    let filter: ReturnType<typeof toKvmMsrFilter>;
    try {
      filter = toKvmMsrFilter(source, { x2apic });
    } catch (e) {
      expect(e).toBeInstanceOf(KvmMsrFilterError);
      const k = e as KvmMsrFilterError;
      // No range can reach MSR 0xFFFFFFFF: only a policy that reads and writes it differently is unrepresentable.
      const split = policy.allows(0xffff_ffff, "read") !== policy.allows(0xffff_ffff, "write");
      expect(k.code).toBe(split ? "KVM_MSR_FILTER_UNREPRESENTABLE" : "KVM_MSR_FILTER_TOO_MANY_RANGES");
      if (!split) expect(k.rangesNeeded).toBeGreaterThan(16);
      return false;
    }
    validateKvmMsrFilter(filter);
    // Probe every policy boundary and every filter range edge, with neighbours.
    const probes = new Set<number>([...HOT, ...extraProbes]);
    for (const d of ["read", "write"] as const)
      for (const [s, e] of policy.allowedSet(d).spans) for (const m of [s - 1, s, e - 1, e]) probes.add(m);
    for (const r of filter.ranges) for (const m of [r.base - 1, r.base, r.base + r.nmsrs - 1, r.base + r.nmsrs]) probes.add(m);
    for (const m of probes) {
      if (m < 0 || m > 0xffff_ffff) continue;
      for (const d of ["read", "write"] as const) {
        if (x2apic === "encode") expect(kvmAllows(filter, m, d)).toBe(policy.allows(m, d));
        // KVM itself never filters x2APIC MSRs: outside them, the real decision must match.
        if (m < 0x800 || m > 0x8ff) expect(kvmAllows(filter, m, d, true)).toBe(policy.allows(m, d));
      }
    }
    return true;
  };

  it("random allow/deny-list policies over the whole 32-bit space", () => {
    let converted = 0;
    fc.assert(
      fc.property(fc.boolean(), fc.array(policyOp, { maxLength: 8 }), fc.array(msrNear, { maxLength: 30 }), fc.constantFrom("encode", "dont-care"), (denyAll, ops, probes, x2apic) => {
        let p = denyAll ? MsrPolicy.denyAll() : MsrPolicy.allowAll();
        for (const op of ops) {
          const rule = { msrs: { first: op.first, last: Math.min(0xffff_ffff, op.first + op.len - 1) }, access: op.access };
          p = op.allow ? p.allow([rule]) : p.deny([rule]);
        }
        if (check(p, probes, x2apic)) converted++;
      }),
      { numRuns: 150 },
    );
    // The property is only meaningful if most policies actually converted.
    expect(converted).toBeGreaterThan(100);
  });

  for (const kind of ["vmx", "svm"] as const) {
    it(`random ${kind} bitmaps, probing MSRs outside the bitmap's ranges too`, () => {
      fc.assert(
        fc.property(fc.array(msrOp(kind), { maxLength: 10 }), fc.array(msrNear, { maxLength: 30 }), (ops, probes) => {
          const bm = MAKE[kind].full();
          for (const op of ops) {
            const first = COVER[kind][op.seg]![0] + op.offset;
            const last = Math.min(COVER[kind][op.seg]![1], first + op.len - 1);
            op.intercept ? bm.intercept({ first, last }, op.access) : bm.allow({ first, last }, op.access);
          }
          expect(check(bm, probes, "encode")).toBe(true);
          for (const m of probes) for (const d of ["read", "write"] as const) expect(bm.toPolicy().allows(m, d)).toBe(!bm.intercepts(m, d));
        }),
        { numRuns: 80 },
      );
    });
  }
});
