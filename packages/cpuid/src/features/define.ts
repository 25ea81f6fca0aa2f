import type { Register } from "../table.js";

/** One documented feature bit: where it lives and its lower-case Linux-style name. */
export interface FeatureBit {
  readonly name: string;
  readonly leaf: number;
  readonly subleaf: number;
  readonly register: Register;
  readonly bit: number;
}

/** Expands a { bit: name } map of one register into FeatureBits. */
export function registerBits(
  leaf: number,
  subleaf: number,
  register: Register,
  names: Readonly<Record<number, string>>,
): FeatureBit[] {
  return Object.entries(names).map(([bit, name]) => ({ name, leaf, subleaf, register, bit: Number(bit) }));
}
