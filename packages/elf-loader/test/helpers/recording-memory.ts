import type { GuestAddress, GuestMemory, GuestMemoryMap, GuestRegion, StructLayout } from "@tsvmm/abi";

export interface RecordedWrite {
  gpa: number;
  length: number;
  inside: boolean;
}

/**
 * GuestMemory that records every write (and every zero-copy slice, which could be written
 * through) and whether it lay inside the real memory, before delegating.
 */
export class RecordingMemory implements GuestMemory {
  readonly writes: RecordedWrite[] = [];
  constructor(readonly inner: GuestMemoryMap) {}
  get regions(): readonly GuestRegion[] {
    return this.inner.regions;
  }
  get totalSize(): number {
    return this.inner.totalSize;
  }
  get end(): number {
    return this.inner.end;
  }
  private note(gpa: GuestAddress, length: number): void {
    this.writes.push({ gpa: Number(gpa), length, inside: this.inner.contains(gpa, length) });
  }
  reset(): void {
    this.writes.length = 0;
  }
  contains(gpa: GuestAddress, length?: number): boolean {
    return this.inner.contains(gpa, length);
  }
  slice(gpa: GuestAddress, length: number): Buffer {
    this.note(gpa, length);
    return this.inner.slice(gpa, length);
  }
  read(gpa: GuestAddress, length: number): Buffer {
    return this.inner.read(gpa, length);
  }
  write(gpa: GuestAddress, data: Uint8Array): void {
    this.note(gpa, data.length);
    this.inner.write(gpa, data);
  }
  fill(gpa: GuestAddress, length: number, value: number): void {
    this.note(gpa, length);
    this.inner.fill(gpa, length, value);
  }
  readU8(gpa: GuestAddress): number {
    return this.inner.readU8(gpa);
  }
  readU16(gpa: GuestAddress): number {
    return this.inner.readU16(gpa);
  }
  readU32(gpa: GuestAddress): number {
    return this.inner.readU32(gpa);
  }
  readU64(gpa: GuestAddress): bigint {
    return this.inner.readU64(gpa);
  }
  writeU8(gpa: GuestAddress, value: number): void {
    this.note(gpa, 1);
    this.inner.writeU8(gpa, value);
  }
  writeU16(gpa: GuestAddress, value: number): void {
    this.note(gpa, 2);
    this.inner.writeU16(gpa, value);
  }
  writeU32(gpa: GuestAddress, value: number): void {
    this.note(gpa, 4);
    this.inner.writeU32(gpa, value);
  }
  writeU64(gpa: GuestAddress, value: bigint | number): void {
    this.note(gpa, 8);
    this.inner.writeU64(gpa, value);
  }
  readObj<T>(layout: StructLayout<T>, gpa: GuestAddress): T {
    return this.inner.readObj(layout, gpa);
  }
  writeObj<T>(layout: StructLayout<T>, gpa: GuestAddress, value: T): void {
    this.note(gpa, layout.size);
    this.inner.writeObj(layout, gpa, value);
  }
}
