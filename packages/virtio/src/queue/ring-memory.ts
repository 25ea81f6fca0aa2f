import { endianness } from "node:os";

const LITTLE = endianness() === "LE";

/**
 * A validated window on one ring part in guest memory. Index and flag fields that the other side
 * polls (avail/used idx, event indexes, packed descriptor flags) are accessed as single aligned
 * 16-bit Atomics operations: a Buffer.writeUInt16LE is two byte stores, and a driver polling the
 * field in between would see a torn index.
 */
export class RingMemory {
  readonly buf: Buffer;
  private readonly u16: Uint16Array | undefined;
  constructor(buf: Buffer) {
    this.buf = buf;
    this.u16 = LITTLE && buf.byteOffset % 2 === 0 ? new Uint16Array(buf.buffer, buf.byteOffset, buf.length >>> 1) : undefined;
  }
  load16(off: number): number {
    const a = this.u16;
    return a !== undefined ? Atomics.load(a, off >>> 1) : this.buf.readUInt16LE(off);
  }
  /**
   * A plain aligned 16-bit load, for fields the other side does not change while we read them
   * (an avail ring entry, published by the idx store after it and read after we loaded that idx).
   */
  read16(off: number): number {
    const a = this.u16;
    return a !== undefined ? a[off >>> 1]! : this.buf.readUInt16LE(off);
  }
  store16(off: number, v: number): void {
    const a = this.u16;
    if (a !== undefined) Atomics.store(a, off >>> 1, v);
    else this.buf.writeUInt16LE(v & 0xffff, off);
  }
}

const fenceCell = new Int32Array(new SharedArrayBuffer(4));

/**
 * A full memory barrier. x86-64 (the only host KVM tsvmm targets) is TSO: loads are not reordered
 * with loads, stores not with stores, which covers "read avail idx, then the ring" and "write the
 * used element, then the used idx". The one reordering TSO allows is a later load passing an
 * earlier store; event-idx needs that ordered (publish our index, then read theirs), so those two
 * places call this: a seq-cst read-modify-write is a locked instruction, a full fence on x86.
 */
export function fence(): void {
  Atomics.add(fenceCell, 0, 0);
}
