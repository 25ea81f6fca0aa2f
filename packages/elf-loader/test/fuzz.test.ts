// Mutation fuzzing: a hostile file either loads or is refused with this package's typed error;
// it never raises RangeError/TypeError, never writes outside guest memory, never writes anything
// when refused, and never hangs. TSVMM_FUZZ_SCALE multiplies the case counts (`npm run fuzz` uses 10).
import { GuestMemoryMap } from "@tsvmm/abi";
import {
  BootError,
  bootLinux as bootLinuxWith, 
  bootMultiboot,
  bootPvh,
  EI_CLASS,
  ELFCLASS64,
  Elf32EhdrLayout,
  Elf64EhdrLayout,
  ElfError,type LinuxBootOptions,
  LoadError,
  loadElf,
  RelocationError,
} from "@tsvmm/elf-loader";
import { identityPageTables } from "@tsvmm/ept";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { buildBzImage } from "./helpers/bzimage-builder.js";
import { buildElf, note } from "./helpers/elf-builder.js";
import { RecordingMemory } from "./helpers/recording-memory.js";
import { elf32Exec, elf32Pie, elf64Exec, elf64Pie } from "./helpers/seeds.js";

// The project's one identity-map builder (ept) is what bootLinux is given everywhere.
const bootLinux = (m: Parameters<typeof bootLinuxWith>[0], i: Parameters<typeof bootLinuxWith>[1], o: Partial<LinuxBootOptions> = {}) =>
  bootLinuxWith(m, i, { pageTables: identityPageTables(), ...o });

const SCALE = Number(process.env.TSVMM_FUZZ_SCALE ?? "1");
const CASE_LIMIT_MS = 2000;

const INTERESTING = [
  0n,
  1n,
  0x7fn,
  0xffn,
  0x100n,
  0xffffn,
  0x10000n,
  0x7fffffffn,
  0xffffffffn,
  0x100000000n,
  0x1fffffffffffffn,
  0x20000000000000n,
  0x7fffffffffffffffn,
  0x8000000000000000n,
  0xfffffffffffff000n,
  0xffffffffffffff00n,
  0xfffffffffffffff8n,
  0xffffffffffffffffn,
];

type Mutation =
  | { kind: "flip"; pos: number; bit: number }
  | { kind: "byte"; pos: number; value: number }
  | { kind: "word"; pos: number; size: 2 | 4 | 8; value: bigint }
  | { kind: "truncate"; keep: number };

/** Mutations biased to the places that matter: the first bytes (headers) and given hot spots. */
function mutations(length: number, hot: readonly number[]): fc.Arbitrary<Mutation[]> {
  const pos = fc.oneof(
    { weight: 3, arbitrary: fc.nat({ max: Math.min(255, length - 1) }) },
    { weight: 2, arbitrary: fc.nat({ max: length - 1 }) },
    { weight: 3, arbitrary: fc.tuple(fc.constantFrom(...hot), fc.nat({ max: 127 })).map(([h, d]) => Math.min(length - 1, h + d)) },
  );
  const value = fc.oneof(fc.constantFrom(...INTERESTING), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.constant(BigInt(length)), fc.bigInt({ min: 0n, max: BigInt(length) }));
  const m: fc.Arbitrary<Mutation> = fc.oneof(
    { weight: 3, arbitrary: fc.record({ kind: fc.constant("flip" as const), pos, bit: fc.nat({ max: 7 }) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant("byte" as const), pos, value: fc.nat({ max: 255 }) }) },
    { weight: 4, arbitrary: fc.record({ kind: fc.constant("word" as const), pos, size: fc.constantFrom(2 as const, 4 as const, 8 as const), value }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("truncate" as const), keep: fc.nat({ max: length }) }) },
  );
  return fc.array(m, { minLength: 1, maxLength: 4 });
}

function mutate(seed: Uint8Array, ms: readonly Mutation[]): Buffer {
  let b = Buffer.from(seed);
  for (const m of ms) {
    if (m.kind === "truncate") b = b.subarray(0, m.keep);
    else if (m.pos >= b.length) continue;
    else if (m.kind === "flip") b[m.pos]! ^= 1 << m.bit;
    else if (m.kind === "byte") b[m.pos] = m.value;
    else {
      for (let i = 0; i < m.size && m.pos + i < b.length; i++) b[m.pos + i] = Number((m.value >> BigInt(8 * i)) & 0xffn);
    }
  }
  return b;
}

const counts: Record<string, { cases: number; loaded: number; refused: Record<string, number> }> = {};
afterAll(() => {
  let total = 0;
  for (const [name, c] of Object.entries(counts)) {
    total += c.cases;
    console.log(`fuzz ${name}: ${c.cases} cases, ${c.loaded} loaded, refused: ${JSON.stringify(c.refused)}`);
  }
  console.log(`fuzz total: ${total} cases`);
});

/** Run one case and check the invariants; returns nothing, throws on a broken invariant. */
function check(name: string, mem: RecordingMemory, f: () => unknown): void {
  counts[name] ??= { cases: 0, loaded: 0, refused: {} };
  const c = counts[name];
  c.cases++;
  mem.reset();
  const t0 = performance.now();
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  const ms = performance.now() - t0;
  if (ms > CASE_LIMIT_MS) throw new Error(`${name}: one case took ${ms.toFixed(0)} ms`);
  const outside = mem.writes.find((w) => !w.inside);
  if (outside !== undefined) throw new Error(`${name}: write of ${outside.length} bytes at 0x${outside.gpa.toString(16)} outside guest memory`);
  if (err === undefined) {
    c.loaded++;
    return;
  }
  if (!(err instanceof ElfError || err instanceof LoadError || err instanceof RelocationError || err instanceof BootError)) throw err;
  if (mem.writes.length > 0) throw new Error(`${name}: refused with ${err.code} after ${mem.writes.length} writes`);
  c.refused[err.code] = (c.refused[err.code] ?? 0) + 1;
}

function hotSpots(seed: Buffer): number[] {
  const h = seed[EI_CLASS] === ELFCLASS64 ? Elf64EhdrLayout.decode(seed) : Elf32EhdrLayout.decode(seed);
  return [0, Number(h.ePhoff), Number(h.eShoff)].filter((x) => x < seed.length);
}

function run<T>(arb: fc.Arbitrary<T>, runs: number, body: (x: T) => void): void {
  fc.assert(fc.property(arb, body), { numRuns: runs * SCALE });
}

const i32 = elf32Exec() ?? buildElf({ class: 32, entry: 0x100000n, segments: [{ vaddr: 0x100000n, data: Buffer.alloc(64, 0x90), memsz: 0x1000n }] });
const p32 =
  elf32Pie() ??
  buildElf({ class: 32, type: 3, entry: 0x1000n, segments: [{ vaddr: 0x1000n, data: Buffer.alloc(64, 0x90), memsz: 0x1000n }] });

describe("fuzz: mutated files never break the loader", () => {
  it(`ELF64 + ELF32 executables (${25_000 * SCALE} cases)`, { timeout: 60_000 * SCALE }, () => {
    const mem = new RecordingMemory(GuestMemoryMap.allocate([{ base: 0, size: 8 << 20 }]));
    const seeds = [elf64Exec(), i32];
    const arb = fc.nat({ max: 1 }).chain((i) => fc.tuple(fc.constant(i), mutations(seeds[i]!.length, hotSpots(seeds[i]!)), fc.boolean()));
    run(arb, 25_000, ([i, ms, virt]) => {
      const bytes = mutate(seeds[i]!, ms);
      check("elf-exec", mem, () => loadElf(mem, bytes, { addressing: virt ? "virtual" : "physical" }));
    });
  });

  it(`ELF64 + ELF32 PIE with relocation (${25_000 * SCALE} cases)`, { timeout: 60_000 * SCALE }, () => {
    const mem = new RecordingMemory(GuestMemoryMap.allocate([{ base: 0, size: 2 << 20 }]));
    const seeds = [elf64Pie(), p32];
    const arb = fc
      .nat({ max: 1 })
      .chain((i) => fc.tuple(fc.constant(i), mutations(seeds[i]!.length, hotSpots(seeds[i]!)), fc.oneof(fc.constant(0), fc.nat({ max: 0x1ff }).map((p) => p * 4096))));
    run(arb, 25_000, ([i, ms, base]) => {
      const bytes = mutate(seeds[i]!, ms);
      check("elf-pie", mem, () => loadElf(mem, bytes, { offset: base }));
    });
  });

  it(`PVH and Multiboot images (${25_000 * SCALE} cases)`, { timeout: 60_000 * SCALE }, () => {
    const mem = new RecordingMemory(GuestMemoryMap.allocate([{ base: 0, size: 4 << 20 }]));
    const entry = Buffer.alloc(4);
    entry.writeUInt32LE(0x100010);
    const mbHeader = (flags: number, addrs: number[]) => {
      const h = Buffer.alloc(12 + 4 * addrs.length);
      h.writeUInt32LE(0x1badb002, 0);
      h.writeUInt32LE(flags, 4);
      h.writeUInt32LE(-(0x1badb002 + flags) >>> 0, 8);
      addrs.forEach((v, i) => {
        h.writeUInt32LE(v, 12 + 4 * i);
      });
      return h;
    };
    // Raw a.out-kludge image: header at file offset 32 = guest 0x100020.
    const kludge = Buffer.concat([Buffer.alloc(32, 0x90), mbHeader(0x10003, [0x100020, 0x100000, 0x100100, 0x102000, 0x100040]), Buffer.alloc(0x100 - 64, 0x90)]);
    const pvh = buildElf({
      class: 64,
      entry: 0x100000n,
      segments: [
        { vaddr: 0x100000n, data: Buffer.alloc(256, 0x90), memsz: 0x2000n },
        { type: 4, vaddr: 0n, data: Buffer.concat([note("Xen", 6, Buffer.from("linux\0")), note("Xen", 18, entry)]) },
      ],
    });
    const multiboot = buildElf({ class: 32, entry: 0x100010n, segments: [{ vaddr: 0x100000n, data: Buffer.concat([mbHeader(0x3, []), Buffer.alloc(96, 0x90)]), memsz: 0x2000n }] });
    const seeds = [pvh, multiboot, kludge];
    const arb = fc.nat({ max: 2 }).chain((i) => fc.tuple(fc.constant(i), mutations(seeds[i]!.length, [0, 32, 64, seeds[i]!.length - 128])));
    run(arb, 25_000, ([i, ms]) => {
      const bytes = mutate(seeds[i]!, ms);
      if (i === 0) check("pvh", mem, () => bootPvh(mem, bytes, { cmdline: "console=ttyS0", initrd: Buffer.alloc(100, 1) }));
      else check(i === 1 ? "multiboot" : "multiboot-aout", mem, () => bootMultiboot(mem, bytes, { cmdline: "x", modules: [{ data: Buffer.alloc(10), cmdline: "m" }] }));
    });
  });

  it(`bzImage (${25_000 * SCALE} cases)`, { timeout: 60_000 * SCALE }, () => {
    const mem = new RecordingMemory(GuestMemoryMap.allocate([{ base: 0, size: 24 << 20 }]));
    const seed = buildBzImage({ kernel: Buffer.alloc(0x1000, 0xcc) });
    const arb = mutations(seed.length, [0x1f0, 0x200, 0x230, 0x258]);
    run(arb, 25_000, (ms) => {
      const bytes = mutate(seed, ms);
      check("bzimage", mem, () => bootLinux(mem, bytes, { cmdline: "console=ttyS0", initrd: Buffer.alloc(64, 2) }));
    });
  });

  it("every fuzz target both loaded and refused some inputs (the mutations reach the checks)", () => {
    for (const name of ["elf-exec", "elf-pie", "pvh", "multiboot", "multiboot-aout", "bzimage"]) {
      const c = counts[name]!;
      expect(c.loaded).toBeGreaterThan(0);
      expect(Object.keys(c.refused).length).toBeGreaterThan(2);
    }
  });
});
