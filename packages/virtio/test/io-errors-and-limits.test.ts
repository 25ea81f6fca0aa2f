import { GuestMemoryMap } from "@tsvmm/abi";
import {
  type BlockBackend,
  DriverSplitQueue,
  GuestHeap,
  type IoDone,
  Queue,
  RawFileBackend,
  readConfigBytes,
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_IN,
  VirtioBlk,
  VirtioBlkOuthdrLayout,
  type VirtqueueError,
} from "@tsvmm/virtio";
import { describe, expect, it } from "vitest";
import { harness, until } from "./helpers/harness.js";

describe("RawFileBackend over a file whose I/O fails (EIO)", () => {
  // /proc/self/mem is a regular file whose offset 0 is never mapped: every pread/pwrite there is
  // EIO, a real I/O error from the kernel rather than one simulated in JavaScript.
  const eio = () => RawFileBackend.open("/proc/self/mem");

  it("read, write and write-zeroes report the OS error through their callback", async () => {
    const be = eio();
    const call = (f: (d: IoDone) => void) => new Promise<Error | null>((r) => f(r));
    const errs = [
      await call((d) => be.read(0, Buffer.alloc(512), d)),
      await call((d) => be.write(0, [Buffer.alloc(512)], d)),
      await call((d) => be.writeZeroes(0, 4096, d)),
    ];
    expect(errs.map((e) => (e as NodeJS.ErrnoException | null)?.code)).toEqual(["EIO", "EIO", "EIO"]);
    // Nothing to write is complete at once; a discard keeps the data (Node has no hole punching).
    expect(await call((d) => be.write(0, [Buffer.alloc(0)], d))).toBeNull();
    expect(await call((d) => be.writeZeroes(0, 0, d))).toBeNull();
    expect(await call((d) => be.discard(0, 4096, d))).toBeNull();
    await be.close();
  });
});

/** A backend whose operations throw a non-Error value: a bug in a backend must not take the device down. */
class ThrowingBackend implements BlockBackend {
  readonly size = 1 << 16;
  readonly readOnly = false;
  read(): void {
    throw "read exploded";
  }
  write(): void {
    throw 42;
  }
  flush(): void {
    throw undefined;
  }
  writeZeroes(_p: number, _l: number, done: IoDone): void {
    done(null);
  }
  discard(_p: number, _l: number, done: IoDone): void {
    done(null);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

describe("virtio-blk and a backend that throws", () => {
  it("a thrown non-Error fails the request with IOERR; the device keeps serving", async () => {
    const blk = new VirtioBlk({ backend: new ThrowingBackend() });
    const h = harness(blk);
    const [q] = h.drv.start(0n, [16]);
    const statuses: number[] = [];
    for (const type of [VIRTIO_BLK_T_IN, VIRTIO_BLK_T_FLUSH]) {
      const hdr = h.heap.alloc(16);
      h.mem.write(hdr, VirtioBlkOuthdrLayout.encode({ type, ioprio: 0, sector: 0n }));
      const status = h.heap.alloc(1);
      const els = [{ addr: hdr, len: 16, writable: false }];
      if (type === VIRTIO_BLK_T_IN) els.push({ addr: h.heap.alloc(512), len: 512, writable: true });
      els.push({ addr: status, len: 1, writable: true });
      q!.add(els);
      statuses.push(status);
    }
    h.drv.kick(0);
    const used: number[] = [];
    await until(() => {
      used.push(...q!.takeUsed().map((u) => u.len));
      return used.length === 2;
    }, "completions");
    expect(used).toEqual([1, 1]);
    expect(statuses.map((a) => h.mem.readU8(a))).toEqual([VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_IOERR]);
    expect(blk.stats.ioerr).toBe(2);
    expect(blk.stats.ok).toBe(0);
    expect(h.drv.status).toBe(15);
  });
});

describe("limits from the spec", () => {
  it("a chain whose lengths add up past 2^32 - 1 bytes is refused (§2.7.5: len is a u32 total)", () => {
    // 2 GiB of guest RAM: a zeroed Buffer this size is only address space until touched.
    const ram = 2 ** 31 + 4096;
    const base = 0x10000;
    const mem = GuestMemoryMap.allocate([{ base, size: ram }]);
    const heap = new GuestHeap(base, 1 << 16);
    const drv = new DriverSplitQueue(mem, heap, 4);
    const dev = new Queue(0, 4);
    dev.descTable = drv.descTable;
    dev.driverArea = drv.driverArea;
    dev.deviceArea = drv.deviceArea;
    dev.ready = true;
    dev.activate(mem, { packed: false, eventIdx: false, indirect: false });
    const big = { addr: base + 4096, len: 2 ** 31, writable: true };
    drv.add([big, { ...big, len: 2 ** 31 - 1 }]);
    const c = dev.pop()!;
    expect(c.writableLength).toBe(2 ** 32 - 1);
    dev.addUsed(c, 0);
    drv.add([big, big]);
    let code = "";
    try {
      dev.pop();
    } catch (e) {
      code = (e as VirtqueueError).code;
    }
    expect(code).toBe("VIRTQ_CHAIN_TOO_BIG");
  });

  it("readConfigBytes: bytes outside the config space, before or past it, read as zero", () => {
    const cfg = Buffer.from([1, 2, 3, 4]);
    const out = Buffer.alloc(6, 0xff);
    readConfigBytes(cfg, -2, out);
    expect([...out]).toEqual([0, 0, 0, 0, 0, 0]);
    readConfigBytes(cfg, 2, out);
    expect([...out]).toEqual([3, 4, 0, 0, 0, 0]);
    readConfigBytes(cfg, 4, out);
    expect([...out]).toEqual([0, 0, 0, 0, 0, 0]);
  });
});
