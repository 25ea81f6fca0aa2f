import { CpuidError } from "./errors.js";

/** `kvm_cpuid_entry2.flags`: the subleaf (ECX input) selects the entry. Spelled as in the kernel. */
export const KVM_CPUID_FLAG_SIGNIFCANT_INDEX = 1;
/** Obsolete KVM flags, kept so entries read back from KVM round-trip unchanged. */
export const KVM_CPUID_FLAG_STATEFUL_FUNC = 2;
export const KVM_CPUID_FLAG_STATE_READ_NEXT = 4;

export type Register = "eax" | "ebx" | "ecx" | "edx";
export const REGISTERS: readonly Register[] = ["eax", "ebx", "ecx", "edx"];

export interface CpuidRegs {
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}

export interface CpuidEntry extends CpuidRegs {
  leaf: number;
  subleaf: number;
  /** KVM flags; bit 0 (KVM_CPUID_FLAG_SIGNIFCANT_INDEX) is shared by every subleaf of a leaf. */
  flags: number;
}

/** Which out-of-range rule `lookup` applies. */
export type Vendor = "intel" | "amd";

/**
 * Leaves whose output depends on ECX. This is the set KVM marks significant in its supported CPUID,
 * so a table built without flags behaves like one read back from KVM.
 */
const INDEXED_LEAVES = new Set([
  0x4, 0x7, 0xb, 0xd, 0xf, 0x10, 0x12, 0x14, 0x17, 0x18, 0x1a, 0x1b, 0x1d, 0x1e, 0x1f, 0x20, 0x23, 0x24,
  0x8000001d, 0x80000020, 0x80000026,
]);

export function isIndexedLeaf(leaf: number): boolean {
  return INDEXED_LEAVES.has(leaf);
}

const ZERO: CpuidRegs = Object.freeze({ eax: 0, ebx: 0, ecx: 0, edx: 0 });

export function checkU32(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new CpuidError("CPUID_INVALID_VALUE", `${what} must be an integer in [0, 0xffffffff], got ${String(value)}`);
  }
  return value;
}

interface LeafSlot {
  flags: number;
  subleaves: Map<number, CpuidRegs>;
}

export function hex(n: number): string {
  return `0x${n.toString(16).padStart(8, "0")}`;
}

/**
 * A CPUID table: (leaf, subleaf) -> eax/ebx/ecx/edx. A leaf without the significant-index flag has
 * one entry (stored at subleaf 0) that answers every subleaf, as on hardware and in KVM.
 * Register values are always unsigned 32-bit numbers.
 */
export class CpuidTable {
  readonly #leaves = new Map<number, LeafSlot>();

  constructor(entries: Iterable<Partial<CpuidEntry> & CpuidRegs & { leaf: number }> = []) {
    for (const e of entries) {
      this.set(e.leaf, e.subleaf ?? 0, e, e.flags === undefined ? undefined : { flags: e.flags });
    }
  }

  /**
   * Sets one entry. `flags` defaults to the leaf's existing flags, else to significant for the
   * leaves that are indexed on hardware. Setting a subleaf other than 0 of a leaf that is not
   * significant is refused: no CPUID input could reach it.
   */
  set(leaf: number, subleaf: number, regs: CpuidRegs, options?: { flags?: number }): this {
    checkU32(leaf, "leaf");
    checkU32(subleaf, "subleaf");
    const value: CpuidRegs = {
      eax: checkU32(regs.eax, `eax of leaf ${hex(leaf)}`),
      ebx: checkU32(regs.ebx, `ebx of leaf ${hex(leaf)}`),
      ecx: checkU32(regs.ecx, `ecx of leaf ${hex(leaf)}`),
      edx: checkU32(regs.edx, `edx of leaf ${hex(leaf)}`),
    };
    let slot = this.#leaves.get(leaf);
    const flags =
      options?.flags !== undefined
        ? checkU32(options.flags, "flags")
        : (slot?.flags ?? (isIndexedLeaf(leaf) ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0));
    const significant = (flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) !== 0;
    if (!significant && subleaf !== 0) {
      throw new CpuidError(
        "CPUID_SUBLEAF_NOT_SIGNIFICANT",
        `leaf ${hex(leaf)} is not subleaf-significant, so subleaf ${subleaf} cannot be set (set flags: 1 first)`,
      );
    }
    if (slot === undefined) {
      slot = { flags, subleaves: new Map() };
      this.#leaves.set(leaf, slot);
    } else if (slot.flags !== flags) {
      if (!significant && [...slot.subleaves.keys()].some((s) => s !== 0)) {
        throw new CpuidError(
          "CPUID_SUBLEAF_NOT_SIGNIFICANT",
          `leaf ${hex(leaf)} has subleaves other than 0; it cannot become subleaf-insignificant`,
        );
      }
      slot.flags = flags;
    }
    slot.subleaves.set(subleaf, value);
    return this;
  }

  /** Changes one register of an existing entry (or of a zero entry created on demand). */
  setRegister(leaf: number, subleaf: number, reg: Register, value: number): this {
    const cur = this.get(leaf, subleaf) ?? ZERO;
    return this.set(leaf, this.isSignificant(leaf) ? subleaf : 0, { ...cur, [reg]: value });
  }

  /** True when the leaf's entries are selected by subleaf. */
  isSignificant(leaf: number): boolean {
    const slot = this.#leaves.get(leaf);
    if (slot !== undefined) return (slot.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) !== 0;
    return isIndexedLeaf(leaf);
  }

  flagsOf(leaf: number): number | undefined {
    return this.#leaves.get(leaf)?.flags;
  }

  hasLeaf(leaf: number): boolean {
    return this.#leaves.has(leaf);
  }

  /** The stored entry answering (leaf, subleaf), or undefined: no out-of-range rules applied. */
  get(leaf: number, subleaf = 0): CpuidRegs | undefined {
    const slot = this.#leaves.get(leaf);
    if (slot === undefined) return undefined;
    const key = (slot.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) !== 0 ? subleaf : 0;
    const v = slot.subleaves.get(key);
    return v === undefined ? undefined : { ...v };
  }

  delete(leaf: number, subleaf?: number): boolean {
    const slot = this.#leaves.get(leaf);
    if (slot === undefined) return false;
    if (subleaf === undefined) return this.#leaves.delete(leaf);
    const ok = slot.subleaves.delete(subleaf);
    if (slot.subleaves.size === 0) this.#leaves.delete(leaf);
    return ok;
  }

  /** Subleaf numbers stored for a leaf, ascending. */
  subleaves(leaf: number): number[] {
    const slot = this.#leaves.get(leaf);
    return slot === undefined ? [] : [...slot.subleaves.keys()].sort((a, b) => a - b);
  }

  /** Leaf numbers, ascending. */
  leaves(): number[] {
    return [...this.#leaves.keys()].sort((a, b) => a - b);
  }

  /** Every entry, ordered by leaf then subleaf (the order is part of the fingerprint). */
  entries(): CpuidEntry[] {
    const out: CpuidEntry[] = [];
    for (const leaf of this.leaves()) {
      const slot = this.#leaves.get(leaf)!;
      for (const subleaf of this.subleaves(leaf)) {
        out.push({ leaf, subleaf, flags: slot.flags, ...slot.subleaves.get(subleaf)! });
      }
    }
    return out;
  }

  get size(): number {
    let n = 0;
    for (const slot of this.#leaves.values()) n += slot.subleaves.size;
    return n;
  }

  clone(): CpuidTable {
    return new CpuidTable(this.entries());
  }

  /** CPUID.0:EAX, or undefined when leaf 0 is absent. */
  get maxBasicLeaf(): number | undefined {
    return this.get(0)?.eax;
  }

  /** CPUID.80000000H:EAX, or undefined when that leaf is absent. */
  get maxExtendedLeaf(): number | undefined {
    return this.get(0x80000000)?.eax;
  }

  /** The vendor rule the table's own leaf 0 implies: AMD and Hygon answer zeros out of range. */
  get vendor(): Vendor {
    const l0 = this.get(0);
    if (l0 === undefined) return "intel";
    const s = regsToString([l0.ebx, l0.edx, l0.ecx]);
    return s === "AuthenticAMD" || s === "HygonGenuine" ? "amd" : "intel";
  }

  /**
   * What CPUID(leaf, subleaf) returns on a processor programmed with this table.
   *
   * - A stored entry answers directly (any subleaf for a leaf that is not subleaf-significant).
   * - A leaf inside its range (basic: <= CPUID.0:EAX; extended: <= CPUID.80000000H:EAX; hypervisor
   *   0x4000xx00 and 0xC0000000 ranges likewise) that has no entry returns zeros.
   * - Out of range, Intel returns "the data for the highest basic information leaf" (SDM Vol. 2A,
   *   CPUID: "If a value entered for CPUID.EAX is higher than the maximum input value for basic or
   *   extended function for that processor then the data for the highest basic information leaf is
   *   returned"), looked up with the caller's subleaf; AMD returns zeros (APM Vol. 3, CPUID).
   * - Leaves 0xB/0x1F past their last level still report ECX[7:0] = subleaf and EDX = x2APIC id.
   */
  lookup(leaf: number, subleaf = 0, vendor: Vendor = this.vendor): CpuidRegs {
    checkU32(leaf, "leaf");
    checkU32(subleaf, "subleaf");
    let fn = leaf;
    let found = this.get(leaf, subleaf);
    if (found === undefined && vendor === "intel" && this.#outOfRange(leaf)) {
      const max = this.maxBasicLeaf;
      if (max !== undefined) {
        fn = max;
        found = this.get(max, subleaf);
      }
    }
    if (found !== undefined) return found;
    if (fn === 0xb || fn === 0x1f) {
      const level0 = this.get(fn, 0);
      if (level0 !== undefined) return { eax: 0, ebx: 0, ecx: subleaf & 0xff, edx: level0.edx };
    }
    return { ...ZERO };
  }

  #outOfRange(leaf: number): boolean {
    let rangeBase: number;
    if (leaf >= 0x40000000 && leaf <= 0x4fffffff) rangeBase = leaf & 0xffffff00;
    else if (leaf >= 0xc0000000) rangeBase = 0xc0000000;
    else rangeBase = leaf >= 0x80000000 ? 0x80000000 : 0;
    const range = this.get(rangeBase);
    return range === undefined || leaf > range.eax;
  }
}

/** Packs ASCII register values (little-endian each) into a string, stopping at the first NUL. */
export function regsToString(regs: readonly number[]): string {
  let s = "";
  for (const r of regs) {
    for (let i = 0; i < 4; i++) {
      const c = (r >>> (8 * i)) & 0xff;
      if (c === 0) return s;
      s += String.fromCharCode(c);
    }
  }
  return s;
}
