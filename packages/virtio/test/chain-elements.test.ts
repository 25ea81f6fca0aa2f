import { GuestMemoryMap } from "@tsvmm/abi";
import { DescriptorChain, type DriverElement, type QueueFeatures, VirtqueueError } from "@tsvmm/virtio";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { queuePairOver } from "./helpers/setup.js";

// Chains resolve each element against the region the previous one fell in (RegionCache) and copy
// in and out without views (copyOut/copyIn/setWritableByte): these tests hold those paths to the
// same rules as GuestMemory.slice and as ChainReader/ChainWriter, over memory of several regions.

const FORMATS: QueueFeatures[] = [
  { packed: false, eventIdx: true, indirect: true },
  { packed: true, eventIdx: true, indirect: true },
];

/** Rings at 0x10000 (64 KiB); data regions A and B adjacent at 0x100000, a hole, then C. */
const RING = { base: 0x10000, size: 0x10000 };
const A = { base: 0x100000, size: 0x4000 };
const B = { base: 0x104000, size: 0x4000 };
const C = { base: 0x200000, size: 0x4000 };

function memory(): GuestMemoryMap {
  return new GuestMemoryMap(
    [RING, A, B, C].map((r, i) => ({ ...r, buffer: Buffer.alloc(r.size), name: ["ring", "A", "B", "C"][i]! })),
  );
}

function code(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return e instanceof VirtqueueError ? e.code : `not a VirtqueueError: ${String(e)}`;
  }
  return "no error";
}

/** Elements: readable parts with data, writable lengths; each at a random spot of a random data region. */
const chainArb = fc.record({
  out: fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 4 }),
  ins: fc.array(fc.integer({ min: 0, max: 40 }), { maxLength: 4 }),
  places: fc.array(fc.tuple(fc.constantFrom(A, B, C), fc.integer({ min: 0, max: 0x3fd0 })), { minLength: 8, maxLength: 8 }),
  indirect: fc.boolean(),
  skip: fc.integer({ min: 0, max: 100 }),
  n: fc.integer({ min: 0, max: 120 }),
});

describe.each(FORMATS)("chain elements over several regions (%#)", (features) => {
  it("property: copyOut/copyIn/setWritableByte read and write exactly what the reader, writer and views do, and nothing else", () => {
    fc.assert(
      fc.property(chainArb, ({ out, ins, places, indirect, skip, n }) => {
        if (out.length + ins.length === 0) return;
        const mem = memory();
        const { drv, dev } = queuePairOver(mem, RING.base, RING.size, 8, features);
        // Elements may overlap one another: the checks below go through the chain's own views.
        const els: DriverElement[] = [];
        out.forEach((d, i) => {
          const [r, o] = places[i]!;
          mem.write(r.base + o, d);
          els.push({ addr: r.base + o, len: d.length, writable: false });
        });
        ins.forEach((len, i) => {
          const [r, o] = places[4 + i]!;
          els.push({ addr: r.base + o, len, writable: true });
        });
        drv.add(els, { indirect });
        const c = dev.pop()!;
        expect(c.descriptors).toEqual(els);
        expect(c.length).toBe(els.length);
        els.forEach((e, i) => {
          expect(c.elementLength(i)).toBe(e.len);
          expect(c.view(i).equals(mem.slice(e.addr, e.len))).toBe(true);
        });

        const readable = Buffer.concat(c.readable());
        const dst = Buffer.alloc(n, 0xee);
        const got = c.copyOut(dst, skip);
        const want = readable.subarray(Math.min(skip, readable.length), Math.min(skip + n, readable.length));
        expect(got).toBe(want.length);
        expect(dst.subarray(0, got).equals(want)).toBe(true);
        expect(dst.subarray(got).every((b) => b === 0xee)).toBe(true);

        // copyIn from `skip` must equal a ChainWriter that skips `skip` bytes, then writeSome.
        const before = mem.regions.map((r) => Buffer.from(r.buffer));
        const src = Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + 1) & 0xff));
        const put = c.copyIn(src, skip);
        const after = mem.regions.map((r) => Buffer.from(r.buffer));
        mem.regions.forEach((r, i) => {
          r.buffer.set(before[i]!);
        });
        const w = c.writer();
        w.views(skip);
        expect(put).toBe(w.writeSome(src));
        mem.regions.forEach((r, i) => {
          expect(r.buffer.equals(after[i]!)).toBe(true);
        });

        // fillWritable: the window handed out is the first writable element's own memory, or none.
        let window: Buffer | undefined;
        const filled = c.fillWritable(n, (buf, off, len) => {
          window = Buffer.from(buf.buffer, buf.byteOffset + off, len);
          return true;
        });
        const fw = c.firstWritable;
        expect(filled).toBe(fw < c.length && c.elementLength(fw) >= n);
        if (filled) {
          expect(window!.length).toBe(n);
          expect(window!.buffer).toBe(c.view(fw).buffer);
          expect(window!.byteOffset).toBe(c.view(fw).byteOffset);
        } else expect(window).toBeUndefined();

        const pos = skip % (c.writableLength + 2);
        const ok = c.setWritableByte(pos, 0x5a);
        expect(ok).toBe(pos < c.writableLength);
        if (ok) expect(Buffer.concat(c.writable())[pos]).toBe(0x5a);
      }),
      { numRuns: 300 },
    );
  });

  it("an element straddling two adjacent regions is refused though the cached region holds its start; the hole and a region after another resolve as slice does", () => {
    const mem = memory();
    const { drv, dev } = queuePairOver(mem, RING.base, RING.size, 8, features);
    mem.write(A.base + 0x10, Buffer.from("in A"));
    mem.write(B.base + 0x20, Buffer.from("in B"));
    mem.write(C.base + 0x30, Buffer.from("in C"));
    drv.add([
      { addr: A.base + 0x10, len: 4, writable: false },
      { addr: B.base + 0x20, len: 4, writable: false },
      { addr: C.base + 0x30, len: 4, writable: false },
    ]);
    const c = dev.pop()!;
    expect(c.reader().read(12).toString()).toBe("in Ain Bin C");
    // The cache now holds C; the next chain's first element brings it back to A, then one runs from A's last bytes into B.
    drv.add([
      { addr: A.base, len: 4, writable: false },
      { addr: B.base - 2, len: 4, writable: true },
    ]);
    expect(code(() => dev.pop())).toBe("VIRTQ_BUFFER_OUT_OF_RANGE");
    expect(() => mem.slice(B.base - 2, 4)).toThrow();
  });
});

describe("chain elements and released memory", () => {
  it("a data region released after a chain was taken from it is refused on the next pop (VIRTQ_BUFFER_OUT_OF_RANGE), not read through the cached buffer", () => {
    for (const features of FORMATS) {
      const ab = new ArrayBuffer(A.size);
      const mem = new GuestMemoryMap([
        { ...RING, buffer: Buffer.alloc(RING.size), name: "ring" },
        { ...A, buffer: Buffer.from(ab), name: "A" },
      ]);
      const { drv, dev } = queuePairOver(mem, RING.base, RING.size, 8, features);
      drv.add([{ addr: A.base + 8, len: 8, writable: true }]);
      const first: DescriptorChain = dev.pop()!;
      expect(first.writableLength).toBe(8);
      // Detach A's backing, as kvm-backend does when its VM closes.
      structuredClone(ab, { transfer: [ab] });
      expect(ab.byteLength).toBe(0);
      drv.add([{ addr: A.base + 8, len: 8, writable: true }]);
      expect(code(() => dev.pop())).toBe("VIRTQ_BUFFER_OUT_OF_RANGE");
    }
  });

  it("DescriptorChain built from views refuses mismatched lengths and a readable element after a writable one", () => {
    expect(() => new DescriptorChain(0, 1, [{ addr: 0, len: 2, writable: false }], [Buffer.alloc(3)])).toThrow(RangeError);
    expect(() => new DescriptorChain(0, 1, [{ addr: 0, len: 2, writable: false }], [])).toThrow(RangeError);
    const w = { addr: 0x1000, len: 1, writable: true };
    const r = { addr: 0x2000, len: 1, writable: false };
    expect(() => new DescriptorChain(0, 1, [w, r], [Buffer.alloc(1), Buffer.alloc(1)])).toThrow(RangeError);
    const ok = new DescriptorChain(0, 1, [r, w], [Buffer.from([7]), Buffer.alloc(1)]);
    expect([ok.readableLength, ok.writableLength, ok.firstWritable]).toEqual([1, 1, 1]);
    expect(ok.setWritableByte(0, 9)).toBe(true);
    expect(ok.view(1)[0]).toBe(9);
  });
});
