import type { GuestMemory } from "@tsvmm/abi";

/** e820 / Multiboot / hvm_memmap types share these values. */
export const MEMORY_RAM = 1;
export const MEMORY_RESERVED = 2;
export const MEMORY_ACPI = 3;
export const MEMORY_NVS = 4;
export const MEMORY_UNUSABLE = 5;

export interface MemoryMapEntry {
  readonly addr: bigint;
  readonly size: bigint;
  readonly type: number;
}

const LEGACY_HOLE_START = 0xa0000;
const LEGACY_HOLE_END = 0x100000;

/**
 * The memory map a PC firmware would report for this guest memory: every region is RAM, except
 * that the legacy VGA/ROM window 640 KiB..1 MiB is reported reserved where memory backs it.
 */
export function defaultMemoryMap(memory: GuestMemory): MemoryMapEntry[] {
  const out: MemoryMapEntry[] = [];
  const push = (a: number, e: number, type: number) => {
    if (e > a) out.push({ addr: BigInt(a), size: BigInt(e - a), type });
  };
  for (const r of memory.regions) {
    const end = r.base + r.size;
    push(r.base, Math.min(end, LEGACY_HOLE_START), MEMORY_RAM);
    push(Math.max(r.base, LEGACY_HOLE_START), Math.min(end, LEGACY_HOLE_END), MEMORY_RESERVED);
    push(Math.max(r.base, LEGACY_HOLE_END), end, MEMORY_RAM);
  }
  return out;
}
