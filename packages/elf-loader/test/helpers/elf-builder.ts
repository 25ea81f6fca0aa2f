// A small ELF writer for cases gcc cannot easily make (ELF32 fallback seed, crafted layouts).
export interface BuildSegment {
  type?: number;
  vaddr: bigint;
  paddr?: bigint;
  data: Uint8Array;
  memsz?: bigint;
  flags?: number;
  align?: bigint;
}

export interface BuildElf {
  class: 32 | 64;
  type?: number;
  machine?: number;
  entry: bigint;
  segments: BuildSegment[];
}

/** Lay out header, program headers, then each segment's bytes (4-byte aligned). No sections. */
export function buildElf(spec: BuildElf): Buffer {
  const is64 = spec.class === 64;
  const ehsize = is64 ? 64 : 52;
  const phentsize = is64 ? 56 : 32;
  let off = ehsize + phentsize * spec.segments.length;
  const offsets: number[] = [];
  for (const s of spec.segments) {
    off = (off + 7) & ~7;
    offsets.push(off);
    off += s.data.length;
  }
  const b = Buffer.alloc(off);
  b.set([0x7f, 0x45, 0x4c, 0x46, is64 ? 2 : 1, 1, 1, 0]);
  b.writeUInt16LE(spec.type ?? 2, 16);
  b.writeUInt16LE(spec.machine ?? (is64 ? 62 : 3), 18);
  b.writeUInt32LE(1, 20);
  if (is64) {
    b.writeBigUInt64LE(spec.entry, 24);
    b.writeBigUInt64LE(BigInt(ehsize), 32);
    b.writeUInt16LE(ehsize, 52);
    b.writeUInt16LE(phentsize, 54);
    b.writeUInt16LE(spec.segments.length, 56);
    b.writeUInt16LE(64, 58);
  } else {
    b.writeUInt32LE(Number(spec.entry), 24);
    b.writeUInt32LE(ehsize, 28);
    b.writeUInt16LE(ehsize, 40);
    b.writeUInt16LE(phentsize, 42);
    b.writeUInt16LE(spec.segments.length, 44);
    b.writeUInt16LE(40, 46);
  }
  spec.segments.forEach((s, i) => {
    const o = ehsize + i * phentsize;
    const memsz = s.memsz ?? BigInt(s.data.length);
    const paddr = s.paddr ?? s.vaddr;
    if (is64) {
      b.writeUInt32LE(s.type ?? 1, o);
      b.writeUInt32LE(s.flags ?? 7, o + 4);
      b.writeBigUInt64LE(BigInt(offsets[i]!), o + 8);
      b.writeBigUInt64LE(s.vaddr, o + 16);
      b.writeBigUInt64LE(paddr, o + 24);
      b.writeBigUInt64LE(BigInt(s.data.length), o + 32);
      b.writeBigUInt64LE(memsz, o + 40);
      b.writeBigUInt64LE(s.align ?? 4n, o + 48);
    } else {
      b.writeUInt32LE(s.type ?? 1, o);
      b.writeUInt32LE(offsets[i]!, o + 4);
      b.writeUInt32LE(Number(s.vaddr), o + 8);
      b.writeUInt32LE(Number(paddr), o + 12);
      b.writeUInt32LE(s.data.length, o + 16);
      b.writeUInt32LE(Number(memsz), o + 20);
      b.writeUInt32LE(s.flags ?? 7, o + 24);
      b.writeUInt32LE(Number(s.align ?? 4n), o + 28);
    }
    b.set(s.data, offsets[i]!);
  });
  return b;
}

/** One ELF note (namesz, descsz, type, name, desc; 4-byte padding). */
export function note(name: string, type: number, desc: Uint8Array): Buffer {
  const n = Buffer.from(`${name}\0`, "latin1");
  const pad = (x: number) => (x + 3) & ~3;
  const b = Buffer.alloc(12 + pad(n.length) + pad(desc.length));
  b.writeUInt32LE(n.length, 0);
  b.writeUInt32LE(desc.length, 4);
  b.writeUInt32LE(type, 8);
  b.set(n, 12);
  b.set(desc, 12 + pad(n.length));
  return b;
}
