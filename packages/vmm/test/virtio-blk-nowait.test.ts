import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, fsyncSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { GuestMemoryMap } from "@tsvmm/abi";
import { readNoWait } from "@tsvmm/kvm-backend";
import { bit, GuestHeap, MmioTransport, RawFileBackend, TestDriver, VIRTIO_BLK_S_OK, VIRTIO_BLK_T_IN, VIRTIO_RING_F_EVENT_IDX, VirtioBlk, VirtioBlkOuthdrLayout } from "@tsvmm/virtio";
import { afterAll, describe, expect, it } from "vitest";

// The disk as the vmm opens it (virtio.ts: RawFileBackend with kvm-backend's readNoWait): a block
// not in the page cache never makes the event loop wait. The file is pushed out of the cache with
// fsync + POSIX_FADV_DONTNEED (GNU dd's iflag=nocache count=0), on the work tree's disk: os.tmpdir()
// may be tmpfs, whose pages never leave the cache.

const scratch = join(import.meta.dirname, "..", "..", "..", "node_modules", ".cache");
mkdirSync(scratch, { recursive: true });
const dir = mkdtempSync(join(scratch, "tsvmm-blk-nowait-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function evict(path: string): void {
  const fd = openSync(path, "r+");
  fsyncSync(fd); // DONTNEED leaves dirty pages where they are
  closeSync(fd);
  execFileSync("dd", [`if=${path}`, "iflag=nocache", "count=0", "status=none"]);
}

describe("virtio-blk over readNoWait (as the vmm opens a disk)", () => {
  it("reads of blocks not in the page cache go to the pool (the kick returns with them in flight) and complete with the file's bytes; the same blocks, now cached, complete inline within the kick", async () => {
    const path = join(dir, "disk");
    const content = randomBytes(4 << 20);
    writeFileSync(path, content);
    evict(path);
    const backend = RawFileBackend.open(path, { readOnly: true, readNoWait });
    const blk = new VirtioBlk({ backend });
    const ram = 1 << 20;
    const mem = GuestMemoryMap.allocate([{ base: 0x100000, size: ram, name: "ram" }]);
    const heap = new GuestHeap(0x100000, ram);
    const drv = new TestDriver(new MmioTransport(blk, { mem, interrupt: { trigger() {} } }), mem, heap);
    const [q] = drv.start(bit(VIRTIO_RING_F_EVENT_IDX), [64]);
    // 1 MiB apart: the readahead a failed try starts for one does not reach the next.
    const sectors = [1, 2, 3].map((i) => (i << 20) / 512);
    const slots = sectors.map((sector) => ({ sector, hdr: heap.alloc(16), data: heap.alloc(4096, 4096), status: heap.alloc(1) }));
    const post = () => {
      for (const s of slots) {
        mem.write(s.hdr, VirtioBlkOuthdrLayout.encode({ type: VIRTIO_BLK_T_IN, ioprio: 0, sector: BigInt(s.sector) }));
        mem.fill(s.data, 4096, 0);
        mem.writeU8(s.status, 0xee);
        q!.add([
          { addr: s.hdr, len: 16, writable: false },
          { addr: s.data, len: 4096, writable: true },
          { addr: s.status, len: 1, writable: true },
        ]);
      }
      drv.kick(0);
    };
    const check = () => {
      expect(q!.takeUsed().map((u) => u.len)).toEqual([4097, 4097, 4097]);
      for (const s of slots) {
        expect(mem.readU8(s.status)).toBe(VIRTIO_BLK_S_OK);
        expect(mem.read(s.data, 4096).equals(content.subarray(s.sector * 512, s.sector * 512 + 4096))).toBe(true);
      }
    };
    try {
      post();
      expect(backend.inlineStats).toEqual({ done: 0, again: 3, failed: 0, skipped: 0 });
      expect(blk.inFlight).toBe(3);
      await blk.idle();
      check();
      post();
      expect(blk.inFlight).toBe(0);
      expect(backend.inlineStats).toEqual({ done: 3, again: 3, failed: 0, skipped: 0 });
      check();
    } finally {
      await backend.close();
    }
  });
});
