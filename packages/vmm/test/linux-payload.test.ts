import { execFileSync, spawnSync } from "node:child_process";
import { gzipSync } from "node:zlib";
import { VmmError } from "@tsvmm/vmm";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { lz4LegacyDecode, payloadCompression, unpackPayload } from "../src/linux-payload.js";

// The reference encoder is the lz4 tool itself (the kernel build uses `lz4 -l`), so the decoder
// is checked against streams it did not write.
function lz4Legacy(data: Uint8Array): Buffer {
  return execFileSync("lz4", ["-l", "-c", "-q"], { input: data, maxBuffer: 64 << 20 });
}

/** A payload as the kernel build lays it out: the compressed stream, then the u32 LE size. */
function withSize(stream: Buffer, size: number): Buffer {
  const t = Buffer.alloc(4);
  t.writeUInt32LE(size);
  return Buffer.concat([stream, t]);
}

beforeAll(() => {
  const have = () => spawnSync("sh", ["-c", "command -v lz4"]).status === 0;
  if (!have()) spawnSync("apt-get", ["install", "-y", "-qq", "lz4"], { env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
  if (!have()) throw new Error("these tests need the lz4 tool (apt-get install lz4)");
});

// Inputs with repeats at short and long distances, so the encoder emits overlapping and plain matches.
const compressible = fc
  .array(
    fc.oneof(
      fc.uint8Array({ minLength: 0, maxLength: 300 }),
      fc.record({ byte: fc.integer({ min: 0, max: 255 }), n: fc.integer({ min: 1, max: 5000 }) }).map(({ byte, n }) => new Uint8Array(n).fill(byte)),
      fc.record({ unit: fc.uint8Array({ minLength: 1, maxLength: 7 }), n: fc.integer({ min: 1, max: 2000 }) }).map(({ unit, n }) => {
        const out = new Uint8Array(unit.length * n);
        for (let i = 0; i < n; i++) out.set(unit, i * unit.length);
        return out;
      }),
    ),
    { maxLength: 20 },
  )
  .map((parts) => {
    // Repeat an earlier part now and then: long-distance matches.
    const all = parts.flatMap((p, i) => (i > 1 && i % 3 === 0 ? [p, parts[i - 2]!] : [p]));
    return Buffer.concat(all);
  });

describe("lz4 legacy decoding", () => {
  it("decodes what `lz4 -l` encodes, byte for byte", () => {
    fc.assert(
      fc.property(compressible, (data) => {
        expect(lz4LegacyDecode(lz4Legacy(data), data.length).equals(data)).toBe(true);
      }),
      { numRuns: 40 },
    );
  });

  it("decodes a stream of several 8 MiB blocks, with the kernel's size trailer after it", () => {
    const data = Buffer.alloc(19 << 20);
    for (let i = 0; i < data.length; i += 4096) data.write(`page ${i / 4096} `.repeat(30), i, "latin1");
    const payload = withSize(lz4Legacy(data), data.length);
    expect(payloadCompression(payload)).toBe("lz4");
    const r = unpackPayload(payload);
    expect(r?.compression).toBe("lz4");
    expect(r?.vmlinux.equals(data)).toBe(true);
  });

  it("a damaged stream is a VMM_KERNEL_FORMAT error, never a crash or a RangeError", () => {
    const data = Buffer.from("tsvmm ".repeat(500) + "0123456789abcdef".repeat(64));
    const good = lz4Legacy(data);
    fc.assert(
      fc.property(fc.integer({ min: 4, max: good.length - 1 }), fc.integer({ min: 0, max: 255 }), fc.boolean(), (at, byte, truncate) => {
        const bad = truncate ? good.subarray(0, at) : Buffer.from(good);
        if (!truncate) bad[at] = byte;
        try {
          const out = lz4LegacyDecode(bad, data.length);
          expect(out.length).toBe(data.length);
        } catch (e) {
          expect(e).toBeInstanceOf(VmmError);
          expect((e as VmmError).code).toBe("VMM_KERNEL_FORMAT");
        }
      }),
      { numRuns: 300 },
    );
  });

  it("a size that does not match the stream is refused", () => {
    const data = Buffer.from("x".repeat(1000));
    expect(() => lz4LegacyDecode(lz4Legacy(data), 999)).toThrow(/exceed 999 bytes|expected 999/);
    expect(() => lz4LegacyDecode(lz4Legacy(data), 1001)).toThrow(/decoded 1000 bytes, expected 1001/);
    expect(() => lz4LegacyDecode(Buffer.from([1, 2, 3, 4, 5]), 1)).toThrow(VmmError);
  });
});

describe("bzImage payloads", () => {
  it("gzip payloads unpack through zlib and are checked against their size", () => {
    const data = Buffer.from("vmlinux ".repeat(4000));
    const gz = gzipSync(data);
    expect(payloadCompression(gz)).toBe("gzip");
    expect(unpackPayload(gz)?.vmlinux.equals(data)).toBe(true);
    const corrupt = Buffer.from(gz);
    corrupt.writeUInt8(corrupt.readUInt8(corrupt.length - 8) ^ 0xff, corrupt.length - 8); // CRC32 of the gzip trailer
    expect(() => unpackPayload(corrupt)).toThrow(VmmError);
  });

  it("compressions Node cannot undo here are left to the guest's decompressor", () => {
    const magics: Array<[string, number[]]> = [
      ["xz", [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0, 0]],
      ["zstd", [0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0]],
      ["bzip2", [0x42, 0x5a, 0x68, 0x39, 0, 0, 0, 0]],
      ["lzma", [0x5d, 0x00, 0x00, 0x80, 0, 0, 0, 0]],
      ["lzo", [0x89, 0x4c, 0x5a, 0x4f, 0, 0, 0, 0]],
      ["unknown", [1, 2, 3, 4, 5, 6, 7, 8]],
    ];
    for (const [name, bytes] of magics) {
      expect(payloadCompression(Uint8Array.from(bytes))).toBe(name);
      expect(unpackPayload(Uint8Array.from(bytes))).toBeUndefined();
    }
  });
});
