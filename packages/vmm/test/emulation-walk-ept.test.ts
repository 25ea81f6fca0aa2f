import { GuestMemoryMap } from "@tsvmm/abi";
import { PagingTables, TableAllocator } from "@tsvmm/ept";
import { type AccessKind, type PagingMemory, walkPaging } from "@tsvmm/x86";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

// One walk, two implementations: for IA-32e (4/5-level) paging @tsvmm/x86's walkPaging, which KvmCpu
// uses for 32-bit and PAE guests, must agree with @tsvmm/ept's PagingTables.translate, which it uses
// for IA-32e guests, on random tables: the same physical address or the same #PF error code.

const SCALE = Number(process.env.TSVMM_FUZZ_SCALE ?? "1");
const MEM = 0x20000;
const TABLES = [0x1000, 0x2000, 0x3000, 0x4000, 0x5000, 0x6000];

const entry = fc.record({
  present: fc.integer({ min: 0, max: 19 }).map((n) => n > 0),
  flags: fc.integer({ min: 0, max: 0xfff }),
  xd: fc.boolean(),
  noise: fc.oneof({ weight: 10, arbitrary: fc.constant(0n) }, { weight: 1, arbitrary: fc.integer({ min: 12, max: 62 }).map((b) => 1n << BigInt(b)) }),
  frame: fc.integer({ min: 0, max: 0xffffff }),
});

describe("walkPaging and ept's PagingTables agree on IA-32e walks", () => {
  it("property: physical address or #PF error code, over random 4- and 5-level tables", () => {
    const outcomes = new Set<string>();
    fc.assert(
      fc.property(
        fc.record({ levels: fc.constantFrom<4 | 5>(4, 5), nxe: fc.boolean(), wp: fc.boolean(), smep: fc.boolean(), smap: fc.boolean(), ac: fc.boolean(), maxPhyAddr: fc.constantFrom(36, 39, 46, 52), pages1G: fc.boolean() }),
        fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        fc.array(entry, { minLength: 5, maxLength: 5 }),
        fc.constantFrom<AccessKind>("read", "write", "fetch"),
        fc.constantFrom(0, 3),
        (c, raw, chain, kind, cpl) => {
          const width = c.levels === 5 ? 57 : 48;
          const lin = BigInt.asUintN(64, BigInt.asIntN(width, raw));
          const mem = GuestMemoryMap.allocate([{ base: 0, size: MEM }]);
          let table = TABLES[0]!;
          for (let k = 0; k < c.levels; k++) {
            const level = c.levels - k;
            const g = chain[k]!;
            const ps = (g.flags & 0x80) !== 0;
            const leaf = level === 1 || (ps && level <= 3);
            const target = leaf ? BigInt(g.frame) << 12n : BigInt(TABLES[k + 1]!);
            let e = (target & 0xffffffffff000n) | BigInt(g.flags) | g.noise | (g.xd ? 1n << 63n : 0n);
            e = g.present ? e | 1n : e & ~1n;
            const index = Number((lin >> BigInt(12 + 9 * (level - 1))) & 0x1ffn);
            mem.writeU64(table + index * 8, e);
            table = TABLES[k + 1]!;
          }
          const root = TABLES[0]!;
          const tables = new PagingTables(mem, new TableAllocator(mem, root, 4096), {
            root,
            levels: c.levels,
            nxe: c.nxe,
            wp: c.wp,
            smep: c.smep,
            smap: c.smap && !c.ac,
            maxPhyAddr: c.maxPhyAddr,
            pages1G: c.pages1G,
          });
          const t = tables.translate(lin, { write: kind === "write", execute: kind === "fetch", user: cpl === 3 });
          outcomes.add(t.fault?.reason ?? "ok");
          const noWrites: PagingMemory = {
            readEntry: (gpa) => (mem.contains(gpa, 8) ? mem.readU64(Number(gpa)) : 0n),
            setEntryBits: () => {},
          };
          const w = walkPaging({ mode: c.levels === 5 ? "5-level" : "4-level", cr3: BigInt(root), pse: false, wp: c.wp, nxe: c.nxe, smep: c.smep, smap: c.smap, ac: c.ac, maxPhyAddr: c.maxPhyAddr, pages1G: c.pages1G }, lin, kind, cpl, noWrites);
          if (t.ok && t.physical !== null) {
            expect(w).toMatchObject({ ok: true, physical: t.physical });
            return;
          }
          const reason = t.fault?.reason;
          // Tables past the test's memory: ept reports table-outside-memory, walkPaging reads zeros.
          if (reason === "table-outside-memory") {
            expect(w.ok).toBe(false);
            return;
          }
          const code = (kind === "write" ? 2 : 0) | (cpl === 3 ? 4 : 0) | (kind === "fetch" && (c.nxe || c.smep) ? 16 : 0) | (reason === "permission" || reason === "reserved" ? 1 : 0) | (reason === "reserved" ? 8 : 0);
          expect(w.ok ? "ok" : w.fault.errorCode, `ept: ${t.fault?.message}`).toBe(code);
        },
      ),
      { numRuns: 1000 * SCALE, seed: Number(process.env.TSVMM_SEED ?? 0x5eed) },
    );
    expect([...outcomes]).toEqual(expect.arrayContaining(["ok", "not-present", "permission", "reserved"]));
  });
});
