import { KvmCoalescedMmioLayout, KvmCoalescedMmioRingLayout } from "@tsvmm/abi";
import { KvmError } from "./errors.js";

/** The ring is one page of the vCPU fd's mmap space (x86 pages are 4 KiB). */
export const COALESCED_RING_BYTES = 4096;

const HEAD = KvmCoalescedMmioRingLayout.size;
const ENTRY = KvmCoalescedMmioLayout.size;
const FIRST = KvmCoalescedMmioRingLayout.offsetOf("first");
const LAST = KvmCoalescedMmioRingLayout.offsetOf("last");
const ADDR = KvmCoalescedMmioLayout.offsetOf("physAddr");
const LEN = KvmCoalescedMmioLayout.offsetOf("len");
const PIO = KvmCoalescedMmioLayout.offsetOf("pio");
const DATA = KvmCoalescedMmioLayout.offsetOf("data");
// data[] is the last member: what follows its offset is its size (8).
const DATA_MAX = ENTRY - DATA;

/**
 * Receives one queued guest write: `addr` is the port (pio) or guest-physical address, `data` its
 * bytes (the access size), a Buffer owned by the ring and valid only during the call.
 */
export type CoalescedSink = (addr: number, data: Buffer, pio: boolean) => void;

/**
 * The VM's coalesced I/O ring (struct kvm_coalesced_mmio_ring), read through a vCPU's mapping.
 * Guest writes to registered zones (Vm.registerCoalescedPio/Mmio) are queued here by KVM instead of
 * exiting; when the ring is full the next such write exits as ordinary port I/O or MMIO.
 *
 * One consumer only: KVM writes entries and then `last`; the consumer reads entries from `first`
 * up to `last` and then stores `first`, which gives the entry back. The queued writes happened
 * before any exit that follows them, so a VMM that drains before it handles any exit, and before
 * it touches the devices behind the zones in any other way, keeps the guest's order of accesses.
 */
export class CoalescedRing {
  /** Entries the page holds; KVM keeps one unused, so at most `capacity - 1` are ever queued. */
  readonly capacity: number;
  private readonly words: Int32Array;
  private readonly view: DataView;
  private readonly scratch: Buffer[] = [];
  private draining = false;

  /** @internal Created by Vm.coalescedRing over the ring page of a vCPU mapping. */
  constructor(private readonly page: Buffer) {
    if (page.length < COALESCED_RING_BYTES) throw new KvmError("KVM_INVALID_ARGUMENT", `the coalesced ring needs a ${COALESCED_RING_BYTES}-byte page, got ${page.length}`);
    this.capacity = Math.floor((COALESCED_RING_BYTES - HEAD) / ENTRY);
    // Atomics order the index accesses against the entry reads (KVM publishes `last` after the
    // entry with a write barrier; the entry must not be read before `last` is).
    this.words = new Int32Array(page.buffer, page.byteOffset, HEAD / 4);
    this.view = new DataView(page.buffer, page.byteOffset, COALESCED_RING_BYTES);
    for (let n = 1; n <= DATA_MAX; n++) this.scratch[n] = Buffer.alloc(n);
  }

  /** True when the mapping is gone (its vCPU was closed): the ring then reads as empty. */
  get detached(): boolean {
    return this.page.length === 0;
  }

  /** Entries queued and not yet drained. */
  get pending(): number {
    if (this.detached) return 0;
    const first = Atomics.load(this.words, FIRST / 4) >>> 0;
    const last = Atomics.load(this.words, LAST / 4) >>> 0;
    this.check(first, last);
    return (last - first + this.capacity) % this.capacity;
  }

  /**
   * Hand every queued write to `sink`, oldest first, giving each entry back to KVM once `sink`
   * returned (or threw: a throwing sink ends the drain, and its entry counts as consumed). A drain
   * started from inside `sink` returns 0 at once: the outer one goes on in order. Returns how
   * many writes were handed over.
   */
  drain(sink: CoalescedSink): number {
    if (this.draining || this.detached) return 0;
    const w = this.words;
    let first = Atomics.load(w, FIRST / 4) >>> 0;
    let last = Atomics.load(w, LAST / 4) >>> 0;
    this.check(first, last);
    if (first === last) return 0;
    this.draining = true;
    let n = 0;
    try {
      while (first !== last) {
        const at = HEAD + first * ENTRY;
        const v = this.view;
        const addr = v.getUint32(at + ADDR, true) + v.getUint32(at + ADDR + 4, true) * 0x1_0000_0000;
        // KVM copies at most 8 bytes (the access size); anything else would be a kernel bug.
        const len = Math.min(Math.max(v.getUint32(at + LEN, true), 1), DATA_MAX);
        const data = this.scratch[len]!;
        this.page.copy(data, 0, at + DATA, at + DATA + len);
        const pio = v.getUint32(at + PIO, true) !== 0;
        first = (first + 1) % this.capacity;
        n++;
        Atomics.store(w, FIRST / 4, first);
        sink(addr, data, pio);
        // Writes queued while the sink ran are drained too: they came after the ones before.
        if (first === last) last = Atomics.load(w, LAST / 4) >>> 0;
      }
    } finally {
      this.draining = false;
    }
    return n;
  }

  private check(first: number, last: number): void {
    if (first >= this.capacity || last >= this.capacity) {
      throw new KvmError("KVM_INVALID_ARGUMENT", `coalesced ring indices out of range: first ${first}, last ${last}, capacity ${this.capacity}`);
    }
  }
}
