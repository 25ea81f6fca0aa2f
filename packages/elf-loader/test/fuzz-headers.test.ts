// Header fuzzing: bzImage setup headers, Multiboot headers and PVH entry notes, parsed on their own
// (no guest memory), so a large number of cases runs in a few seconds. Each case either parses,
// with the result consistent with its input, or is refused with this package's typed error; any
// other exception, or a case slower than CASE_LIMIT_MS, fails the run. Inputs are byte mutations
// of valid seeds and field-aware mutations that put boundary values into declared header fields.
// TSVMM_FUZZ_SCALE multiplies the counts (`npm run fuzz` uses 10: 10^6 cases).

import type { StructLayout } from "@tsvmm/abi";
import {
  BootError,
  ElfError,
  findMultibootHeader,
  findPvhEntry,
  looksLikeBzImage,
  MULTIBOOT_HEADER_MAGIC,
  MULTIBOOT_SEARCH,
  MultibootHeaderLayout,
  PF_R,
  PF_X,
  parseBzImage,
  parseElf,
  SETUP_HEADER_OFFSET,
  SetupHeaderLayout,
} from "@tsvmm/elf-loader";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { buildBzImage } from "./helpers/bzimage-builder.js";
import { buildElf, note } from "./helpers/elf-builder.js";

const SCALE = Number(process.env.TSVMM_FUZZ_SCALE ?? "1");
const CASE_LIMIT_MS = 1000;
const RUNS = { bzimage: 40_000, multiboot: 30_000, pvh: 30_000 } as const;

const INTERESTING = [0, 1, 2, 3, 4, 0x7f, 0x80, 0xff, 0x100, 0x200, 0x206, 0x20c, 0x20f, 0x1000, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];

/** A header at a file offset, and the offsets (within it) of the fields the mutations aim at. */
interface Target {
  readonly at: number;
  readonly size: number;
  readonly fields: readonly number[];
}
const declared = (at: number, layout: StructLayout<unknown>): Target => ({ at, size: layout.size, fields: layout.fields().map((f) => f.offset) });

/** mulberry32: each fast-check case seeds a small generator that derives CASES_PER_SEED inputs, which keeps the runner's per-case cost out of the count. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const CASES_PER_SEED = 10;

/**
 * 1-4 mutations of `seed`: a byte anywhere or near the header; a boundary or random value (or its
 * negation) stored little-endian into one declared field; a truncation; or trailing bytes.
 */
function mutate(seed: Uint8Array, target: Target, rnd: () => number): Buffer {
  const int = (n: number) => Math.floor(rnd() * n);
  let b = Buffer.from(seed);
  const { fields } = target;
  for (let n = 1 + int(4); n > 0; n--) {
    const kind = int(8);
    if (kind < 2) {
      const pos = rnd() < 0.5 ? int(b.length) : target.at + int(target.size + 8);
      if (pos < b.length) b[pos] = int(256);
    } else if (kind < 6) {
      const i = int(fields.length);
      const width = Math.min((fields[i + 1] ?? target.size) - fields[i]!, 8);
      const raw = rnd() < 0.6 ? INTERESTING[int(INTERESTING.length)]! : int(2 ** 32);
      let v = BigInt(rnd() < 0.2 ? -raw : raw);
      for (let k = 0; k < width; k++, v >>= 8n) {
        const p = target.at + fields[i]! + k;
        if (p < b.length) b[p] = Number(v & 0xffn);
      }
    } else if (kind === 6) {
      b = b.subarray(0, int(b.length + 1));
    } else {
      b = Buffer.concat([b, Buffer.alloc(int(65), 0xa5)]);
    }
  }
  return b;
}

const counts: Record<string, { cases: number; parsed: number; refused: Record<string, number>; slowestMs: number }> = {};
afterAll(() => {
  let total = 0;
  for (const [name, c] of Object.entries(counts)) {
    total += c.cases;
    console.log(`fuzz-headers ${name}: ${c.cases} cases, ${c.parsed} parsed, slowest ${c.slowestMs.toFixed(2)} ms, refused: ${JSON.stringify(c.refused)}`);
  }
  console.log(`fuzz-headers total: ${total} cases, 0 untyped exceptions, 0 over ${CASE_LIMIT_MS} ms`);
});

/** Run one case: a result goes to `verify`; an exception must be one of this package's typed errors. */
function check<T>(name: string, parse: () => T, verify: (r: T) => void): void {
  counts[name] ??= { cases: 0, parsed: 0, refused: {}, slowestMs: 0 };
  const c = counts[name];
  c.cases++;
  const t0 = performance.now();
  let result: T;
  try {
    result = parse();
  } catch (e) {
    const ms = performance.now() - t0;
    if (ms > CASE_LIMIT_MS) throw new Error(`${name}: one case took ${ms.toFixed(0)} ms`);
    c.slowestMs = Math.max(c.slowestMs, ms);
    if (!(e instanceof BootError || e instanceof ElfError)) throw e;
    c.refused[e.code] = (c.refused[e.code] ?? 0) + 1;
    return;
  }
  const ms = performance.now() - t0;
  if (ms > CASE_LIMIT_MS) throw new Error(`${name}: one case took ${ms.toFixed(0)} ms`);
  c.slowestMs = Math.max(c.slowestMs, ms);
  c.parsed++;
  verify(result);
}

/** A cheap assertion for the per-case checks (vitest's expect costs more than the parse it checks). */
function holds(cond: boolean, what: string): void {
  if (!cond) throw new Error(`invariant broken: ${what}`);
}

/** `cases` inputs (times SCALE): fast-check picks a seed index and a generator seed per CASES_PER_SEED of them. */
function run(seeds: number, cases: number, body: (seed: number, rnd: () => number) => void): void {
  fc.assert(
    fc.property(fc.nat({ max: seeds - 1 }), fc.integer(), (i, s) => {
      const rnd = prng(s);
      for (let k = 0; k < CASES_PER_SEED; k++) body(i, rnd);
    }),
    { numRuns: (cases * SCALE) / CASES_PER_SEED },
  );
}

describe("fuzz: boot headers never break the parsers", () => {
  it(`bzImage setup header (${RUNS.bzimage * SCALE} cases)`, { timeout: 60_000 * SCALE }, () => {
    const seeds = [buildBzImage({ kernel: Buffer.alloc(0x400, 0xcc) }), buildBzImage({ kernel: Buffer.alloc(0x300, 0xcc), setupSects: 1, version: 0x206 })];
    const target = declared(SETUP_HEADER_OFFSET, SetupHeaderLayout as StructLayout<unknown>);
    run(seeds.length, RUNS.bzimage, (i, rnd) => {
      const bytes = mutate(seeds[i]!, target, rnd);
      check(
        "bzimage",
        () => parseBzImage(bytes),
        (bz) => {
          // What parsed is what the file says, and every view lies inside the file.
          holds(looksLikeBzImage(bytes), "a parsed bzImage looks like one");
          holds(bz.header.version >= 0x206, "protocol >= 2.06");
          holds(bz.kernel.length > 0x200, "kernel reaches startup_64");
          holds(bz.kernel.length + (bz.header.setupSects + 1) * 512 === bytes.length, "setup + kernel = file");
          holds(bz.header.syssize * 16 <= bz.kernel.length, "syssize inside the kernel");
          holds(bz.headerBytes.length <= bytes.length - SETUP_HEADER_OFFSET, "header bytes inside the file");
        },
      );
    });
  });

  it(`Multiboot header (${RUNS.multiboot * SCALE} cases)`, { timeout: 60_000 * SCALE }, () => {
    const header = (flags: number, addrs: number[]) => {
      const h = Buffer.alloc(MultibootHeaderLayout.size);
      MultibootHeaderLayout.encode(
        { magic: MULTIBOOT_HEADER_MAGIC, flags, checksum: -(MULTIBOOT_HEADER_MAGIC + flags) >>> 0, headerAddr: addrs[0] ?? 0, loadAddr: addrs[1] ?? 0, loadEndAddr: addrs[2] ?? 0, bssEndAddr: addrs[3] ?? 0, entryAddr: addrs[4] ?? 0, modeType: 0, width: 0, height: 0, depth: 0 },
        h,
      );
      return h;
    };
    // Header at 32 (a.out kludge), at 4096 of a larger image, and at the very end of the search window.
    const seeds: Array<[Buffer, number]> = [
      [Buffer.concat([Buffer.alloc(32, 0x90), header(0x10003, [0x100020, 0x100000, 0x100100, 0x102000, 0x100040]), Buffer.alloc(0x100, 0x90)]), 32],
      [Buffer.concat([Buffer.alloc(4096, 0x90), header(0x3, []), Buffer.alloc(64, 0x90)]), 4096],
      [Buffer.concat([Buffer.alloc(MULTIBOOT_SEARCH - 12, 0), header(0x0, []).subarray(0, 12)]), MULTIBOOT_SEARCH - 12],
    ];
    const targets = seeds.map(([, at]) => declared(at, MultibootHeaderLayout as StructLayout<unknown>));
    run(seeds.length, RUNS.multiboot, (i, rnd) => {
      const bytes = mutate(seeds[i]![0], targets[i]!, rnd);
      check(
        "multiboot",
        () => findMultibootHeader(bytes),
        (h) => {
          if (h === undefined) return;
          holds(h.offset % 4 === 0, "header 4-byte aligned");
          holds(h.offset + 12 <= Math.min(bytes.length, MULTIBOOT_SEARCH), "header inside the search window");
          const f = MultibootHeaderLayout.decode(Buffer.concat([bytes.subarray(h.offset), Buffer.alloc(MultibootHeaderLayout.size)]));
          holds(f.magic === MULTIBOOT_HEADER_MAGIC, "magic");
          holds((f.magic + f.flags + f.checksum) % 2 ** 32 === 0, "checksum");
          holds((h.addresses !== undefined) === ((f.flags & 0x10000) !== 0), "address fields iff flag 16");
        },
      );
    });
  });

  it(`PVH entry note (${RUNS.pvh * SCALE} cases)`, { timeout: 60_000 * SCALE }, () => {
    const entry = Buffer.alloc(8);
    entry.writeUInt32LE(0x100010);
    const notes = Buffer.concat([note("Xen", 6, Buffer.from("linux\0")), note("Xen", 18, entry.subarray(0, 4)), note("Xen", 18, entry)]);
    const seed = buildElf({
      class: 64,
      entry: 0x100000n,
      segments: [
        { vaddr: 0x100000n, data: Buffer.alloc(64, 0x90), memsz: 0x1000n, flags: PF_R | PF_X },
        { type: 4, vaddr: 0n, data: notes },
      ],
    });
    const at = seed.indexOf(notes);
    // Every 32-bit word of the note area: namesz/descsz/type of each note, names and descriptors.
    const nhdr: Target = { at, size: notes.length, fields: Array.from({ length: notes.length / 4 }, (_, i) => 4 * i) };
    run(1, RUNS.pvh, (_, rnd) => {
      const bytes = mutate(seed, nhdr, rnd);
      check(
        "pvh",
        () => findPvhEntry(parseElf(bytes)),
        (e) => {
          if (e === undefined) return;
          holds(Number.isInteger(e) && e >= 0 && e <= 0xffffffff, "a 32-bit entry");
        },
      );
    });
  });

  it("every target both parsed and refused inputs, for several reasons", () => {
    for (const name of ["bzimage", "multiboot", "pvh"]) {
      const c = counts[name]!;
      expect(c.parsed).toBeGreaterThan(0);
      expect(Object.keys(c.refused).length).toBeGreaterThanOrEqual(2);
    }
  });
});
