// Bit n of a hardware bitmap is bit (n & 7) of byte (n >> 3): LSB-first, as both Intel and AMD
// define their MSR and I/O bitmaps.

export function getBit(buf: Uint8Array, bit: number): boolean {
  return ((buf[bit >>> 3]! >>> (bit & 7)) & 1) === 1;
}

export function setBit(buf: Uint8Array, bit: number, value: boolean): void {
  const i = bit >>> 3;
  const m = 1 << (bit & 7);
  buf[i] = value ? buf[i]! | m : buf[i]! & ~m;
}

/** Sets `count` consecutive bits from `first`, whole bytes at a time where it can. */
export function fillBits(buf: Uint8Array, first: number, count: number, value: boolean): void {
  let bit = first;
  const end = first + count;
  while (bit < end && (bit & 7) !== 0) setBit(buf, bit++, value);
  const wholeBytesEnd = end - (end & 7);
  if (bit < wholeBytesEnd) {
    buf.fill(value ? 0xff : 0, bit >>> 3, wholeBytesEnd >>> 3);
    bit = wholeBytesEnd;
  }
  while (bit < end) setBit(buf, bit++, value);
}

/** True when any of `count` bits from `first` is set. */
export function anyBit(buf: Uint8Array, first: number, count: number): boolean {
  for (let b = first; b < first + count; b++) if (getBit(buf, b)) return true;
  return false;
}

/**
 * Half-open index runs [start, end) over i in [0, count) where bit(firstBit + i * stride) equals
 * `value`. Used to turn a bitmap segment into ranges.
 */
export function runsOf(buf: Uint8Array, firstBit: number, count: number, stride: number, value: boolean): Array<[number, number]> {
  const runs: Array<[number, number]> = [];
  let start = -1;
  for (let i = 0; i < count; i++) {
    const b = firstBit + i * stride;
    // Skip whole bytes that cannot contain a match when the stride is 1.
    if (stride === 1 && (b & 7) === 0 && i + 8 <= count) {
      const byte = buf[b >>> 3]!;
      if (byte === (value ? 0xff : 0)) {
        if (start < 0) start = i;
        i += 7;
        continue;
      }
      if (byte === (value ? 0 : 0xff)) {
        if (start >= 0) {
          runs.push([start, i]);
          start = -1;
        }
        i += 7;
        continue;
      }
    }
    if (getBit(buf, b) === value) {
      if (start < 0) start = i;
    } else if (start >= 0) {
      runs.push([start, i]);
      start = -1;
    }
  }
  if (start >= 0) runs.push([start, count]);
  return runs;
}
