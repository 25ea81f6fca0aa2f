import { ALL_STRUCTS, fieldCodec, KvmRegsLayout, type KvmSregs, KvmSregsLayout, type StructLayout } from "@tsvmm/abi";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);

// The vCPU state ioctls read and write their structs through fieldCodec: whatever bytes KVM
// leaves, the values must be the layout's own, and whatever a caller passes, the bytes too.
describe("fieldCodec: the layout's values and bytes, field by field", () => {
  for (const layout of ALL_STRUCTS) {
    it(`${layout.cType}: decode equals the layout's decode; encode of that value equals the layout's encode`, () => {
      const codec = fieldCodec(layout);
      expect(codec, `${layout.cType} has a field codec`).toBeDefined();
      fc.assert(
        fc.property(fc.uint8Array({ minLength: layout.size, maxLength: layout.size }), (bytes) => {
          const b = Buffer.from(bytes);
          const value = codec!.decode(view(b), b, 0);
          expect(value).toStrictEqual(layout.decode(b));
          const out = Buffer.alloc(layout.size);
          expect(codec!.encode(value, view(out), out, 0)).toBe(true);
          expect(out.equals(layout.encode(value))).toBe(true);
        }),
        { numRuns: layout.size > 1024 ? 20 : 200 },
      );
    });
  }

  it("reads at an offset inside a larger buffer", () => {
    const b = Buffer.alloc(KvmRegsLayout.size + 24);
    b.writeBigUInt64LE(0x1122334455667788n, 24 + KvmRegsLayout.offsetOf("rip"));
    const regs = fieldCodec(KvmRegsLayout as StructLayout<unknown>)!.decode(view(b), b, 24) as { rip: bigint };
    expect(regs.rip).toBe(0x1122334455667788n);
  });

  it("refuses what the layout would not write as given: out of range, wrong type, missing field, wrong array length", () => {
    const codec = fieldCodec(KvmSregsLayout as StructLayout<unknown>)!;
    const good = KvmSregsLayout.decode(Buffer.alloc(KvmSregsLayout.size));
    const bad: Array<(s: KvmSregs) => void> = [
      (s) => (s.cr0 = -1n),
      (s) => (s.cr3 = 1n << 64n),
      (s) => ((s as unknown as { efer: number }).efer = 5),
      (s) => (s.cs.selector = 0x10000),
      (s) => (s.cs.type = 1.5),
      (s) => (s.ss.present = -1),
      (s) => delete (s as Partial<KvmSregs>).idt,
      (s) => (s.interruptBitmap = [0n, 0n, 0n]),
    ];
    for (const change of bad) {
      const s = structuredClone(good);
      change(s);
      const out = Buffer.alloc(KvmSregsLayout.size);
      expect(codec.encode(s, view(out), out, 0)).toBe(false);
    }
    const out = Buffer.alloc(KvmSregsLayout.size);
    expect(codec.encode(good, view(out), out, 0)).toBe(true);
  });
});
