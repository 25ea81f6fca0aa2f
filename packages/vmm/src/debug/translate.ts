import type { GuestMemory, KvmSregs } from "@tsvmm/abi";
import { PagingTables, TableAllocator } from "@tsvmm/ept";

/** How a vCPU turns a linear address into a physical one, from CR0/CR4/EFER (SDM Vol. 3A 4.1.1). */
export type PagingMode = "none" | "32-bit" | "pae" | "4-level" | "5-level";

/** The control-register state that decides a translation. */
export interface PagingState {
  readonly cr0: bigint;
  readonly cr3: bigint;
  readonly cr4: bigint;
  readonly efer: bigint;
}

const CR0_PE = 1n;
const CR0_PG = 1n << 31n;
const CR4_PSE = 1n << 4n;
const CR4_PAE = 1n << 5n;
const CR4_LA57 = 1n << 12n;
const EFER_LMA = 1n << 10n;
const EFER_NXE = 1n << 11n;
const P = 1n;
const PS = 1n << 7n;
/** Physical-address bits of a 64-bit entry (bits 51:12); the walker masks MAXPHYADDR itself. */
const ADDR_52 = 0x000f_ffff_ffff_f000n;

export function pagingMode(s: PagingState): PagingMode {
  if ((s.cr0 & CR0_PG) === 0n || (s.cr0 & CR0_PE) === 0n) return "none";
  if ((s.efer & EFER_LMA) !== 0n) return (s.cr4 & CR4_LA57) !== 0n ? "5-level" : "4-level";
  return (s.cr4 & CR4_PAE) !== 0n ? "pae" : "32-bit";
}

/**
 * Guest-virtual (linear) to guest-physical addresses through one vCPU's own page tables, for a
 * debugger: supervisor read access, so no permission check can fail; a not-present or reserved
 * entry, or a table outside guest memory, is "unmapped" (undefined). A new instance per stop:
 * the guest may change its tables whenever it runs.
 */
export class LinearTranslator {
  readonly mode: PagingMode;
  private readonly long: PagingTables | null | undefined;

  constructor(
    private readonly memory: GuestMemory,
    private readonly state: PagingState,
  ) {
    this.mode = pagingMode(state);
    if (this.mode === "4-level" || this.mode === "5-level") {
      const root = Number(state.cr3 & ADDR_52);
      try {
        // The walker needs an allocator only to build tables; a one-page one at the root is never used.
        this.long = new PagingTables(memory, new TableAllocator(memory, root, 4096), {
          root,
          levels: this.mode === "5-level" ? 5 : 4,
          maxPhyAddr: 52,
          nxe: (state.efer & EFER_NXE) !== 0n,
          wp: false,
          smep: false,
          smap: false,
        });
      } catch {
        this.long = null;
      }
    }
  }

  /** The physical address of `linear`, or undefined when nothing is mapped there. */
  translate(linear: bigint): bigint | undefined {
    switch (this.mode) {
      case "none":
        // Real mode and protected mode without paging: linear = physical (32 bits wide, or 20
        // plus the wrap-around of real mode that the A20 line does not cut here).
        return linear & 0xffff_ffffn;
      case "32-bit":
        return this.walk32(linear & 0xffff_ffffn);
      case "pae":
        return this.walkPae(linear & 0xffff_ffffn);
      default: {
        if (!this.long) return undefined;
        const t = this.long.translate(BigInt.asUintN(64, linear));
        return t.ok && t.physical !== null ? t.physical : undefined;
      }
    }
  }

  /** Bytes from `linear` up to the end of its page, or to `max`: a physical run that needs no new walk. */
  static pageRemainder(linear: bigint, max: number): number {
    const left = Number(0x1000n - (linear & 0xfffn));
    return Math.min(left, max);
  }

  private read32(pa: bigint): bigint | undefined {
    const a = Number(pa);
    return this.memory.contains(a, 4) ? BigInt(this.memory.readU32(a)) : undefined;
  }

  private read64(pa: bigint): bigint | undefined {
    const a = Number(pa);
    return this.memory.contains(a, 8) ? this.memory.readU64(a) : undefined;
  }

  /** 32-bit paging (SDM 4.3): 1024-entry directory and tables of 4-byte entries; 4 MiB pages with CR4.PSE (PSE-36 high bits). */
  private walk32(la: bigint): bigint | undefined {
    const pde = this.read32((this.state.cr3 & 0xffff_f000n) + ((la >> 22n) & 0x3ffn) * 4n);
    if (pde === undefined || (pde & P) === 0n) return undefined;
    if ((pde & PS) !== 0n && (this.state.cr4 & CR4_PSE) !== 0n) {
      const high = ((pde >> 13n) & 0xffn) << 32n;
      return high | (pde & 0xffc0_0000n) | (la & 0x3f_ffffn);
    }
    const pte = this.read32((pde & 0xffff_f000n) + ((la >> 12n) & 0x3ffn) * 4n);
    if (pte === undefined || (pte & P) === 0n) return undefined;
    return (pte & 0xffff_f000n) | (la & 0xfffn);
  }

  /** PAE paging (SDM 4.4): four PDPTEs at CR3[31:5], then 512-entry tables of 8-byte entries; 2 MiB pages. */
  private walkPae(la: bigint): bigint | undefined {
    const pdpte = this.read64((this.state.cr3 & 0xffff_ffe0n) + ((la >> 30n) & 3n) * 8n);
    if (pdpte === undefined || (pdpte & P) === 0n) return undefined;
    const pde = this.read64((pdpte & ADDR_52) + ((la >> 21n) & 0x1ffn) * 8n);
    if (pde === undefined || (pde & P) === 0n) return undefined;
    if ((pde & PS) !== 0n) return (pde & 0x000f_ffff_ffe0_0000n) | (la & 0x1f_ffffn);
    const pte = this.read64((pde & ADDR_52) + ((la >> 12n) & 0x1ffn) * 8n);
    if (pte === undefined || (pte & P) === 0n) return undefined;
    return (pte & ADDR_52) | (la & 0xfffn);
  }
}

/**
 * The code byte `back` bytes before the instruction pointer `rip`, through the vCPU's own tables
 * (outside 64-bit code the pointer is an offset in CS, 16/32 bits wide); undefined when it is
 * before the segment's start, unmapped, or outside guest memory. For recognising the instruction
 * a vCPU has just retired.
 */
export function byteBeforeIp(
  memory: GuestMemory,
  rip: bigint,
  sregs: Pick<KvmSregs, "cs" | "cr0" | "cr3" | "cr4" | "efer">,
): (back: bigint) => number | undefined {
  const long = (sregs.efer & EFER_LMA) !== 0n && sregs.cs.l !== 0;
  const ip = long ? rip : rip & 0xffff_ffffn;
  const t = new LinearTranslator(memory, sregs);
  return (back) => {
    if (ip < back) return undefined;
    const a = (long ? 0n : sregs.cs.base) + ip - back;
    const pa = t.translate(long ? BigInt.asUintN(64, a) : a & 0xffff_ffffn);
    if (pa === undefined || pa > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
    const n = Number(pa);
    return memory.contains(n, 1) ? memory.readU8(n) : undefined;
  };
}

/**
 * Read up to `length` bytes at `linear`, page by page: stops at the first unmapped page or
 * physical address outside guest memory (the result is then shorter, possibly empty).
 */
export function readLinear(memory: GuestMemory, t: LinearTranslator, linear: bigint, length: number): Buffer {
  const parts: Buffer[] = [];
  let done = 0;
  let la = linear;
  while (done < length) {
    const n = LinearTranslator.pageRemainder(la, length - done);
    const pa = t.translate(la);
    if (pa === undefined || pa > BigInt(Number.MAX_SAFE_INTEGER) || !memory.contains(Number(pa), n)) break;
    parts.push(memory.read(Number(pa), n));
    done += n;
    la = BigInt.asUintN(64, la + BigInt(n));
  }
  return Buffer.concat(parts, done);
}

/**
 * The physical pieces [pa, length] covering `length` bytes at `linear`, or undefined when any
 * byte is unmapped (a write is all or nothing at the planning stage).
 */
export function planLinear(memory: GuestMemory, t: LinearTranslator, linear: bigint, length: number): { pa: number; length: number }[] | undefined {
  const out: { pa: number; length: number }[] = [];
  let done = 0;
  let la = linear;
  while (done < length) {
    const n = LinearTranslator.pageRemainder(la, length - done);
    const pa = t.translate(la);
    if (pa === undefined || pa > BigInt(Number.MAX_SAFE_INTEGER) || !memory.contains(Number(pa), n)) return undefined;
    out.push({ pa: Number(pa), length: n });
    done += n;
    la = BigInt.asUintN(64, la + BigInt(n));
  }
  return out;
}
