import { gunzipSync } from "node:zlib";
import { VmmError } from "./errors.js";

/**
 * A bzImage's compressed payload (the vmlinux ELF), unpacked on the host.
 *
 * Why: the bzImage's own decompressor runs at guest CPL0, and on a host whose KVM emulates CPL0
 * code (PVM, about 1 µs per instruction) it inflates some 150 KB/s: minutes for a distribution
 * kernel. Unpacking here takes a fraction of a second and leaves the guest the same work the
 * decompressor would have handed over (the vmlinux segments in place, boot_params in RSI).
 */
export type PayloadCompression = "gzip" | "lz4" | "xz" | "zstd" | "bzip2" | "lzma" | "lzo" | "unknown";

const LZ4_LEGACY_MAGIC = 0x184c2102;
const LZ4_LEGACY_BLOCK = 8 << 20;

/** Name the payload's compression from its first bytes (the magics the kernel's decompressors accept). */
export function payloadCompression(p: Uint8Array): PayloadCompression {
  if (p.length < 6) return "unknown";
  const b = Buffer.from(p.buffer, p.byteOffset, p.byteLength);
  if (b[0] === 0x1f && (b[1] === 0x8b || b[1] === 0x9e)) return "gzip";
  if (b.readUInt32LE(0) === LZ4_LEGACY_MAGIC) return "lz4";
  if (b[0] === 0xfd && b.toString("latin1", 1, 6) === "7zXZ\0") return "xz";
  if (b.readUInt32LE(0) === 0xfd2fb528) return "zstd";
  if (b.toString("latin1", 0, 3) === "BZh") return "bzip2";
  if (b[0] === 0x5d && b[1] === 0x00 && b[2] === 0x00) return "lzma";
  if (b[0] === 0x89 && b.toString("latin1", 1, 4) === "LZO") return "lzo";
  return "unknown";
}

const corrupt = (why: string) => new VmmError("VMM_KERNEL_FORMAT", `bzImage payload (lz4): ${why}`);

/**
 * Decode one LZ4 block (the raw block format: token, literals, 16-bit offset, match) into `out`
 * at `pos`; returns the new output position. Every length and offset is checked, so corrupt
 * input is a typed error, never a read or write outside the buffers.
 */
export function lz4DecodeBlock(src: Uint8Array, start: number, end: number, out: Uint8Array, pos: number): number {
  let i = start;
  let o = pos;
  while (i < end) {
    const token = src[i++]!;
    let lit = token >>> 4;
    if (lit === 15) {
      let n: number;
      do {
        if (i >= end) throw corrupt("literal length runs past the block");
        n = src[i++]!;
        lit += n;
      } while (n === 255);
    }
    if (i + lit > end) throw corrupt(`literal run of ${lit} bytes at input ${i} runs past the block`);
    if (o + lit > out.length) throw corrupt(`output would exceed ${out.length} bytes`);
    if (lit > 0) {
      out.set(src.subarray(i, i + lit), o);
      i += lit;
      o += lit;
    }
    // The last sequence of a block is literals only.
    if (i >= end) break;
    if (i + 2 > end) throw corrupt("match offset cut off at the end of the block");
    const offset = src[i]! | (src[i + 1]! << 8);
    i += 2;
    if (offset === 0 || offset > o) throw corrupt(`match offset ${offset} at output ${o} points before the start`);
    let len = (token & 15) + 4;
    if ((token & 15) === 15) {
      let n: number;
      do {
        if (i >= end) throw corrupt("match length runs past the block");
        n = src[i++]!;
        len += n;
      } while (n === 255);
    }
    if (o + len > out.length) throw corrupt(`output would exceed ${out.length} bytes`);
    const from = o - offset;
    if (offset >= len) {
      out.copyWithin(o, from, from + len);
      o += len;
    } else {
      // Overlapping match: a repeating pattern; copy in doubling chunks, each non-overlapping.
      let done = 0;
      while (done < len) {
        const chunk = Math.min(offset + done, len - done);
        out.copyWithin(o + done, from, from + chunk);
        done += chunk;
      }
      o += len;
    }
  }
  return o;
}

/**
 * Decode an LZ4 "legacy" stream (magic 0x184C2102, then blocks each prefixed by a u32 size, as
 * `lz4 -l` and the kernel build write) into exactly `size` bytes.
 */
export function lz4LegacyDecode(stream: Uint8Array, size: number): Buffer {
  const b = Buffer.from(stream.buffer, stream.byteOffset, stream.byteLength);
  if (b.length < 4 || b.readUInt32LE(0) !== LZ4_LEGACY_MAGIC) throw corrupt("no legacy magic 0x184c2102");
  const out = Buffer.allocUnsafe(size);
  let i = 4;
  let o = 0;
  while (i + 4 <= b.length) {
    const n = b.readUInt32LE(i);
    i += 4;
    // Concatenated streams repeat the magic; skip it.
    if (n === LZ4_LEGACY_MAGIC) continue;
    if (n === 0) break;
    if (i + n > b.length) {
      // The kernel build appends the decompressed size after the stream; it reads as a block size.
      if (o === size) break;
      throw corrupt(`block of ${n} bytes at ${i - 4} runs past the ${b.length}-byte stream`);
    }
    const blockStart = o;
    o = lz4DecodeBlock(b, i, i + n, out, o);
    if (o - blockStart > LZ4_LEGACY_BLOCK) throw corrupt(`block at ${i - 4} decodes to more than 8 MiB`);
    i += n;
  }
  if (o !== size) throw corrupt(`decoded ${o} bytes, expected ${size}`);
  return out;
}

/**
 * Unpack a bzImage payload (the bytes payload_offset/payload_length point at). Returns undefined
 * for compressions Node cannot undo here (xz, zstd, bzip2, lzma, lzo): the caller then lets the
 * guest's own decompressor do it.
 */
export function unpackPayload(payload: Uint8Array): { compression: PayloadCompression; vmlinux: Buffer } | undefined {
  const compression = payloadCompression(payload);
  if (payload.length < 8) return undefined;
  // The kernel build appends the uncompressed size (u32 LE) to every payload; mkpiggy reads it too.
  const size = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).readUInt32LE(payload.length - 4);
  if (compression === "lz4") return { compression, vmlinux: lz4LegacyDecode(payload.subarray(0, payload.length - 4), size) };
  if (compression === "gzip") {
    let vmlinux: Buffer;
    try {
      vmlinux = gunzipSync(payload);
    } catch (e) {
      throw new VmmError("VMM_KERNEL_FORMAT", `bzImage payload (gzip): ${(e as Error).message}`, { cause: e });
    }
    if (vmlinux.length !== size) throw new VmmError("VMM_KERNEL_FORMAT", `bzImage payload (gzip): ${vmlinux.length} bytes, the trailer says ${size}`);
    return { compression, vmlinux };
  }
  return undefined;
}
