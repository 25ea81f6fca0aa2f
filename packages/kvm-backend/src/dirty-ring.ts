import { KVM_DIRTY_GFN_F_DIRTY, KVM_DIRTY_GFN_F_MASK, KVM_DIRTY_GFN_F_RESET, KvmDirtyGfnLayout } from "@tsvmm/abi";

/** A page KVM logged as written: `page` is the 4 KiB page index within memory slot `slot`. */
export interface DirtyPage {
  slot: number;
  /** Address space (0 unless the VM uses SMM's second address space). */
  addressSpace: number;
  page: number;
}

const ENTRY = KvmDirtyGfnLayout.size;
const FLAGS = KvmDirtyGfnLayout.offsetOf("flags");

/**
 * One vCPU's dirty ring (KVM_CAP_DIRTY_LOG_RING): an array of kvm_dirty_gfn shared with KVM.
 * KVM fills entries in order and marks each DIRTY; the VMM reads them from where it stopped last
 * time, and hands each back by marking it RESET. KVM_RESET_DIRTY_RINGS (Vm.resetDirtyRings) then
 * re-protects those pages and frees the entries. Entries must be collected strictly in order.
 */
export class DirtyRing {
  /** Entries in the ring. */
  readonly size: number;
  private fetch = 0;

  constructor(private readonly view: Buffer) {
    this.size = view.length / ENTRY;
  }

  /** Collect every entry KVM published since the last call into `out`; returns how many. */
  harvest(out: DirtyPage[]): number {
    let n = 0;
    for (;;) {
      const off = (this.fetch % this.size) * ENTRY;
      // A closed vCPU's mapping reads as empty.
      if (off + ENTRY > this.view.length) return n;
      const e = KvmDirtyGfnLayout.decode(this.view, off);
      if ((e.flags & KVM_DIRTY_GFN_F_MASK) !== KVM_DIRTY_GFN_F_DIRTY) return n;
      out.push({ slot: e.slot & 0xffff, addressSpace: e.slot >>> 16, page: Number(e.offset) });
      // Only the flags change hands; x86 stores are not reordered with the loads above.
      this.view.writeUInt32LE(KVM_DIRTY_GFN_F_RESET, off + FLAGS);
      this.fetch++;
      n++;
    }
  }

  /** Entries harvested so far (the ring's fetch index, which never wraps). */
  get fetched(): number {
    return this.fetch;
  }
}
