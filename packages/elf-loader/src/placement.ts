import type { GuestMemory } from "@tsvmm/abi";
import { BootError, hex } from "./errors.js";

export interface Placed {
  readonly address: number;
  readonly size: number;
  readonly what: string;
}

/**
 * The guest ranges a boot will write, collected and checked (inside guest memory, disjoint)
 * before the first write, so a refused boot leaves memory as it was.
 */
export class Placement {
  readonly items: Placed[] = [];
  constructor(private readonly memory: GuestMemory) {}

  /** Reserve `[address, address + size)`; `below4G` for fields a 32-bit pointer must reach. */
  add(address: number, size: number, what: string, below4G = false): number {
    const a = Number.isSafeInteger(address) ? BigInt(address) : -1n;
    if (a < 0n || a + BigInt(size) > BigInt(Number.MAX_SAFE_INTEGER) || !this.memory.contains(Number(a), size)) {
      throw new BootError("BOOT_OUTSIDE_MEMORY", `${what}: ${size} bytes at ${a < 0n ? String(address) : hex(a)} are not inside guest memory`);
    }
    const n = Number(a);
    if (below4G && n + size > 0x1_0000_0000) throw new BootError("BOOT_ADDRESS_ABOVE_4G", `${what}: ${hex(n)} + ${size} is not below 4 GiB`);
    this.check(n, size, what);
    this.items.push({ address: n, size, what });
    return n;
  }

  overlaps(address: number, size: number): Placed | undefined {
    return this.items.find((p) => size > 0 && p.size > 0 && address < p.address + p.size && p.address < address + size);
  }

  private check(address: number, size: number, what: string): void {
    const o = this.overlaps(address, size);
    if (o !== undefined) throw new BootError("BOOT_OVERLAP", `${what} at ${hex(address)}..${hex(address + size)} overlaps ${o.what} at ${hex(o.address)}..${hex(o.address + o.size)}`);
  }

  /** Highest `align`-aligned address for `size` bytes inside one region, below `limit`, clear of everything placed. */
  fitHigh(size: number, align: number, limit: number, what: string, below4G = false): number {
    const regions = [...this.memory.regions].sort((x, y) => y.base - x.base);
    for (const r of regions) {
      let top = Math.min(r.base + r.size, limit);
      while (top - size >= r.base) {
        const a = Math.floor((top - size) / align) * align;
        if (a < r.base) break;
        const o = this.overlaps(a, size);
        if (o === undefined) return this.add(a, size, what, below4G);
        top = o.address;
      }
    }
    throw new BootError("BOOT_OUTSIDE_MEMORY", `${what}: no room for ${size} bytes below ${hex(limit)}`);
  }

  /** Lowest `align`-aligned address at or above `from` that fits, clear of everything placed. */
  fitLow(size: number, align: number, from: number, what: string, below4G = false): number {
    for (const r of this.memory.regions) {
      let a = Math.ceil(Math.max(from, r.base) / align) * align;
      while (a + size <= r.base + r.size) {
        const o = this.overlaps(a, size);
        if (o === undefined) return this.add(a, size, what, below4G);
        a = Math.ceil((o.address + o.size) / align) * align;
      }
    }
    throw new BootError("BOOT_OUTSIDE_MEMORY", `${what}: no room for ${size} bytes at or above ${hex(from)}`);
  }
}

/** A string for a boot structure: Latin-1 bytes plus the terminating NUL; an embedded NUL is refused. */
export function cstring(s: string, what: string): Buffer {
  if (s.includes("\0")) throw new BootError("BOOT_BAD_OPTION", `${what}: contains a NUL character`);
  return Buffer.from(`${s}\0`, "latin1");
}
