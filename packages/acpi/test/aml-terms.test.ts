import {
  amlArg,
  amlConcat,
  amlDevice,
  amlInteger,
  amlLocal,
  amlMethod,
  amlName,
  amlNameRef,
  amlNameString,
  amlPackage,
  amlResourceTemplate,
  amlReturn,
  amlScope,
  amlStore,
  decodeAmlPkgLength,
  resExtendedInterrupt,
  resIo,
  resMemory32Fixed,
} from "@tsvmm/acpi";
import { describe, expect, it } from "vitest";
import { code } from "./helpers/errors.js";
import { acpiexec, compile, complaints } from "./helpers/iasl.js";

// The AML terms the random-tree test in aml.test.ts does not build (Arg/Local, Store, name
// references, VarPackage, Method defaults) and every variant of the resource descriptors, each
// compiled from ASL by iasl and compared byte for byte; then the argument checks.

/** Compile `terms` (ASL inside one DefinitionBlock) and return the AML after the 36-byte header. */
function iaslBody(asl: string): Buffer {
  const { run, aml } = compile({ "t.asl": `DefinitionBlock ("", "SSDT", 2, "TSVMM", "TEST", 1) {\n${asl}\n}\n` }, ["-oa"]);
  expect(complaints(run.output)).toEqual([]);
  const out = aml["t.asl"];
  if (out === undefined) throw new Error(`iasl did not compile:\n${run.output}`);
  return out.subarray(36);
}

const ssdt = (body: Buffer): Buffer => {
  const t = Buffer.alloc(36 + body.length);
  t.write("SSDT", 0, "latin1");
  t.writeUInt32LE(t.length, 4);
  t[8] = 2;
  t.write("TSVMM ", 10, "latin1");
  t.write("TEST    ", 16, "latin1");
  body.copy(t, 36);
  let sum = 0;
  for (const b of t) sum = (sum + b) & 0xff;
  t[9] = (0x100 - sum) & 0xff;
  return t;
};

describe("Arg, Local, Store and Return against iasl", () => {
  // One method per (Arg n, Local m): Store (Argn, Localm) Return (Localm).
  const pairs = Array.from({ length: 7 }, (_, n) => Array.from({ length: 8 }, (_, m) => [n, m] as const)).flat();
  const mname = (n: number, m: number): string => `M${n}${m}__`.slice(0, 4);
  const asl = pairs.map(([n, m]) => `Method (${mname(n, m)}, 7, NotSerialized) { Store (Arg${n}, Local${m}) Return (Local${m}) }`).join("\n");
  const ours = amlConcat(pairs.map(([n, m]) => amlMethod(mname(n, m), { args: 7 }, [amlStore(amlArg(n), amlLocal(m)), amlReturn(amlLocal(m))])));

  it("every Argn (0-6) and Localm (0-7) encodes as iasl does", () => {
    expect(ours.equals(iaslBody(asl))).toBe(true);
  });
  it("acpiexec runs them: each method returns the argument it stored", () => {
    const r = acpiexec({ SSDT: ssdt(ours) }, ["execute \\M06_ 10 11 12 13 14 15 16", "execute \\M37_ 10 11 12 13 14 15 16", "execute \\M60_ 10 11 12 13 14 15 16"]);
    expect(r.status).toBe(0);
    expect(r.output).not.toMatch(/ACPI Error|ACPI Exception|AE_AML/);
    // acpiexec takes decimal arguments and prints results in hex.
    const returned = [...r.output.matchAll(/\[Integer\] = ([0-9A-F]+)/g)].map((m) => Number.parseInt(m[1]!, 16));
    expect(returned).toEqual([10, 13, 16]);
  });
});

describe("names as references, VarPackage and Method defaults against iasl", () => {
  it("a Package of name references, and a Method with every option left out", () => {
    const asl = `Scope (\\_SB) {
      Method (FOO) { Return (Zero) }
      Method (BAR, 3, Serialized, 15) { Return (One) }
      Device (PCI0) { Name (_ADR, Zero) Name (REFS, Package () { ^FOO, \\_SB, \\_SB.PCI0, BAR }) }
    }`;
    const ours = amlScope("\\_SB", [
      amlMethod("FOO", {}, [amlReturn(0)]),
      amlMethod("BAR", { args: 3, serialized: true, syncLevel: 15 }, [amlReturn(1)]),
      amlDevice("PCI0", [amlName("_ADR", 0), amlName("REFS", amlPackage([amlNameRef("^FOO"), amlNameRef("\\_SB"), amlNameRef("\\_SB.PCI0"), amlNameRef("BAR")]))]),
    ]);
    expect(ours.equals(iaslBody(asl))).toBe(true);
    expect(amlMethod("FOO", {}, [])).toEqual(amlMethod("FOO", { args: 0, serialized: false, syncLevel: 0 }, []));
  });
  it("up to 255 elements a Package, above that a VarPackage (0x13) counted by an integer term", () => {
    for (const n of [255, 256, 300]) {
      const els = Array.from({ length: n }, (_, i) => i);
      const ours = amlName("PKG", amlPackage(els));
      expect([n, ours[5]]).toEqual([n, n <= 255 ? 0x12 : 0x13]);
      const asl = `Name (PKG, Package () { ${els.map((i) => (i === 0 ? "Zero" : i === 1 ? "One" : `0x${i.toString(16)}`)).join(", ")} })`;
      expect([n, ours.equals(iaslBody(asl))]).toEqual([n, true]);
    }
  });
  it("a 255-segment path is a MultiNamePrefix with count 255; 256 segments do not fit", () => {
    const segs = Array.from({ length: 255 }, (_, i) => `S${i.toString(16).toUpperCase().padStart(3, "0")}`);
    const b = amlNameString(`\\${segs.join(".")}`);
    expect([...b.subarray(0, 3)]).toEqual([0x5c, 0x2f, 255]);
    expect(b.length).toBe(3 + 4 * 255);
    expect(code(() => amlNameString(`${segs.join(".")}.LAST`))).toBe("ACPI_AML_TOO_LARGE");
  });
  it("a bare parent prefix is a NullName after it; an empty path is refused", () => {
    expect([...amlNameString("^")]).toEqual([0x5e, 0x00]);
    expect([...amlNameString("^^")]).toEqual([0x5e, 0x5e, 0x00]);
    expect(code(() => amlNameString(""))).toBe("ACPI_INVALID_ARGUMENT");
    expect(code(() => amlNameString("\\.A"))).toBe("ACPI_INVALID_ARGUMENT");
  });
});

describe("argument checks", () => {
  it("Arg0-6 and Local0-7 exist; nothing else does", () => {
    expect([0, 1, 2, 3, 4, 5, 6].map((n) => amlArg(n)[0])).toEqual([0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e]);
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((n) => amlLocal(n)[0])).toEqual([0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67]);
    for (const n of [-1, 7, 1.5, Number.NaN]) expect([n, code(() => amlArg(n))]).toEqual([n, "ACPI_INVALID_ARGUMENT"]);
    for (const n of [-1, 8, 0.5, Number.NaN]) expect([n, code(() => amlLocal(n))]).toEqual([n, "ACPI_INVALID_ARGUMENT"]);
  });
  it("a Method takes 0-7 arguments and a sync level of 0-15", () => {
    for (const args of [-1, 8, 2.5]) expect(code(() => amlMethod("FOO", { args }, []))).toBe("ACPI_INVALID_ARGUMENT");
    for (const syncLevel of [-1, 16, 0.5]) expect(code(() => amlMethod("FOO", { syncLevel }, []))).toBe("ACPI_INVALID_ARGUMENT");
    // MethodFlags: ArgCount bits 0-2, SerializeFlag bit 3, SyncLevel bits 4-7 (ACPI 6.4 20.2.5.2).
    expect(amlMethod("FOO", { args: 7, serialized: true, syncLevel: 15 }, [])[6]).toBe(0xff);
  });
  it("a PkgLength that runs past the buffer or sets bits 4-5 of a multi-byte lead is ACPI_MALFORMED", () => {
    expect(code(() => decodeAmlPkgLength(Buffer.alloc(0), 0))).toBe("ACPI_MALFORMED");
    expect(code(() => decodeAmlPkgLength(Buffer.from([0x05]), 1))).toBe("ACPI_MALFORMED");
    expect(code(() => decodeAmlPkgLength(Buffer.from([0x50, 0x00]), 0))).toBe("ACPI_MALFORMED");
    expect(code(() => decodeAmlPkgLength(Buffer.from([0xc1, 0x00, 0x00]), 0))).toBe("ACPI_MALFORMED");
    expect(code(() => decodeAmlPkgLength(Buffer.from([0x41]), 0))).toBe("ACPI_MALFORMED");
    expect(decodeAmlPkgLength(Buffer.from([0xff, 0xc1, 0x02, 0x03, 0x04]), 1)).toEqual({ value: 1 + 0x20 + 0x3000 + 0x40_0000, size: 4 });
  });
});

describe("resource descriptors: every variant against iasl", () => {
  it("IO Decode16/Decode10, Memory32Fixed ReadWrite/ReadOnly, and all 32 Interrupt flag combinations", () => {
    const asl: string[] = [];
    const ours: Buffer[] = [];
    const add = (name: string, aslDescs: string, descs: Buffer[]): void => {
      asl.push(`Name (${name}, ResourceTemplate () { ${aslDescs} })`);
      ours.push(amlName(name, amlResourceTemplate(descs)));
    };
    add("IO16", "IO (Decode16, 0x3F8, 0x3F8, 0x08, 0x08)", [resIo({ min: 0x3f8, alignment: 8, length: 8 })]);
    add("IO10", "IO (Decode10, 0x2F8, 0x2FF, 0x01, 0x08)", [resIo({ min: 0x2f8, max: 0x2ff, alignment: 1, length: 8, decode16: false })]);
    add("MRW_", "Memory32Fixed (ReadWrite, 0xFED00000, 0x00000400)", [resMemory32Fixed({ base: 0xfed0_0000, length: 0x400 })]);
    add("MRO_", "Memory32Fixed (ReadOnly, 0xFFFF0000, 0x00010000)", [resMemory32Fixed({ base: 0xffff_0000, length: 0x1_0000, writable: false })]);
    for (let bits = 0; bits < 32; bits++) {
      const consumer = (bits & 1) === 0;
      const edge = (bits & 2) !== 0;
      const low = (bits & 4) !== 0;
      const shared = (bits & 8) !== 0;
      const wake = (bits & 16) !== 0;
      const sharing = `${shared ? "Shared" : "Exclusive"}${wake ? "AndWake" : ""}`;
      const gsis = bits === 31 ? [1, 0xffff_ffff, 7] : [bits + 5];
      add(
        `I${bits.toString().padStart(3, "0")}`,
        `Interrupt (${consumer ? "ResourceConsumer" : "ResourceProducer"}, ${edge ? "Edge" : "Level"}, ${low ? "ActiveLow" : "ActiveHigh"}, ${sharing}, , , ) { ${gsis.join(", ")} }`,
        [
          resExtendedInterrupt({
            gsis,
            trigger: edge ? "edge" : "level",
            polarity: low ? "active-low" : "active-high",
            ...(shared ? { shared } : {}),
            ...(wake ? { wakeCapable: wake } : {}),
            ...(consumer ? {} : { consumer: false }),
          }),
        ],
      );
    }
    expect(amlConcat(ours).equals(iaslBody(asl.join("\n")))).toBe(true);
  });
  it("values out of a descriptor field's range are refused", () => {
    const bad: Array<() => unknown> = [
      () => resIo({ min: 0x1_0000, length: 1 }),
      () => resIo({ min: 0, max: -1, length: 1 }),
      () => resIo({ min: 0, alignment: 0x100, length: 1 }),
      () => resIo({ min: 0, length: 0x100 }),
      () => resIo({ min: 1.5, length: 1 }),
      () => resMemory32Fixed({ base: 2 ** 32, length: 1 }),
      () => resMemory32Fixed({ base: 0, length: -1 }),
      () => resExtendedInterrupt({ gsis: [], trigger: "level", polarity: "active-high" }),
      () => resExtendedInterrupt({ gsis: Array.from({ length: 256 }, (_, i) => i), trigger: "level", polarity: "active-high" }),
      () => resExtendedInterrupt({ gsis: [2 ** 32], trigger: "level", polarity: "active-high" }),
    ];
    for (const [i, f] of bad.entries()) expect([i, code(f)]).toEqual([i, "ACPI_INVALID_ARGUMENT"]);
    expect(resExtendedInterrupt({ gsis: Array.from({ length: 255 }, (_, i) => i), trigger: "level", polarity: "active-high" })[4]).toBe(255);
  });
  it("a device built from these terms loads in acpiexec and its _CRS evaluates to the template", () => {
    const dev = amlScope("\\_SB", [
      amlDevice("HPET", [
        amlName("_HID", amlInteger(0x0301_d041)),
        amlName("_CRS", amlResourceTemplate([resMemory32Fixed({ base: 0xfed0_0000, length: 0x400, writable: false }), resExtendedInterrupt({ gsis: [2], trigger: "edge", polarity: "active-low", shared: true })])),
      ]),
    ]);
    const r = acpiexec({ SSDT: ssdt(dev) }, ["evaluate \\_SB.HPET._CRS"]);
    expect(r.status).toBe(0);
    expect(r.output).not.toMatch(/ACPI Error|ACPI Exception|AE_AML/);
    // 86 09 00 | 00 (ReadOnly) | base | length, then 89 06 00 | 0F (consumer, edge, low, shared) | 01 | 02 00 00 00, end tag.
    expect(r.output).toMatch(/\[Buffer\] Length 17 =\s+0000: 86 09 00 00 00 00 D0 FE 00 04 00 00 89 06 00 0F\s.*\s+0010: 01 02 00 00 00 79 00/);
  });
});
