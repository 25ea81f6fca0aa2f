import { GdbStubError } from "./errors.js";
import type { Breakpoint, BreakpointResult, StopCause } from "./target.js";

/** DR7 R/Wn encodings (SDM Vol. 3B 17.2.4): 00 execute, 01 write, 10 I/O (CR4.DE), 11 read or write. */
export type SlotCondition = "execute" | "write" | "io" | "read-write";

/** One of DR0–DR3 as DR7 describes it. */
export interface DebugRegisterSlot {
  readonly address: bigint;
  readonly condition: SlotCondition;
  /** Bytes covered: 1, 2, 4 or 8, aligned to itself; execute slots are always 1. */
  readonly length: 1 | 2 | 4 | 8;
}

export interface DecodedDr7Slot extends DebugRegisterSlot {
  readonly local: boolean;
  readonly global: boolean;
}

const RW: Record<SlotCondition, bigint> = { execute: 0n, write: 1n, io: 2n, "read-write": 3n };
const RW_NAMES: readonly SlotCondition[] = ["execute", "write", "io", "read-write"];
// LENn: 00 one byte, 01 two, 11 four, 10 eight (the last only where the CPU supports it).
const LEN: Record<1 | 2 | 4 | 8, bigint> = { 1: 0n, 2: 1n, 4: 3n, 8: 2n };
const LEN_BYTES: readonly (1 | 2 | 4 | 8)[] = [1, 2, 8, 4];

/** DR7 bit 10 reads as 1 on every processor; writing it 0 is not architectural. */
export const DR7_FIXED_ONE = 0x400n;
/** DR7.GE: exact data-breakpoint match, recommended by the SDM where data breakpoints are used. */
export const DR7_GE = 1n << 9n;

/**
 * Encode DR7 for up to four slots (index = DR number; undefined = disabled). Slots are enabled
 * with their G bit: a VMM's breakpoints must survive the guest's hardware task switches, which
 * clear the L bits. Throws GDBSTUB_DEBUG_REGISTER on an execute slot with a length other
 * than 1 or a misaligned data slot (the CPU would silently watch a different range).
 */
export function encodeDr7(slots: readonly (DebugRegisterSlot | undefined)[]): bigint {
  if (slots.length > 4) throw new GdbStubError("GDBSTUB_DEBUG_REGISTER", `DR7 has four slots, got ${slots.length}`);
  let dr7 = DR7_FIXED_ONE;
  let data = false;
  slots.forEach((s, i) => {
    if (!s) return;
    checkSlot(s);
    const n = BigInt(i);
    dr7 |= 1n << (2n * n + 1n);
    dr7 |= RW[s.condition] << (16n + 4n * n);
    dr7 |= LEN[s.length] << (18n + 4n * n);
    if (s.condition !== "execute") data = true;
  });
  return data ? dr7 | DR7_GE : dr7;
}

/** The four slots a DR7 value enables (L or G set), with their debug addresses. */
export function decodeDr7(dr7: bigint, addresses: readonly bigint[]): (DecodedDr7Slot | undefined)[] {
  const out: (DecodedDr7Slot | undefined)[] = [];
  for (let i = 0n; i < 4n; i++) {
    const local = ((dr7 >> (2n * i)) & 1n) === 1n;
    const global = ((dr7 >> (2n * i + 1n)) & 1n) === 1n;
    if (!local && !global) {
      out.push(undefined);
      continue;
    }
    out.push({
      address: addresses[Number(i)] ?? 0n,
      condition: RW_NAMES[Number((dr7 >> (16n + 4n * i)) & 3n)]!,
      length: LEN_BYTES[Number((dr7 >> (18n + 4n * i)) & 3n)]!,
      local,
      global,
    });
  }
  return out;
}

function checkSlot(s: DebugRegisterSlot): void {
  if (s.condition === "execute" && s.length !== 1) {
    throw new GdbStubError("GDBSTUB_DEBUG_REGISTER", "an execute breakpoint has LEN 00 (length 1)");
  }
  if (![1, 2, 4, 8].includes(s.length) || s.address % BigInt(s.length) !== 0n || s.address < 0n || s.address >= 1n << 64n) {
    throw new GdbStubError("GDBSTUB_DEBUG_REGISTER", `slot at 0x${s.address.toString(16)} length ${s.length} is not aligned to its length`);
  }
}

/**
 * Cover [address, address + length) exactly with naturally aligned 1/2/4/8-byte pieces, largest
 * first, as few as possible. Watching more than the range would report accesses gdb did not ask for.
 */
export function splitRange(address: bigint, length: number, allowLength8 = true): { address: bigint; length: 1 | 2 | 4 | 8 }[] {
  if (!Number.isInteger(length) || length <= 0 || address < 0n || address + BigInt(length) > 1n << 64n) {
    throw new GdbStubError("GDBSTUB_DEBUG_REGISTER", `bad range 0x${address.toString(16)}+${length}`);
  }
  const out: { address: bigint; length: 1 | 2 | 4 | 8 }[] = [];
  let a = address;
  let left = length;
  while (left > 0) {
    const sizes: (1 | 2 | 4 | 8)[] = allowLength8 ? [8, 4, 2, 1] : [4, 2, 1];
    const s = sizes.find((z) => z <= left && a % BigInt(z) === 0n)!;
    out.push({ address: a, length: s });
    a += BigInt(s);
    left -= s;
  }
  return out;
}

/** What to load for KVM_SET_GUEST_DEBUG (with KVM_GUESTDBG_USE_HW_BP): `debugreg` is its 8-entry array. */
export interface DebugRegisterState {
  /** DR0–DR3. */
  readonly dr: readonly [bigint, bigint, bigint, bigint];
  readonly dr7: bigint;
  /** [DR0, DR1, DR2, DR3, 0, 0, 0, DR7]: kvm_guest_debug_arch.debugreg as KVM reads it. */
  readonly debugreg: readonly bigint[];
  /** True when any slot is enabled, i.e. KVM_GUESTDBG_USE_HW_BP is needed. */
  readonly active: boolean;
}

interface Slot extends DebugRegisterSlot {
  owners: Breakpoint[];
}

/**
 * The four debug-register slots as gdb's breakpoints use them. `sw` (Z0, when the host cannot
 * plant int3) and `hw` (Z1) take an execute slot; `write` (Z2) a write slot; `access` (Z4) a
 * read-write slot. x86 has no read-only condition, so `read` (Z3) is "unsupported": gdb then
 * uses an access watchpoint and filters by value itself. A watched range is split into aligned
 * pieces (SDM 17.2.5); it is inserted whole or not at all. Identical pieces share a slot.
 */
export class DebugRegisters {
  private readonly slots: (Slot | undefined)[] = [undefined, undefined, undefined, undefined];
  private readonly allowLength8: boolean;

  /** `allowLength8`: LEN=10 (8 bytes) is defined in IA-32e mode on current Intel and AMD CPUs; default true. */
  constructor(options: { allowLength8?: boolean } = {}) {
    this.allowLength8 = options.allowLength8 ?? true;
  }

  /** Slots in use (0–4). */
  get used(): number {
    return this.slots.filter(Boolean).length;
  }

  insert(bp: Breakpoint): BreakpointResult {
    const pieces = this.pieces(bp);
    if (typeof pieces === "string") return pieces;
    const plan: { piece: DebugRegisterSlot; index: number; shared: boolean }[] = [];
    const taken = new Set<number>();
    for (const piece of pieces) {
      const same = this.slots.findIndex((s) => s && s.address === piece.address && s.condition === piece.condition && s.length === piece.length);
      if (same >= 0) {
        plan.push({ piece, index: same, shared: true });
        continue;
      }
      const free = this.slots.findIndex((s, i) => !s && !taken.has(i));
      if (free < 0) return "no-slots";
      taken.add(free);
      plan.push({ piece, index: free, shared: false });
    }
    for (const { piece, index, shared } of plan) {
      if (shared) this.slots[index]!.owners.push(bp);
      else this.slots[index] = { ...piece, owners: [bp] };
    }
    return "ok";
  }

  remove(bp: Breakpoint): BreakpointResult {
    const pieces = this.pieces(bp);
    if (typeof pieces === "string") return pieces;
    let found = false;
    for (const piece of pieces) {
      const i = this.slots.findIndex((s) => s && s.address === piece.address && s.condition === piece.condition && s.length === piece.length);
      const slot = this.slots[i];
      if (!slot) continue;
      const k = slot.owners.findIndex((o) => o.kind === bp.kind && o.address === bp.address && o.length === bp.length);
      if (k < 0) continue;
      found = true;
      slot.owners.splice(k, 1);
      if (slot.owners.length === 0) this.slots[i] = undefined;
    }
    return found ? "ok" : "error";
  }

  clear(): void {
    this.slots.fill(undefined);
  }

  state(): DebugRegisterState {
    const dr = this.slots.map((s) => s?.address ?? 0n) as [bigint, bigint, bigint, bigint];
    const dr7 = encodeDr7(this.slots);
    return { dr, dr7, debugreg: [...dr, 0n, 0n, 0n, dr7], active: this.used > 0 };
  }

  /**
   * Which breakpoint a #DB with this DR6 reports (B0–B3, bits 0–3; SDM 17.2.3). The CPU may
   * set Bn for a slot that matched without being enabled, so only slots in use count.
   * Undefined when no slot of ours fired (a single step, or the guest's own debugging).
   */
  stopCause(dr6: bigint): StopCause | undefined {
    for (let i = 0; i < 4; i++) {
      const slot = this.slots[i];
      if (!slot || ((dr6 >> BigInt(i)) & 1n) === 0n) continue;
      const owner = slot.owners[0]!;
      switch (owner.kind) {
        case "sw":
          return { type: "swbreak" };
        case "hw":
          return { type: "hwbreak" };
        case "write":
          return { type: "watch", address: slot.address };
        default:
          return { type: "awatch", address: slot.address };
      }
    }
    return undefined;
  }

  private pieces(bp: Breakpoint): DebugRegisterSlot[] | BreakpointResult {
    if (bp.address < 0n || bp.address >= 1n << 64n) return "error";
    switch (bp.kind) {
      case "sw":
      case "hw":
        // The Z0/Z1 "kind" is the breakpoint instruction's size; an execute slot matches the
        // instruction's first byte whatever its length.
        return bp.length >= 1 && bp.length <= 15 ? [{ address: bp.address, condition: "execute", length: 1 }] : "error";
      case "read":
        return "unsupported";
      case "write":
      case "access": {
        if (!Number.isInteger(bp.length) || bp.length <= 0 || bp.length > 32 || bp.address + BigInt(bp.length) > 1n << 64n) return "error";
        const parts = splitRange(bp.address, bp.length, this.allowLength8);
        if (parts.length > 4) return "error";
        const condition: SlotCondition = bp.kind === "write" ? "write" : "read-write";
        return parts.map((p) => ({ ...p, condition }));
      }
      default:
        return "error";
    }
  }
}

/** One-shot helper: the slots for a list of breakpoints, or the first one that does not fit. */
export function allocateDebugRegisters(bps: readonly Breakpoint[], options: { allowLength8?: boolean } = {}): DebugRegisterState | { failed: Breakpoint; result: BreakpointResult } {
  const regs = new DebugRegisters(options);
  for (const bp of bps) {
    const result = regs.insert(bp);
    if (result !== "ok") return { failed: bp, result };
  }
  return regs.state();
}
