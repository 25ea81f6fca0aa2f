import {
  bit,
  type NetBackend,
  type UsedBuffer,
  VIRTIO_F_RING_PACKED,
  VIRTIO_NET_F_MRG_RXBUF,
  VIRTIO_RING_F_EVENT_IDX,
  VirtioNet,
  VirtioNetHdrV1Layout,
} from "@tsvmm/virtio";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { harness } from "./helpers/harness.js";

const HDR = VirtioNetHdrV1Layout.size;

/** Frames to and from the test, synchronously. */
class Wire implements NetBackend {
  sent: Buffer[] = [];
  private rx: ((f: Buffer) => void) | undefined;
  write(frame: Buffer): void {
    this.sent.push(Buffer.from(frame));
  }
  onFrame(cb: (frame: Buffer) => void): void {
    this.rx = cb;
  }
  inject(frame: Buffer): void {
    this.rx?.(frame);
  }
}

function pieces(total: number, cuts: readonly number[]): number[] {
  const at = [...new Set(cuts.map((c) => c % total).filter((c) => c > 0))].sort((a, b) => a - b);
  const out: number[] = [];
  let prev = 0;
  for (const c of [...at, total]) {
    out.push(c - prev);
    prev = c;
  }
  return out;
}

const frameBytes = (n: number, tag: number): Buffer => {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (tag * 31 + i) & 0xff;
  return b;
};

describe.each([
  ["split", 0n],
  ["packed", bit(VIRTIO_F_RING_PACKED)],
])("virtio-net framing, %s ring", (_n, ring) => {
  it("with mergeable buffers, a receive buffer smaller than the header is a driver bug (§5.1.6.3.1): DEVICE_NEEDS_RESET, nothing written", () => {
    const wire = new Wire();
    const h = harness(new VirtioNet({ backend: wire }), {}, 1 << 20);
    const [rx] = h.drv.start(ring | bit(VIRTIO_NET_F_MRG_RXBUF), [16, 16]);
    const small = h.heap.alloc(HDR - 1);
    h.mem.fill(small, HDR - 1, 0xee);
    rx!.add([{ addr: h.heap.alloc(64), len: 64, writable: true }]);
    rx!.add([{ addr: small, len: HDR - 1, writable: true }]);
    h.drv.kick(0);
    wire.inject(frameBytes(200, 1));
    expect(h.drv.status & 0x40).toBe(0x40);
    expect(h.errors.map((e) => e.code)).toEqual(["VIRTQ_CHAIN_SHORT"]);
    expect(h.mem.read(small, HDR - 1).equals(Buffer.alloc(HDR - 1, 0xee))).toBe(true);
    expect(rx!.takeUsed()).toEqual([]);
  });

  it("property: transmit frames split anywhere (inside the header too) reach the wire whole and in order", () => {
    fc.assert(
      fc.property(fc.array(fc.record({ len: fc.integer({ min: 0, max: 1600 }), cuts: fc.array(fc.integer({ min: 1, max: 2000 }), { maxLength: 4 }) }), { minLength: 1, maxLength: 6 }), (frames) => {
        const wire = new Wire();
        const h = harness(new VirtioNet({ backend: wire }), {}, 1 << 20);
        const [, tx] = h.drv.start(ring | bit(VIRTIO_RING_F_EVENT_IDX), [16, 64]);
        const want = frames.map((f, i) => frameBytes(f.len, i));
        want.forEach((payload, i) => {
          const whole = Buffer.concat([VirtioNetHdrV1Layout.encode({ flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0, numBuffers: 0 }), payload]);
          let off = 0;
          const els = pieces(whole.length, frames[i]!.cuts).map((n) => {
            const a = h.heap.alloc(n, 1);
            h.mem.write(a, whole.subarray(off, off + n));
            off += n;
            return { addr: a, len: n, writable: false };
          });
          tx!.add(els);
        });
        h.drv.kick(1);
        expect(wire.sent.length).toBe(want.length);
        wire.sent.forEach((f, i) => {
          expect(f.equals(want[i]!)).toBe(true);
        });
        expect(tx!.takeUsed().map((u) => u.len)).toEqual(want.map(() => 0));
      }),
      { numRuns: 100 },
    );
  });

  it("property: with mergeable buffers, each host frame is spread over as many receive chains as it needs (num_buffers), in order, whatever their sizes and splits", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 3000 }), { minLength: 1, maxLength: 5 }),
        fc.array(fc.record({ size: fc.integer({ min: HDR, max: 700 }), cuts: fc.array(fc.integer({ min: 1, max: 700 }), { maxLength: 2 }) }), { minLength: 1, maxLength: 40 }),
        fc.integer({ min: 1, max: 40 }),
        (lens, bufs, firstBatch) => {
          const wire = new Wire();
          const net = new VirtioNet({ backend: wire });
          const h = harness(net, {}, 1 << 20);
          const [rx] = h.drv.start(ring | bit(VIRTIO_NET_F_MRG_RXBUF), [64, 16]);
          const frames = lens.map((n, i) => frameBytes(n, i + 1));
          const post = (list: typeof bufs) => {
            for (const b of list) {
              const els = pieces(b.size, b.cuts).map((n) => ({ addr: h.heap.alloc(n, 1), len: n, writable: true }));
              rx!.add(els);
            }
            h.drv.kick(0);
          };
          // Some buffers first, the frames, then the rest of the buffers.
          post(bufs.slice(0, firstBatch));
          for (const f of frames) wire.inject(f);
          post(bufs.slice(firstBatch));
          const used: UsedBuffer[] = rx!.takeUsed();
          // Reassemble: a chain's bytes are its writable elements up to the used length.
          const bytesOf = (u: UsedBuffer): Buffer => {
            const parts: Buffer[] = [];
            let left = u.len;
            for (const e of u.elements) {
              const n = Math.min(left, e.len);
              parts.push(h.mem.read(e.addr, n));
              left -= n;
            }
            return Buffer.concat(parts);
          };
          let k = 0;
          let delivered = 0;
          while (k < used.length) {
            const first = bytesOf(used[k]!);
            const n = VirtioNetHdrV1Layout.decode(first.subarray(0, HDR)).numBuffers;
            expect(n).toBeGreaterThanOrEqual(1);
            const all = Buffer.concat(used.slice(k, k + n).map(bytesOf));
            // Every chain but the last is filled completely.
            for (const u of used.slice(k, k + n - 1)) expect(u.len).toBe(u.elements.reduce((s, e) => s + e.len, 0));
            expect(all.subarray(HDR).equals(frames[delivered]!)).toBe(true);
            delivered++;
            k += n;
          }
          // What was not delivered is still waiting, in order: the buffers left did not hold the next frame.
          expect(net.pendingFrames).toBe(frames.length - delivered);
          expect(net.stats.rxDropped).toBe(0);
        },
      ),
      { numRuns: 100 },
    );
  });
});
