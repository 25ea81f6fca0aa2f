import { EptError } from "./errors.js";
import type { EptPageAttributes } from "./format.js";
import type { EptTables, Mapping } from "./tables.js";

// An EPT permission map as KVM memory slots: the seam where EPT-style policy meets a KVM that owns
// the real EPT. KVM slots can say "present" and "read-only" but not "no read" or "no execute", so
// this is the honest subset: readable pages become slots (read-only where the EPT denies writes,
// so a guest write exits to the VMM like an EPT violation), non-readable pages stay holes (every
// access exits as MMIO), and denied execute is reported as lost rather than silently dropped.

export interface DerivedSlot {
  readonly base: number;
  readonly size: number;
  readonly readonly: boolean;
}

export interface SlotDerivation {
  readonly slots: DerivedSlot[];
  /** Readable ranges whose EPT entries deny execute: KVM cannot enforce that. */
  readonly executeDeniedLost: { base: number; size: number }[];
}

/**
 * Coalesces the EPT leaves (in address order) into slots: a slot grows while the next leaf is
 * contiguous in both guest-physical and output address and has the same write permission.
 * KVM slots are backed by fresh host memory, so the map must be an identity one (output = input).
 */
export function toMemorySlots(ept: EptTables): SlotDerivation {
  const slots: { base: number; size: number; readonly: boolean }[] = [];
  const lost: { base: number; size: number }[] = [];
  let prev: Mapping<EptPageAttributes> | undefined;
  for (const m of ept.mappings()) {
    if (m.physical !== m.address) {
      throw new EptError("EPT_NOT_IDENTITY", `EPT leaf 0x${m.address.toString(16)} -> 0x${m.physical.toString(16)} is not an identity mapping`);
    }
    if (!m.attributes.read) continue;
    const base = Number(m.address);
    const ro = !m.attributes.write;
    if (!m.attributes.execute) {
      const l = lost[lost.length - 1];
      if (l !== undefined && l.base + l.size === base) l.size += m.size;
      else lost.push({ base, size: m.size });
    }
    const last = slots[slots.length - 1];
    const contiguous = prev?.attributes.read === true && prev.address + BigInt(prev.size) === m.address;
    if (last !== undefined && contiguous && last.readonly === ro) last.size += m.size;
    else slots.push({ base, size: m.size, readonly: ro });
    prev = m;
  }
  return { slots, executeDeniedLost: lost };
}
