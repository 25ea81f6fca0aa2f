import { applyCacheTopology, applyTopology, applyVcpuIds, CpuidTable, idWidth, makeTopology, vcpuPlace } from "@tsvmm/cpuid";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

/** A host-like table: leaf 1, cache leaf 4 (L1d, L1i, L2, L3), 0xB, 0x1F, and the AMD leaves. */
function base(vendor: "intel" | "amd"): CpuidTable {
  const t = new CpuidTable();
  const v = vendor === "amd" ? [0x68747541, 0x444d4163, 0x69746e65] : [0x756e6547, 0x6c65746e, 0x49656e69];
  t.set(0, 0, { eax: 0x1f, ebx: v[0]!, ecx: v[1]!, edx: v[2]! });
  t.set(1, 0, { eax: 0x806f8, ebx: 0xff0800, ecx: 0, edx: 0x178bfbff });
  const cache = (type: number, level: number) => ({ eax: ((level << 5) | type | 0xfc000000) >>> 0, ebx: 0x1c0003f, ecx: 0x3f, edx: 0 });
  t.set(4, 0, cache(1, 1)).set(4, 1, cache(2, 1)).set(4, 2, cache(3, 2)).set(4, 3, cache(3, 3)).set(4, 4, cache(0, 0));
  t.set(0xb, 0, { eax: 1, ebx: 2, ecx: 0x100, edx: 9 });
  t.set(0x1f, 0, { eax: 1, ebx: 2, ecx: 0x100, edx: 9 });
  t.set(0x80000000, 0, { eax: 0x80000021, ebx: 0, ecx: 0, edx: 0 });
  t.set(0x80000001, 0, { eax: 0, ebx: 0, ecx: 0, edx: 0 });
  t.set(0x80000008, 0, { eax: 0x3030, ebx: 0, ecx: 0x7001, edx: 0 });
  for (let i = 0; i < 4; i++) t.set(0x8000001d, i, { ...cache(i === 1 ? 2 : i === 0 ? 1 : 3, i < 2 ? 1 : i), ecx: 0x3f });
  t.set(0x8000001d, 4, { eax: 0, ebx: 0, ecx: 0, edx: 0 });
  return t;
}

const layoutArb = fc
  .record({ t: fc.integer({ min: 1, max: 4 }), c: fc.integer({ min: 1, max: 6 }), s: fc.integer({ min: 1, max: 3 }) })
  .chain(({ t, c, s }) => fc.record({ t: fc.constant(t), c: fc.constant(c), s: fc.constant(s), n: fc.integer({ min: 1, max: t * c * s }) }));

describe("topology", () => {
  it("idWidth is ceil(log2)", () => {
    expect([1, 2, 3, 4, 5, 8, 9].map(idWidth)).toEqual([0, 1, 2, 2, 3, 3, 4]);
  });

  it("defaults to one socket of single-thread cores and refuses impossible layouts", () => {
    expect(makeTopology(4)).toEqual({ vcpus: 4, threadsPerCore: 1, coresPerSocket: 4, sockets: 1 });
    expect(makeTopology(6, { threadsPerCore: 2 })).toEqual({ vcpus: 6, threadsPerCore: 2, coresPerSocket: 3, sockets: 1 });
    for (const bad of [
      () => makeTopology(0),
      () => makeTopology(5, { threadsPerCore: 2, coresPerSocket: 2 }),
      () => makeTopology(2, { threadsPerCore: 1.5 }),
      () => vcpuPlace(makeTopology(2), 2),
    ]) {
      expect(bad).toThrow(expect.objectContaining({ code: "CPUID_INVALID_TOPOLOGY" }));
    }
  });

  it("vCPU places: 2 threads x 3 cores x 2 sockets packs thread, core, socket fields", () => {
    const topo = makeTopology(12, { threadsPerCore: 2, coresPerSocket: 3, sockets: 2 });
    expect(vcpuPlace(topo, 0).apicId).toBe(0);
    expect(vcpuPlace(topo, 1)).toEqual({ thread: 1, core: 0, socket: 0, apicId: 1 });
    expect(vcpuPlace(topo, 5)).toEqual({ thread: 1, core: 2, socket: 0, apicId: 0b101 });
    expect(vcpuPlace(topo, 6)).toEqual({ thread: 0, core: 0, socket: 1, apicId: 0b1000 });
  });

  for (const vendor of ["intel", "amd"] as const) {
    it(`${vendor}: APIC ids unique and every leaf agrees on the layout`, () => {
      fc.assert(
        fc.property(layoutArb, ({ t, c, s, n }) => {
          const topo = makeTopology(n, { threadsPerCore: t, coresPerSocket: c, sockets: s });
          const shared = applyCacheTopology(applyTopology(base(vendor), topo), topo);
          const ids = new Set<number>();
          const per = [...Array(n).keys()].map((i) => {
            const table = applyVcpuIds(shared.clone(), topo, i);
            return { place: vcpuPlace(topo, i), table };
          });
          for (const { place, table } of per) {
            const l1 = table.get(1)!;
            const b0 = table.get(0xb, 0)!;
            const b1 = table.get(0xb, 1)!;
            const apic = b0.edx;
            ids.add(apic);
            // every place that reports the APIC id reports the same one
            expect(l1.ebx >>> 24).toBe(apic & 0xff);
            expect(table.get(0xb, 1)!.edx).toBe(apic);
            expect(table.get(0x1f, 0)!.edx).toBe(apic);
            expect(table.lookup(0xb, 7)).toEqual({ eax: 0, ebx: 0, ecx: 7, edx: apic });
            // level types and counts (SDM leaf 0BH)
            expect([(b0.ecx >> 8) & 0xff, (b1.ecx >> 8) & 0xff, (table.get(0xb, 2)!.ecx >> 8) & 0xff]).toEqual([1, 2, 0]);
            expect(b0.ebx & 0xffff).toBe(t);
            expect(b1.ebx & 0xffff).toBe(t * c);
            const smtShift = b0.eax & 0x1f;
            const coreShift = b1.eax & 0x1f;
            expect(2 ** smtShift).toBeGreaterThanOrEqual(t);
            expect(2 ** (coreShift - smtShift)).toBeGreaterThanOrEqual(c);
            // leaf 1 and leaf 4 fields derive from the same widths
            expect((l1.ebx >>> 16) & 0xff).toBe(Math.min(255, 2 ** coreShift));
            expect(((l1.edx >>> 28) & 1) === 1).toBe(t * c > 1);
            for (const sub of [0, 1, 2, 3]) {
              const eax = table.get(4, sub)!.eax;
              expect((eax >>> 26) + 1).toBe(2 ** (coreShift - smtShift));
              const level = (eax >>> 5) & 7;
              expect(((eax >>> 14) & 0xfff) + 1).toBe(2 ** (level <= 2 ? smtShift : coreShift));
            }
            if (vendor === "amd") {
              const e8 = table.get(0x80000008)!.ecx;
              expect((e8 & 0xff) + 1).toBe(t * c);
              expect((e8 >>> 12) & 0xf).toBe(coreShift);
              const e1e = table.get(0x8000001e)!;
              expect(e1e.eax).toBe(apic);
              expect(((e1e.ebx >>> 8) & 0xff) + 1).toBe(t);
              expect(e1e.ebx & 0xff).toBe(place.core);
              expect(e1e.ecx & 0xff).toBe(place.socket);
              expect((table.get(0x80000001)!.ecx >>> 1) & 1).toBe(t * c > 1 ? 1 : 0);
              for (const sub of [0, 1, 2, 3]) {
                const eax = table.get(0x8000001d, sub)!.eax;
                expect(((eax >>> 14) & 0xfff) + 1).toBe(((eax >>> 5) & 7) <= 2 ? t : t * c);
              }
            } else {
              expect(table.hasLeaf(0x8000001e)).toBe(false);
            }
          }
          expect(ids.size).toBe(n);
          // the SDM's decomposition: shifting the APIC id right by the level shift groups vCPUs
          // sharing a core (SMT shift) or a package (core shift)
          for (const a of per) {
            for (const b of per) {
              const ia = a.table.get(0xb, 0)!;
              const sameCore = a.place.socket === b.place.socket && a.place.core === b.place.core;
              const sameSocket = a.place.socket === b.place.socket;
              const sh0 = ia.eax & 0x1f;
              const sh1 = a.table.get(0xb, 1)!.eax & 0x1f;
              const apicA = ia.edx;
              const apicB = b.table.get(0xb, 0)!.edx;
              expect(apicA >>> sh0 === apicB >>> sh0).toBe(sameCore);
              expect(Math.floor(apicA / 2 ** sh1) === Math.floor(apicB / 2 ** sh1)).toBe(sameSocket);
            }
          }
        }),
        { numRuns: 40 },
      );
    });
  }
});
