// Independent computations of what guests should report: re-derived here, never copied from
// guest output.

export function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/** The xorshift32 sum user-mode-roundtrip computes at CPL3. */
export function xorshiftSum(n: number): number {
  let x = 2463534242 >>> 0;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    sum = (sum + x) >>> 0;
  }
  return sum;
}

export function fibMod32(n: number): number {
  let a = 0;
  let b = 1;
  for (let i = 0; i < n; i++) [a, b] = [b, (a + b) >>> 0];
  return a;
}

/** A 12-byte string as the three CPUID registers EBX, EDX, ECX (vendor order). */
export function vendorRegs(s: string): { ebx: number; edx: number; ecx: number } {
  const b = Buffer.from(s, "latin1");
  return { ebx: b.readUInt32LE(0), edx: b.readUInt32LE(4), ecx: b.readUInt32LE(8) };
}

export function randomU32(): number {
  return (Math.random() * 0x100000000) >>> 0;
}

export function randomU64(): bigint {
  return (BigInt(randomU32()) << 32n) | BigInt(randomU32());
}

export function s64(v: bigint): bigint {
  return BigInt.asIntN(64, v);
}
