import {
  applyTemplate,
  CpuidTable,
  type CpuidTemplate,
  compileTemplate,
  decodeFeatures,
  diffTables,
  FEATURE_REGISTERS,
  FEATURES,
  feature,
  featureMask,
  fingerprint,
  formatBitmap,
  fromFingerprint,
  fromKvmEntries,
  getHypervisorSignature,
  hasFeature,
  loadTemplate,
  makeTopology,
  normalize,
  parseBitmap,
  parseTemplate,
  TEMPLATES,
  UnsupportedFeatureError,
  unsupportedBits,
  xsaveMasks,
} from "@tsvmm/cpuid";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { kvmSupportedCpuid } from "./helpers/host.js";

const REGS = ["eax", "ebx", "ecx", "edx"] as const;
const u32 = fc.nat(0xffffffff);
const bitmapArb = fc.array(fc.constantFrom("0", "1", "x"), { minLength: 32, maxLength: 32 }).map((a) => a.join(""));
const placeArb = fc.constantFrom(
  ...FEATURE_REGISTERS.map((r) => [r.leaf, r.subleaf] as const),
  [0x1, 0] as const,
  [0x80000008, 0] as const,
);

const hostArb = fc
  .uniqueArray(fc.tuple(placeArb, u32, u32, u32, u32), { selector: ([p]) => `${p[0]}:${p[1]}`, maxLength: 10 })
  .map((list) => {
    const t = new CpuidTable();
    for (const [[leaf, sub], eax, ebx, ecx, edx] of list) t.set(leaf, sub, { eax, ebx, ecx, edx });
    return t;
  });
const templateArb = fc
  .uniqueArray(
    fc.record({ place: placeArb, eax: fc.option(bitmapArb), ebx: fc.option(bitmapArb), ecx: fc.option(bitmapArb), edx: fc.option(bitmapArb) }),
    { selector: (l) => `${l.place[0]}:${l.place[1]}`, maxLength: 6 },
  )
  .map(
    (leaves): CpuidTemplate => ({
      name: "random",
      leaves: leaves.map((l) => {
        const out: Record<string, string | number> = { leaf: l.place[0], subleaf: l.place[1] };
        for (const r of REGS) if (l[r] !== null) out[r] = l[r];
        return out as unknown as CpuidTemplate["leaves"] extends (infer E)[] | undefined ? E : never;
      }),
    }),
  );

describe("bitmaps", () => {
  it("parse/format round-trip and read bit 31 first", () => {
    expect(parseBitmap("1xxxxxxx_xxxxxxxx_xxxxxxxx_xxxxxx0x")).toEqual({ ones: 0x80000000, zeros: 2 });
    fc.assert(
      fc.property(bitmapArb, (s) => {
        const m = parseBitmap(s);
        expect(formatBitmap(m).replace(/_/g, "")).toBe(s);
        expect(m.ones & m.zeros).toBe(0);
      }),
    );
    for (const bad of ["", "x".repeat(31), "2".repeat(32), "X".repeat(32)]) {
      expect(() => parseBitmap(bad)).toThrow(expect.objectContaining({ code: "CPUID_INVALID_TEMPLATE" }));
    }
  });
});

describe("applyTemplate", () => {
  it("x keeps the host bit, 0 and 1 force, untemplated registers are untouched (forced)", () => {
    fc.assert(
      fc.property(hostArb, templateArb, (host, template) => {
        const out = applyTemplate(host, template, { force: true });
        const compiled = new Map(compileTemplate(template).map((c) => [`${c.leaf}:${c.subleaf}`, c]));
        const keys = new Set([...host.entries(), ...out.entries()].map((e) => `${e.leaf}:${e.subleaf}`));
        for (const k of keys) {
          const [leaf, sub] = k.split(":").map(Number) as [number, number];
          const h = host.get(leaf, sub);
          const o = out.get(leaf, sub);
          const c = compiled.get(k);
          const spec = template.leaves?.find((l) => l.leaf === leaf && (l.subleaf ?? 0) === sub);
          if (h === undefined) {
            // created only because the template forces a 1 somewhere in it
            expect(c && REGS.some((r) => c.masks[r].ones !== 0)).toBe(true);
          }
          for (const r of REGS) {
            const bm = spec?.[r]?.replace(/_/g, "");
            for (let bit = 0; bit < 32; bit++) {
              const hostBit = ((h?.[r] ?? 0) >>> bit) & 1;
              const outBit = ((o?.[r] ?? 0) >>> bit) & 1;
              const ch = bm?.[31 - bit] ?? "x";
              expect(outBit).toBe(ch === "x" ? hostBit : Number(ch));
            }
          }
        }
      }),
      { numRuns: 60 },
    );
  });

  it("refuses exactly the documented feature bits forced to 1 that the host lacks", () => {
    fc.assert(
      fc.property(hostArb, templateArb, (host, template) => {
        const expected: string[] = [];
        for (const l of template.leaves ?? []) {
          const leaf = Number(l.leaf);
          const sub = l.subleaf ?? 0;
          for (const r of REGS) {
            const ones = parseBitmap(l[r] ?? "x".repeat(32)).ones;
            const missing = ones & featureMask(leaf, sub, r) & ~(host.get(leaf, sub)?.[r] ?? 0);
            for (let bit = 0; bit < 32; bit++) if ((missing >>> bit) & 1) expected.push(`${leaf}.${sub}.${r}.${bit}`);
          }
        }
        const got = unsupportedBits(host, template).map((b) => `${b.leaf}.${b.subleaf}.${b.register}.${b.bit}`);
        expect(got.sort()).toEqual(expected.sort());
        if (expected.length === 0) expect(() => applyTemplate(host, template)).not.toThrow();
        else expect(() => applyTemplate(host, template)).toThrow(UnsupportedFeatureError);
      }),
      { numRuns: 150 },
    );
  });

  it("forcing a value field (leaf 1 EAX) is not a feature request", () => {
    const host = new CpuidTable().set(1, 0, { eax: 0, ebx: 0, ecx: 0, edx: 0 });
    const out = applyTemplate(host, { name: "sig", leaves: [{ leaf: 1, eax: "0000_0000_0000_0101_0000_0110_0101_0100" }] });
    expect(out.get(1)?.eax).toBe(0x50654);
  });

  it("names the refused features and their register", () => {
    const host = new CpuidTable().set(7, 0, { eax: 0, ebx: 1 << 5, ecx: 0, edx: 0 });
    const t: CpuidTemplate = { name: "wants-avx512", features: { avx2: 1, avx512f: 1, avx512bw: "1" } };
    try {
      applyTemplate(host, t);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(UnsupportedFeatureError);
      const err = e as UnsupportedFeatureError;
      expect(err.code).toBe("CPUID_UNSUPPORTED_BIT");
      expect(err.bits.map((b) => b.feature)).toEqual(["avx512f", "avx512bw"]);
      expect(err.bits[0]).toMatchObject({ leaf: 7, subleaf: 0, register: "ebx", bit: 16 });
    }
    expect(hasFeature(applyTemplate(host, t, { force: true }), "avx512f")).toBe(true);
  });
});

describe("template parsing", () => {
  it("refuses malformed templates with CPUID_INVALID_TEMPLATE", () => {
    const cases: unknown[] = [
      null,
      [],
      { leaves: [] },
      { name: "a", extra: 1 },
      { name: "a", others: "1" },
      { name: "a", leaves: [{ leaf: "zz" }] },
      { name: "a", leaves: [{ leaf: 1, eax: "0101" }] },
      { name: "a", leaves: [{ leaf: 1, esi: "x".repeat(32) }] },
      { name: "a", features: { avx9000: 1 } },
      { name: "a", features: { avx2: 2 } },
      { name: "a", leaves: [{ leaf: 7, ebx: `${"x".repeat(26)}0${"x".repeat(5)}` }], features: { avx2: 1 } },
    ];
    for (const c of cases) {
      expect(() => compileTemplate(parseTemplate(c))).toThrow(expect.objectContaining({ code: "CPUID_INVALID_TEMPLATE" }));
    }
    expect(() => loadTemplate("nope")).toThrow(expect.objectContaining({ code: "CPUID_INVALID_TEMPLATE" }));
  });

  it("precedence: others < leaves < features", () => {
    const all = { eax: 0xffffffff, ebx: 0xffffffff, ecx: 0xffffffff, edx: 0xffffffff };
    const host = new CpuidTable().set(1, 0, all).set(7, 0, all);
    const out = applyTemplate(host, {
      name: "p",
      others: "0",
      leaves: [{ leaf: 7, ebx: "x".repeat(32) }],
      features: { sse2: "x", avx2: 0 },
    });
    expect(decodeFeatures(out).filter((n) => feature(n).leaf === 1)).toEqual(["sse2"]);
    expect(out.get(1)?.eax).toBe(0xffffffff);
    expect(out.get(7, 0)?.ebx).toBe((0xffffffff & ~(1 << 5)) >>> 0);
    expect(out.get(7, 0)?.ecx).toBe(0);
  });
});

describe("shipped templates on this machine's KVM_GET_SUPPORTED_CPUID", () => {
  const kvm = fromKvmEntries(kvmSupportedCpuid());
  const allOnes = new CpuidTable();
  for (const r of FEATURE_REGISTERS) allOnes.setRegister(r.leaf, r.subleaf, r.register, 0xffffffff);

  it("are exported and parse", () => {
    expect(Object.keys(TEMPLATES).sort()).toEqual(["minimal", "t2-like"]);
    expect(loadTemplate("t2-like").name).toBe("t2-like");
  });

  it("t2-like removes the features it is meant to remove and keeps the baseline", () => {
    const names = new Set(decodeFeatures(applyTemplate(allOnes, loadTemplate("t2-like"))));
    for (const gone of ["hle", "rtm", "mpx", "sgx", "intel_pt", "avx512f", "avx512vl", "amx_tile", "vmx", "svm", "sev", "pks", "xsaves", "pt_topa", "aeskle", "hwp"]) {
      expect(names.has(gone), gone).toBe(false);
    }
    for (const kept of ["sse2", "pni", "ssse3", "sse4_2", "avx", "avx2", "bmi2", "fma", "x2apic", "lm", "nx", "syscall", "rdtscp", "xsaveopt", "arat", "invtsc", "kvm_pv_eoi"]) {
      expect(names.has(kept), kept).toBe(true);
    }
  });

  it("t2-like on the real KVM table forces nothing and only clears bits", () => {
    const out = applyTemplate(kvm, loadTemplate("t2-like"));
    for (const d of diffTables(kvm, out)) {
      expect(d.added).toEqual([]);
      expect(((d.b ?? 0) & ~(d.a ?? 0)) >>> 0).toBe(0);
    }
  });

  it("minimal keeps only its own features, and normalization leaves an x87+SSE leaf 0xD", () => {
    const minimal = loadTemplate("minimal");
    // normalization adds HTT (2 vCPUs in one package) and, on AMD, CmpLegacy
    const allowed = new Set([...Object.keys(minimal.features ?? {}), "ht", "cmp_legacy"]);
    const missing = unsupportedBits(kvm, minimal);
    if (missing.length > 0) {
      // a host without the x86-64 baseline: the refusal is the behaviour under test
      expect(() => applyTemplate(kvm, minimal)).toThrow(UnsupportedFeatureError);
      return;
    }
    const out = normalize(applyTemplate(kvm, minimal), { topology: makeTopology(2) });
    for (const n of decodeFeatures(out)) expect(allowed.has(n), n).toBe(true);
    for (const [n, v] of Object.entries(minimal.features ?? {})) if (v === 1) expect(hasFeature(out, n), n).toBe(true);
    expect(xsaveMasks(out)).toEqual({ xcr0: 3n, xss: 0n });
    expect(out.get(0xd, 0)?.ecx).toBe(576);
    expect(out.subleaves(0xd)).toEqual([0, 1]);
  });

  it("a template asking for every feature this KVM lacks is refused, naming each of them", () => {
    const lacking = FEATURES.filter((f) => f.leaf === 1 || f.leaf === 7).filter((f) => !hasFeature(kvm, f.name));
    expect(lacking.length).toBeGreaterThan(0);
    const t: CpuidTemplate = { name: "greedy", features: Object.fromEntries(lacking.map((f) => [f.name, 1])) };
    expect(() => applyTemplate(kvm, t)).toThrow(UnsupportedFeatureError);
    expect(unsupportedBits(kvm, t).map((b) => b.feature).sort()).toEqual(lacking.map((f) => f.name).sort());
  });
});

describe("normalize and fingerprint", () => {
  const kvm = fromKvmEntries(kvmSupportedCpuid());

  it("sets the hypervisor bit and signature and leaves no per-vCPU field behind", () => {
    const out = normalize(kvm, { topology: makeTopology(4, { threadsPerCore: 2 }), hypervisor: { signature: "TSVMMTSVMM\0\0" } });
    expect(hasFeature(out, "hypervisor")).toBe(true);
    expect(getHypervisorSignature(out)).toBe("TSVMMTSVMM\0\0");
    expect(out.get(0x40000001)).toEqual(kvm.get(0x40000001));
    expect(out.get(1)!.ebx >>> 24).toBe(0);
    for (const s of out.subleaves(0xb)) expect(out.get(0xb, s)!.edx).toBe(0);
    expect(out.hasLeaf(0x8000001e)).toBe(false);
    expect(out.get(0xb, 1)!.ebx & 0xffff).toBe(4);
  });

  it("fingerprints are independent of insertion order and round-trip", () => {
    const entries = kvm.entries();
    const shuffled = new CpuidTable([...entries].reverse());
    expect(fingerprint(shuffled)).toBe(fingerprint(kvm));
    expect(fromFingerprint(fingerprint(kvm)).entries()).toEqual(entries);
    expect(() => JSON.parse(fingerprint(kvm))).not.toThrow();
    expect(() => fromFingerprint("{}")).toThrow(expect.objectContaining({ code: "CPUID_INVALID_VALUE" }));
  });

  it("diffTables names features gained and lost between two hosts", () => {
    const a = new CpuidTable().set(7, 0, { eax: 0, ebx: (1 << 5) | (1 << 3), ecx: 0, edx: 0 });
    const b = new CpuidTable().set(7, 0, { eax: 0, ebx: (1 << 3) | (1 << 16), ecx: 0, edx: 0 });
    expect(diffTables(a, b)).toEqual([
      { leaf: 7, subleaf: 0, register: "ebx", a: 0x28, b: 0x10008, added: ["avx512f"], removed: ["avx2"] },
    ]);
    expect(diffTables(a, a)).toEqual([]);
  });
});
