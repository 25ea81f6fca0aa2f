import {
  AML_MAX_PKG_LENGTH,
  amlBuffer,
  amlDevice,
  amlEisaId,
  amlInteger,
  amlMethod,
  amlName,
  amlNameSeg,
  amlNameString,
  amlPackage,
  amlPkgLength,
  amlReturn,
  amlScope,
  amlString,
  decodeAmlPkgLength,
  eisaId,
} from "@tsvmm/acpi";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { code } from "./helpers/errors.js";
import { compile, complaints } from "./helpers/iasl.js";

const RUNS = 500 * Number(process.env.TSVMM_FUZZ_SCALE ?? "1");

describe("PkgLength (ACPI 6.4 section 20.2.4)", () => {
  // Boundaries from the grammar: 1 byte holds 0..63 (6 bits); n>1 bytes hold 4 + 8(n-1) bits.
  // The value counts the PkgLength bytes themselves.
  const cases: Array<[number, number[]]> = [
    [0, [0x01]],
    [62, [0x3f]],
    [63, [0x40 | 0x1, 0x04]], // total 65 = 0x41: low nibble 1, next byte 4
    [4093, [0x40 | 0xf, 0xff]], // total 4095, the largest 2-byte value
    [4094, [0x80 | 0x1, 0x00, 0x01]], // total 4097 = 0x1001
    [0xf_ffff - 3, [0x80 | 0xf, 0xff, 0xff]], // total 2^20 - 1
    [0xf_ffff - 2, [0xc0 | 0x1, 0x00, 0x00, 0x01]], // total 2^20 + 1
    [AML_MAX_PKG_LENGTH - 4, [0xc0 | 0xf, 0xff, 0xff, 0xff]], // total 2^28 - 1
  ];
  for (const [content, bytes] of cases) {
    it(`content ${content} -> ${bytes.map((b) => b.toString(16)).join(" ")}`, () => {
      expect([...amlPkgLength(content)]).toEqual(bytes);
    });
  }
  it("refuses a length the 4-byte form cannot hold", () => {
    expect(code(() => amlPkgLength(AML_MAX_PKG_LENGTH - 3))).toBe("ACPI_AML_TOO_LARGE");
    expect(code(() => amlPkgLength(-1))).toBe("ACPI_INVALID_ARGUMENT");
  });
  it("property: decodes to content + its own size, in the shortest form, bits 4-5 clear when multi-byte", () => {
    fc.assert(
      fc.property(fc.oneof(fc.integer({ min: 0, max: 5000 }), fc.integer({ min: 0, max: AML_MAX_PKG_LENGTH - 4 })), (n) => {
        const b = amlPkgLength(n);
        const d = decodeAmlPkgLength(b, 0);
        expect(d).toEqual({ value: n + b.length, size: b.length });
        const limits = [0x3f, 0xfff, 0xf_ffff, 0xfff_ffff];
        expect(n + b.length).toBeLessThanOrEqual(limits[b.length - 1]!);
        if (b.length > 1) {
          expect(b[0]! & 0x30).toBe(0);
          // One byte fewer could not have held it.
          expect(n + b.length - 1).toBeGreaterThan(limits[b.length - 2]!);
        }
      }),
      { numRuns: RUNS },
    );
  });
});

describe("names", () => {
  const segArb = fc
    .tuple(fc.constantFrom(..."ABCDEFGHIJKLMNOPQRSTUVWXYZ_"), fc.array(fc.constantFrom(..."ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"), { maxLength: 3 }))
    .map(([h, t]) => h + t.join(""));

  it("property: a NameSeg is the name padded with '_' to 4 bytes", () => {
    fc.assert(
      fc.property(segArb, (s) => {
        const b = amlNameSeg(s);
        expect(b.length).toBe(4);
        expect(b.toString("latin1")).toBe(s + "_".repeat(4 - s.length));
      }),
      { numRuns: RUNS },
    );
  });
  it("refuses bad NameSegs", () => {
    for (const bad of ["", "1ABC", "ABCDE", "ab", "A-B", "A B"]) expect([bad, code(() => amlNameSeg(bad))]).toEqual([bad, "ACPI_INVALID_ARGUMENT"]);
  });
  it("encodes root, parent, dual and multi name paths", () => {
    expect([...amlNameString("\\")]).toEqual([0x5c, 0x00]);
    expect(amlNameString("\\_SB")).toEqual(Buffer.from("\\_SB_", "latin1"));
    expect(amlNameString("\\_SB.COM1")).toEqual(Buffer.concat([Buffer.from([0x5c, 0x2e]), Buffer.from("_SB_COM1", "latin1")]));
    expect(amlNameString("^^A.B.C")).toEqual(Buffer.concat([Buffer.from([0x5e, 0x5e, 0x2f, 3]), Buffer.from("A___B___C___", "latin1")]));
  });
});

describe("integers (ACPI 6.4 section 20.2.3)", () => {
  const width = (v: bigint): number[] => {
    if (v === 0n) return [0x00];
    if (v === 1n) return [0x01];
    const [prefix, n] = v <= 0xffn ? [0x0a, 1] : v <= 0xffffn ? [0x0b, 2] : v <= 0xffff_ffffn ? [0x0c, 4] : [0x0e, 8];
    const out = [prefix];
    for (let i = 0; i < n; i++) out.push(Number((v >> BigInt(8 * i)) & 0xffn));
    return out;
  };
  it("ZeroOp, OneOp, then the shortest of Byte/Word/DWord/QWord at each boundary", () => {
    const edges = [0n, 1n, 2n, 0xffn, 0x100n, 0xffffn, 0x1_0000n, 0xffff_ffffn, 0x1_0000_0000n, 0xffff_ffff_ffff_ffffn];
    expect(edges.map((v) => amlInteger(v)[0])).toEqual([0x00, 0x01, 0x0a, 0x0a, 0x0b, 0x0b, 0x0c, 0x0c, 0x0e, 0x0e]);
  });
  it("property: encoding is prefix + little-endian value of the shortest width", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 0xffff_ffff_ffff_ffffn }), (v) => {
        expect([...amlInteger(v)]).toEqual(width(v));
        if (v <= BigInt(Number.MAX_SAFE_INTEGER)) expect(amlInteger(Number(v))).toEqual(amlInteger(v));
      }),
      { numRuns: RUNS },
    );
  });
  it("refuses negative, fractional and over-wide integers", () => {
    expect(code(() => amlInteger(-1))).toBe("ACPI_INVALID_ARGUMENT");
    expect(code(() => amlInteger(1.5))).toBe("ACPI_INVALID_ARGUMENT");
    expect(code(() => amlInteger(1n << 64n))).toBe("ACPI_INVALID_ARGUMENT");
  });
});

describe("strings and EISA ids", () => {
  it("a String is 0x0D, the bytes, NUL", () => {
    expect([...amlString("AB")]).toEqual([0x0d, 0x41, 0x42, 0x00]);
    expect(code(() => amlString("a\0b"))).toBe("ACPI_INVALID_ARGUMENT");
    expect(code(() => amlString("é"))).toBe("ACPI_INVALID_ARGUMENT");
  });
  it("EISA ids: PNP0501 is the dword the PnP spec's compression gives", () => {
    // P=0x10 N=0x0E P=0x10 -> 0b0_10000_01110_10000 = 0x41D0, stored big-endian, then 05 01.
    expect(eisaId("PNP0501")).toBe(0x0105_d041);
    expect(code(() => eisaId("PNP050"))).toBe("ACPI_INVALID_ARGUMENT");
    expect(code(() => eisaId("pnp0501"))).toBe("ACPI_INVALID_ARGUMENT");
  });
});

// AML against iasl: random trees of Names, Packages, Buffers, Devices, Scopes and Methods, built
// with our encoder and written as ASL; one iasl run compiles them all and the bodies must match.
interface Term {
  readonly asl: string;
  readonly aml: Buffer;
}
const HEX = (v: bigint | number): string => `0x${v.toString(16).toUpperCase()}`;
const intTerm = fc.oneof(
  fc.constantFrom(0n, 1n, 0xffn, 0x100n, 0xffffn, 0x1_0000n, 0xffff_ffffn, 0x1_0000_0000n),
  fc.bigInt({ min: 0n, max: 0xffff_ffff_ffff_fffen }),
).map((v): Term => ({ asl: v === 0n ? "Zero" : v === 1n ? "One" : HEX(v), aml: amlInteger(v) }));
const strTerm = fc
  .string({ unit: fc.constantFrom(..."ABCxyz019 _-.:"), maxLength: 80 })
  .map((s): Term => ({ asl: `"${s}"`, aml: amlString(s) }));
const eisaTerm = fc
  .tuple(fc.string({ unit: fc.constantFrom(..."ABCDEFGHIJKLMNOPQRSTUVWXYZ"), minLength: 3, maxLength: 3 }), fc.integer({ min: 0, max: 0xffff }))
  .map(([v, p]): Term => {
    const id = v + p.toString(16).toUpperCase().padStart(4, "0");
    return { asl: `EisaId ("${id}")`, aml: amlEisaId(id) };
  });
const bufTerm = fc.oneof(fc.uint8Array({ minLength: 1, maxLength: 70 }), fc.uint8Array({ minLength: 4090, maxLength: 4200 })).map(
  (b): Term => ({
    asl: `Buffer (${b.length === 1 ? "One" : HEX(b.length)}) { ${[...b].map((x) => HEX(x)).join(", ")} }`,
    aml: amlBuffer(b),
  }),
);
const dataTerm: fc.Arbitrary<Term> = fc.letrec<{ data: Term }>((tie) => ({
  data: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    intTerm,
    strTerm,
    eisaTerm,
    bufTerm,
    fc.array(tie("data"), { maxLength: 6 }).map(
      (els): Term => ({
        asl: `Package (${els.length === 0 ? "Zero" : els.length === 1 ? "One" : HEX(els.length)}) { ${els.map((e) => e.asl).join(", ")} }`,
        aml: amlPackage(els.map((e) => e.aml)),
      }),
    ),
  ),
})).data;

let counter = 0;
const fresh = (p: string): string => `${p}${(counter++ % 1000).toString().padStart(3, "0")}`;
const nameTerm = dataTerm.map((d): Term => {
  const n = fresh("N");
  return { asl: `Name (${n}, ${d.asl})`, aml: amlName(n, d.aml) };
});
const methodTerm = fc
  .tuple(dataTerm, fc.integer({ min: 0, max: 7 }), fc.boolean(), fc.integer({ min: 0, max: 15 }))
  .map(([d, args, ser, sync]): Term => {
    const n = fresh("M");
    return {
      asl: `Method (${n}, ${args}, ${ser ? "Serialized" : "NotSerialized"}, ${sync}) { Return (${d.asl}) }`,
      aml: amlMethod(n, { args, serialized: ser, syncLevel: sync }, [amlReturn(d.aml)]),
    };
  });
const objTerm: fc.Arbitrary<Term> = fc.letrec<{ obj: Term }>((tie) => ({
  obj: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    nameTerm,
    methodTerm,
    fc.array(tie("obj"), { maxLength: 4 }).map((kids): Term => {
      const n = fresh("D");
      // A Device needs _HID or _ADR, or iasl warns.
      return {
        asl: `Device (${n}) { Name (_ADR, Zero)\n${kids.map((k) => k.asl).join("\n")} }`,
        aml: amlDevice(n, [amlName("_ADR", 0), ...kids.map((k) => k.aml)]),
      };
    }),
  ),
})).obj;

describe("AML encoder against iasl", () => {
  it("random definition blocks compile (iasl -oa) to the bytes our encoder gives", () => {
    const blocks = fc.sample(fc.array(objTerm, { minLength: 1, maxLength: 5 }), { numRuns: 25, seed: 0x5eed });
    const sources: Record<string, string> = {};
    const ours: Record<string, Buffer> = {};
    blocks.forEach((terms, i) => {
      const scoped: Term = {
        asl: `Scope (\\_SB) { ${terms.map((t) => t.asl).join("\n")} }`,
        aml: amlScope("\\_SB", terms.map((t) => t.aml)),
      };
      sources[`b${i}.asl`] = `DefinitionBlock ("", "SSDT", 2, "TSVMM", "TEST", 1) {\n${scoped.asl}\n}\n`;
      ours[`b${i}.asl`] = scoped.aml;
    });
    // The sample (fixed seed) covers 2- and 3-byte PkgLengths: some object is over 4 KiB.
    expect(Object.values(ours).some((b) => b.length > 4096)).toBe(true);
    const { run, aml } = compile(sources, ["-oa"]);
    expect(complaints(run.output)).toEqual([]);
    for (const name of Object.keys(sources)) {
      const theirs = aml[name];
      expect([name, theirs !== undefined]).toEqual([name, true]);
      expect([name, theirs!.subarray(36).equals(ours[name]!)]).toEqual([name, true]);
    }
  });
});
