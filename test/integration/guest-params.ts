import type { GuestMemory } from "@tsvmm/abi";
import { randomU32 } from "../../test-kernels/harness/expect.js";

// Parameter blocks the integration guests read at guest-physical 0x6000 (free in every boot
// mode: the boot data ends at 0x3fff and images load at 0x8000 or above). Layouts mirror the
// structs in test-kernels/tests/{ept-probe,msrbitmap-rw,cpuid-template}.c.

export const PARAMS = 0x6000;
const EPT_PROBE_MAGIC = 0x65627270747065n;
const MSRBITMAP_MAGIC = 0x7762746d6d7372n;
const CPUID_MAGIC = 0x6c706d74647063n;

export type ProbeOp = { kind: "read"; va: bigint } | { kind: "write"; va: bigint; value: bigint };

/** ept-probe: `struct params { u64 magic, count; struct op { u64 kind, va, value; } ops[16]; }`. */
export function writeProbeParams(memory: GuestMemory, ops: readonly ProbeOp[]): void {
  if (ops.length > 16) throw new Error("ept-probe takes at most 16 operations");
  memory.writeU64(PARAMS, EPT_PROBE_MAGIC);
  memory.writeU64(PARAMS + 8, BigInt(ops.length));
  ops.forEach((op, i) => {
    const at = PARAMS + 16 + i * 24;
    memory.writeU64(at, op.kind === "read" ? 1n : 2n);
    memory.writeU64(at + 8, BigInt.asUintN(64, op.va));
    memory.writeU64(at + 16, op.kind === "write" ? op.value : 0n);
  });
}

/** msrbitmap-rw: `struct params { u64 magic, count; struct { u64 index, value; } ops[16]; }`. */
export function writeMsrParams(memory: GuestMemory, ops: readonly { index: number; value: bigint }[]): void {
  if (ops.length > 16) throw new Error("msrbitmap-rw takes at most 16 MSRs");
  memory.writeU64(PARAMS, MSRBITMAP_MAGIC);
  memory.writeU64(PARAMS + 8, BigInt(ops.length));
  ops.forEach((op, i) => {
    memory.writeU64(PARAMS + 16 + i * 16, BigInt(op.index));
    memory.writeU64(PARAMS + 24 + i * 16, op.value);
  });
}

export const CPUID_MAX_LEAVES = 96;
const CPUID_LEAVES_AT = PARAMS + 24;
const CPUID_ROWS_AT = CPUID_LEAVES_AT + CPUID_MAX_LEAVES * 8;

/** cpuid-template: magic, count, next_row (u32) + pad, leaves[96] {u32 leaf, subleaf}, rows[4][96] {a,b,c,d}. */
export function writeCpuidParams(memory: GuestMemory, leaves: readonly { leaf: number; subleaf: number }[]): void {
  if (leaves.length > CPUID_MAX_LEAVES) throw new Error(`cpuid-template takes at most ${CPUID_MAX_LEAVES} leaves`);
  memory.writeU64(PARAMS, CPUID_MAGIC);
  memory.writeU64(PARAMS + 8, BigInt(leaves.length));
  memory.writeU32(PARAMS + 16, 0);
  leaves.forEach((l, i) => {
    memory.writeU32(CPUID_LEAVES_AT + i * 8, l.leaf);
    memory.writeU32(CPUID_LEAVES_AT + i * 8 + 4, l.subleaf);
  });
}

/** Row `row` of cpuid-template's results: one {eax, ebx, ecx, edx} per requested leaf. */
export function readCpuidRow(memory: GuestMemory, row: number, count: number): { eax: number; ebx: number; ecx: number; edx: number }[] {
  return Array.from({ length: count }, (_, i) => {
    const at = CPUID_ROWS_AT + (row * CPUID_MAX_LEAVES + i) * 16;
    return { eax: memory.readU32(at), ebx: memory.readU32(at + 4), ecx: memory.readU32(at + 8), edx: memory.readU32(at + 12) };
  });
}

/** A random canonical 48-bit virtual address, 4 KiB aligned, in the upper half. */
export function randomHighPage(): bigint {
  // Never the top page: callers probe the page after it.
  const bits = ((BigInt(randomU32() & 0x7fff) << 32n) | BigInt(randomU32())) & 0x7fff_ffff_e000n;
  return BigInt.asIntN(64, 0xffff800000000000n | bits);
}

/** A random canonical address (either half) with the low `alignBits` clear. */
export function randomCanonical(alignBits = 0): bigint {
  const v = ((BigInt(randomU32() & 0xffff) << 32n) | BigInt(randomU32())) & ~((1n << BigInt(alignBits)) - 1n);
  return BigInt.asUintN(64, BigInt.asIntN(48, v));
}

/** Random integer in [0, n). */
export function randomBelow(n: number): number {
  return Math.floor(Math.random() * n);
}

export function shuffle<T>(xs: readonly T[]): T[] {
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = randomBelow(i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
