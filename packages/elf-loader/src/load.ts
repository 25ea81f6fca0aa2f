import type { GuestMemory } from "@tsvmm/abi";
import { fileRange, U64_LIMIT } from "./bytes.js";
import { ET_DYN, PF_X, PT_LOAD } from "./elf/constants.js";
import { parseElf } from "./elf/parse.js";
import type { ElfFile } from "./elf/types.js";
import { hex, LoadError } from "./errors.js";
import { planRelocations, type RelocationWrite } from "./pie.js";

export interface LoadOptions {
  /** Place segments at p_paddr ("physical", the default: what a kernel booted with paging off expects) or p_vaddr. */
  readonly addressing?: "physical" | "virtual";
  /** Added to every segment address and to the entry point; may be negative (bigint). Default 0. */
  readonly offset?: bigint | number;
  /** For ET_DYN images: apply relocations with bias = offset. Default true. */
  readonly relocate?: boolean;
  /**
   * Guest ranges the VMM keeps for itself (the boot contract's GDT, page tables, boot information):
   * a segment overlapping one is LOAD_OVERLAPS_RESERVED, refused before anything is written.
   */
  readonly reserved?: readonly ReservedRange[];
  /**
   * Refuse an image whose entry (e_entry + offset) lies in no loaded PF_X segment
   * (LOAD_ENTRY_OUTSIDE_SEGMENTS). Default true; a boot protocol with its own entry (PVH) turns
   * it off and checks that entry with {@link checkEntryInSegments}.
   */
  readonly checkEntry?: boolean;
}

export interface ReservedRange {
  readonly address: number;
  readonly size: number;
  /** Named in the error message. */
  readonly what: string;
}

export interface LoadedSegment {
  /** Index of the program header. */
  readonly index: number;
  /** p_flags (PF_X, PF_W, PF_R). */
  readonly flags: number;
  readonly guestAddress: number;
  readonly fileOffset: number;
  readonly fileSize: number;
  /** fileSize plus the zeroed bss tail. */
  readonly memorySize: number;
  /** The segment's p_vaddr, for translating relocation targets. */
  readonly vaddr: bigint;
}

/** Everything a load will do, checked against the file and guest memory, before any write. */
export interface ElfLoadPlan {
  readonly elf: ElfFile;
  /** e_entry + offset. */
  readonly entry: bigint;
  /** The relocation bias (the offset) applied to ET_DYN images. */
  readonly bias: bigint;
  readonly segments: readonly LoadedSegment[];
  readonly relocations: readonly RelocationWrite[];
  /** Lowest guest address written. */
  readonly lowestAddress: number;
  /** First guest address above everything written. */
  readonly end: number;
}

export interface LoadResult {
  readonly entry: bigint;
  readonly bias: bigint;
  readonly segments: readonly LoadedSegment[];
  readonly lowestAddress: number;
  /** Last byte written (end - 1). */
  readonly highestAddress: number;
  /** First guest address above everything written. */
  readonly end: number;
  /** Number of relocations applied. */
  readonly relocations: number;
}

function toOffset(v: bigint | number | undefined): bigint {
  if (v === undefined) return 0n;
  if (typeof v === "bigint") return v;
  if (!Number.isSafeInteger(v)) throw new LoadError("LOAD_BAD_OPTION", `offset: ${String(v)} is not a safe integer`);
  return BigInt(v);
}

/**
 * Check every PT_LOAD segment against guest memory and each other, and work out relocations,
 * without writing. Throws {@link LoadError}, {@link RelocationError} or {@link ElfError}.
 */
export function planElfLoad(memory: GuestMemory, elf: ElfFile, options: LoadOptions = {}): ElfLoadPlan {
  const physical = (options.addressing ?? "physical") === "physical";
  if (options.addressing !== undefined && options.addressing !== "physical" && options.addressing !== "virtual") {
    throw new LoadError("LOAD_BAD_OPTION", `addressing: ${String(options.addressing)} is neither "physical" nor "virtual"`);
  }
  const offset = toOffset(options.offset);
  const segments: LoadedSegment[] = [];
  for (const ph of elf.programHeaders) {
    if (ph.type !== PT_LOAD || ph.memsz === 0n) continue;
    const what = `program header ${ph.index} (PT_LOAD) ${physical ? "p_paddr" : "p_vaddr"}`;
    const addr = (physical ? ph.paddr : ph.vaddr) + offset;
    if (addr < 0n || addr >= U64_LIMIT) {
      throw new LoadError("LOAD_ADDRESS_OVERFLOW", `${what} ${hex(physical ? ph.paddr : ph.vaddr)} + offset ${offset} is outside 0..2^64`);
    }
    const end = addr + ph.memsz;
    if (end > BigInt(Number.MAX_SAFE_INTEGER) || !memory.contains(Number(addr), Number(ph.memsz))) {
      throw new LoadError("LOAD_OUTSIDE_MEMORY", `${what}: ${hex(addr)}..${hex(end)} is not inside guest memory`);
    }
    const rg = fileRange(ph.offset, ph.filesz, elf.bytes.length, `program header ${ph.index} p_offset/p_filesz`);
    segments.push({ index: ph.index, flags: ph.flags, guestAddress: Number(addr), fileOffset: rg.offset, fileSize: rg.size, memorySize: Number(ph.memsz), vaddr: ph.vaddr });
  }
  if (segments.length === 0) throw new LoadError("LOAD_NO_SEGMENTS", "program headers: no PT_LOAD segment with p_memsz > 0");
  const sorted = [...segments].sort((a, b) => a.guestAddress - b.guestAddress);
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1]!;
    const b = sorted[i]!;
    if (b.guestAddress < a.guestAddress + a.memorySize) {
      throw new LoadError("LOAD_SEGMENTS_OVERLAP", `program headers ${a.index} and ${b.index}: segments overlap at ${hex(b.guestAddress)}`);
    }
  }
  for (const r of checkReserved(options.reserved)) {
    // A range of no bytes keeps nothing for the VMM, wherever it points.
    const s = r.size === 0 ? undefined : segments.find((x) => x.memorySize > 0 && x.guestAddress < r.address + r.size && r.address < x.guestAddress + x.memorySize);
    if (s !== undefined) {
      throw new LoadError(
        "LOAD_OVERLAPS_RESERVED",
        `program header ${s.index}: ${hex(s.guestAddress)}..${hex(s.guestAddress + s.memorySize)} overlaps ${r.what} at ${hex(r.address)}..${hex(r.address + r.size)}, which the VMM keeps for itself`,
      );
    }
  }
  const last = sorted[sorted.length - 1]!;
  const entry = elf.header.entry + offset;
  if (entry < 0n || entry >= U64_LIMIT) throw new LoadError("LOAD_ADDRESS_OVERFLOW", `e_entry ${hex(elf.header.entry)} + offset ${offset} is outside 0..2^64`);
  if (options.checkEntry !== false) checkEntryInSegments(segments, entry, "e_entry");
  const relocations = elf.header.type === ET_DYN && options.relocate !== false ? planRelocations(elf, segments, offset) : [];
  return { elf, entry, bias: offset, segments, relocations, lowestAddress: sorted[0]!.guestAddress, end: last.guestAddress + last.memorySize };
}

function checkReserved(reserved: readonly ReservedRange[] | undefined): readonly ReservedRange[] {
  if (reserved === undefined) return [];
  if (!Array.isArray(reserved)) throw new LoadError("LOAD_BAD_OPTION", "reserved: not an array");
  for (const r of reserved as readonly ReservedRange[]) {
    if (!Number.isSafeInteger(r?.address) || r.address < 0 || !Number.isSafeInteger(r.size) || r.size < 0) {
      throw new LoadError("LOAD_BAD_OPTION", `reserved: ${String(r?.what)} needs a non-negative safe integer address and size`);
    }
  }
  return reserved;
}

/**
 * Throw LOAD_ENTRY_OUTSIDE_SEGMENTS unless `entry` (a guest address, as the segments were placed)
 * lies inside a loaded segment with PF_X: a kernel must start in its own code.
 */
export function checkEntryInSegments(segments: readonly LoadedSegment[], entry: bigint | number, what: string): void {
  const e = BigInt(entry);
  const hit = segments.some((s) => (s.flags & PF_X) !== 0 && e >= BigInt(s.guestAddress) && e < BigInt(s.guestAddress + s.memorySize));
  if (!hit) {
    const ranges = segments.map((s) => `${hex(s.guestAddress)}..${hex(s.guestAddress + s.memorySize)}${(s.flags & PF_X) !== 0 ? "" : " (not executable)"}`).join(", ");
    throw new LoadError("LOAD_ENTRY_OUTSIDE_SEGMENTS", `${what} ${hex(e)} lies in no loaded executable segment (${ranges})`);
  }
}

/** Carry out a plan from {@link planElfLoad}: copy file bytes, zero bss tails, apply relocations. */
export function applyElfLoad(memory: GuestMemory, plan: ElfLoadPlan): LoadResult {
  const bytes = plan.elf.bytes;
  for (const s of plan.segments) {
    if (s.fileSize > 0) memory.write(s.guestAddress, bytes.subarray(s.fileOffset, s.fileOffset + s.fileSize));
    // Guest memory may be reused, so the bss tail is zeroed rather than assumed zero.
    if (s.memorySize > s.fileSize) memory.fill(s.guestAddress + s.fileSize, s.memorySize - s.fileSize, 0);
  }
  for (const w of plan.relocations) {
    if (w.width === 8) memory.writeU64(w.gpa, w.value);
    else memory.writeU32(w.gpa, Number(w.value));
  }
  return {
    entry: plan.entry,
    bias: plan.bias,
    segments: plan.segments,
    lowestAddress: plan.lowestAddress,
    highestAddress: plan.end - 1,
    end: plan.end,
    relocations: plan.relocations.length,
  };
}

/**
 * Load an ELF image's PT_LOAD segments into guest memory. Everything is validated before the
 * first write, so a failed load leaves guest memory untouched.
 */
export function loadElf(memory: GuestMemory, image: Uint8Array | ElfFile, options: LoadOptions = {}): LoadResult {
  const elf = image instanceof Uint8Array ? parseElf(image) : image;
  return applyElfLoad(memory, planElfLoad(memory, elf, options));
}
