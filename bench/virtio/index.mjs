// virtio benchmarks (issue 15), a host-side driver (TestDriver) playing the guest on a
// Buffer-backed guest memory, so the figures are the VMM side's cost alone:
//  - virtio-blk-4k: 4 KiB random reads of a 64 MiB file (page cache), DEPTH at a time: the driver
//    fills the split ring (EVENT_IDX) with used_event set to the batch's last request, kicks once,
//    and stops the clock in its interrupt handler (the transport's trigger), so the figure is the
//    VMM's side alone: µs per request from the kick to the interrupt for the last completion, beside
//    raw fs.read (pread on the libuv pool) of the same blocks at the same depth, interleaved batch
//    by batch in the same run.
//    ratio = tsvmm µs/req ÷ pread µs/req (goal <= 1.3).
//  - virtio-blk-seq: 64 KiB sequential reads the same way; MB/s; ratio = tsvmm MB/s ÷ raw MB/s (goal >= 0.8).
//  - virtio-vsock-stream: host Unix socket -> guest rx queue MB/s, beside a plain Unix-socket copy.
// Rounds are interleaved and the median round (by ratio) is reported: the machine may be shared.
// The disk is opened as the VMM opens it (packages/vmm/src/virtio.ts): with kvm-backend's
// readNoWait, so reads whose data is in the page cache (runs of sequential reads too, within a
// per-drain budget) are done inline on the event loop (preadv2 RWF_NOWAIT: never waits for the
// disk; a miss goes to the pool);
// TSVMM_BENCH_VIRTIO_INLINE=0 opens it without readNoWait: every read on the libuv pool. The
// baseline is the same either way; readSyncUs (readSync of the same blocks) is reported beside it,
// so value - readSyncUs is the VMM's own cost with inline reads. Needs kvm-backend's dist and addon built.
// TSVMM_BENCH_VIRTIO_DIRECT=1 runs blk with VirtioBlkOptions.directReads (no bounce copy),
// TSVMM_BENCH_VIRTIO_MERGE=BYTES with VirtioBlkOptions.maxMergeBytes;
// TSVMM_BENCH_VIRTIO_ONLY=blk-4k|blk-seq|vsock runs one figure.
import { randomBytes } from "node:crypto";
import { closeSync, mkdtempSync, openSync, read, readSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { GuestMemoryMap } from "@tsvmm/abi";
import { readNoWait } from "@tsvmm/kvm-backend";
import {
  bit,
  GuestHeap,
  MmioTransport,
  RawFileBackend,
  TestDriver,
  VIRTIO_BLK_T_IN,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_VSOCK_OP_CREDIT_UPDATE,
  VIRTIO_VSOCK_OP_RESPONSE,
  VIRTIO_VSOCK_OP_RW,
  VirtioBlk,
  VirtioBlkOuthdrLayout,
  VirtioVsock,
  VirtioVsockHdrLayout,
} from "@tsvmm/virtio";
import { result } from "../lib.mjs";

const FILE_SIZE = 64 << 20;
const ROUNDS = Number(process.env.TSVMM_BENCH_VIRTIO_ROUNDS ?? 10);
const N4K = Number(process.env.TSVMM_BENCH_VIRTIO_4K_REQUESTS ?? 20000);

/** The round whose tsvmm/raw ratio is the median. */
function medianRound(rounds) {
  const sorted = [...rounds].sort((a, b) => a.tv / a.tr - b.tv / b.tr);
  return sorted[Math.floor(sorted.length / 2)];
}

function blkRig(path, depth) {
  const ram = 96 << 20;
  const mem = GuestMemoryMap.allocate([{ base: 0x100000, size: ram, name: "ram" }]);
  const heap = new GuestHeap(0x100000, ram);
  const rig = { irqs: 0, onIrq: () => {} };
  const backend = RawFileBackend.open(path, { readOnly: true, ...(process.env.TSVMM_BENCH_VIRTIO_INLINE === "0" ? {} : { readNoWait }) });
  const blk = new VirtioBlk({ backend, queueSize: 256, directReads: process.env.TSVMM_BENCH_VIRTIO_DIRECT === "1", ...(process.env.TSVMM_BENCH_VIRTIO_MERGE ? { maxMergeBytes: Number(process.env.TSVMM_BENCH_VIRTIO_MERGE) } : {}) });
  const t = new MmioTransport(blk, {
    mem,
    interrupt: {
      trigger() {
        rig.irqs++;
        rig.onIrq();
      },
    },
  });
  const drv = new TestDriver(t, mem, heap);
  const [q] = drv.start(bit(VIRTIO_RING_F_EVENT_IDX), [256]);
  // Per-slot request buffers, reused: header, data, status.
  const slots = [];
  for (let i = 0; i < depth; i++) slots.push({ hdr: heap.alloc(16), data: heap.alloc(64 * 1024, 4096), status: heap.alloc(1) });
  return Object.assign(rig, { mem, blk, backend, drv, q, slots });
}

/** Post `sectors.length` (<= depth) reads of `len` bytes, kick, take completions from the interrupt: returns ms. */
function runBatch(rig, sectors, len) {
  const { mem, drv, q, slots } = rig;
  for (let i = 0; i < sectors.length; i++) {
    const sl = slots[i];
    mem.write(sl.hdr, VirtioBlkOuthdrLayout.encode({ type: VIRTIO_BLK_T_IN, ioprio: 0, sector: BigInt(sectors[i]) }));
    q.add([
      { addr: sl.hdr, len: 16, writable: false },
      { addr: sl.data, len, writable: true },
      { addr: sl.status, len: 1, writable: true },
    ]);
  }
  // used_event at the batch's last request: the device interrupts once, when all are complete
  // (event idx), and the driver's own work (taking the used entries) stays out of the timing.
  q.setInterrupts(true, sectors.length);
  return new Promise((resolve) => {
    rig.onIrq = () => {
      const ms = performance.now() - t0;
      rig.onIrq = () => {};
      const used = q.takeUsed().length;
      if (used !== sectors.length) throw new Error(`blk bench: interrupt with ${used} of ${sectors.length} requests used`);
      resolve(ms);
    };
    const t0 = performance.now();
    drv.kick(0);
  });
}

function rawBatch(fd, positions, len, bufs) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    let done = 0;
    for (let i = 0; i < positions.length; i++) {
      read(fd, bufs[i], 0, len, positions[i], () => {
        if (++done === positions.length) resolve(performance.now() - t0);
      });
    }
  });
}

async function blk4k(path) {
  const DEPTH = 32;
  const rig = blkRig(path, DEPTH);
  const fd = openSync(path, "r");
  const bufs = Array.from({ length: DEPTH }, () => Buffer.alloc(4096));
  const sectors = Array.from({ length: N4K }, () => Math.floor(Math.random() * (FILE_SIZE / 4096)) * 8);
  // Interleave the two batch by batch so page cache, CPU frequency and other load treat them
  // alike; one warm-up round, then the median round.
  const rounds = [];
  let irqs = 0;
  for (let round = 0; round < ROUNDS; round++) {
    let tv = 0;
    let tr = 0;
    const irq0 = rig.irqs;
    for (let i = 0; i < N4K; i += DEPTH) {
      const batch = sectors.slice(i, i + DEPTH);
      tv += await runBatch(rig, batch, 4096);
      tr += await rawBatch(fd, batch.map((s) => s * 512), 4096, bufs);
    }
    irqs = rig.irqs - irq0;
    if (round > 0) rounds.push({ tv, tr });
  }
  const { tv, tr } = medianRound(rounds);
  const b = Buffer.alloc(4096);
  const s0 = performance.now();
  for (const s of sectors) readSync(fd, b, 0, 4096, s * 512);
  const ts = performance.now() - s0;
  closeSync(fd);
  if (rig.blk.stats.ioerr !== 0) throw new Error("blk bench saw I/O errors");
  return result("virtio-blk-4k", (tv * 1000) / N4K, "us/req", (tr * 1000) / N4K, {
    goal: "ratio <= 1.3",
    baseline: "fs.read (pread on the libuv pool) of the same blocks, same depth, same run",
    depth: DEPTH,
    requests: N4K,
    interruptsPerRequest: +(irqs / N4K).toFixed(3),
    readSyncUs: (ts * 1000) / N4K,
    inlineReads: { ...rig.backend.inlineStats },
    rounds: rounds.map((r) => +(r.tv / r.tr).toFixed(3)),
    loadavg: loadavg().map((x) => +x.toFixed(2)),
  });
}

async function blkSeq(path) {
  const DEPTH = 16;
  const LEN = 64 * 1024;
  const rig = blkRig(path, DEPTH);
  const fd = openSync(path, "r");
  const bufs = Array.from({ length: DEPTH }, () => Buffer.alloc(LEN));
  const all = Array.from({ length: FILE_SIZE / LEN }, (_, i) => (i * LEN) / 512);
  const rounds = [];
  for (let round = 0; round < ROUNDS; round++) {
    let tv = 0;
    let tr = 0;
    for (let i = 0; i < all.length; i += DEPTH) {
      const batch = all.slice(i, i + DEPTH);
      tv += await runBatch(rig, batch, LEN);
      tr += await rawBatch(fd, batch.map((s) => s * 512), LEN, bufs);
    }
    if (round > 0) rounds.push({ tv, tr });
  }
  const { tv, tr } = medianRound(rounds);
  closeSync(fd);
  const mb = FILE_SIZE / 1e6;
  const row = result("virtio-blk-seq", mb / (tv / 1000), "MB/s", mb / (tr / 1000), {
    goal: "ratio >= 0.8",
    baseline: "fs.read of the same 64 KiB blocks, same depth, same run",
    depth: DEPTH,
    rounds: rounds.map((r) => +(r.tr / r.tv).toFixed(3)),
    loadavg: loadavg().map((x) => +x.toFixed(2)),
  });
  return row;
}

async function vsockStream(dir) {
  const TOTAL = 64 << 20;
  const payload = randomBytes(1 << 20);
  // Baseline: the same bytes through a plain Unix socket.
  const plainPath = join(dir, "plain.sock");
  const plain = await new Promise((resolve) => {
    const srv = createServer((s) => {
      let got = 0;
      const t0 = performance.now();
      s.on("data", (d) => {
        got += d.length;
        if (got >= TOTAL) {
          resolve(performance.now() - t0);
          s.destroy();
          srv.close();
        }
      });
    });
    srv.listen(plainPath, () => {
      const c = connect(plainPath);
      let sent = 0;
      const pump = () => {
        while (sent < TOTAL) {
          sent += payload.length;
          if (!c.write(payload)) return c.once("drain", pump);
        }
        c.end();
      };
      c.on("connect", pump);
    });
  });

  const uds = join(dir, "v.sock");
  const dev = new VirtioVsock({ guestCid: 3, udsPath: uds });
  await dev.listen();
  const ram = 64 << 20;
  const mem = GuestMemoryMap.allocate([{ base: 0x100000, size: ram }]);
  const heap = new GuestHeap(0x100000, ram);
  const t = new MmioTransport(dev, { mem, interrupt: { trigger() {} } });
  const drv = new TestDriver(t, mem, heap);
  const [rx, tx] = drv.start(bit(VIRTIO_RING_F_EVENT_IDX), [256, 256, 8]);
  const HDR = VirtioVsockHdrLayout.size;
  const RXB = HDR + 64 * 1024;
  for (let i = 0; i < 256; i++) rx.add([{ addr: heap.alloc(RXB), len: RXB, writable: true }]);
  drv.kick(0);
  const txBuf = heap.alloc(HDR);
  let fwd = 0;
  let reported = 0;
  let hostPort = 0;
  const send = (op) => {
    mem.write(txBuf, VirtioVsockHdrLayout.encode({ srcCid: 3n, dstCid: 2n, srcPort: 99, dstPort: hostPort, len: 0, type: 1, op, flags: 0, bufAlloc: 1 << 20, fwdCnt: fwd >>> 0 }));
    tx.add([{ addr: txBuf, len: HDR, writable: false }]);
    drv.kick(1);
    tx.takeUsed();
    reported = fwd;
  };
  const sock = connect(uds);
  await new Promise((r) => sock.once("connect", r));
  sock.write("CONNECT 99\n");
  let t0 = 0;
  const ms = await new Promise((resolve) => {
    const loop = () => {
      const used = rx.takeUsed();
      for (const u of used) {
        const h = VirtioVsockHdrLayout.decode(mem.slice(u.elements[0].addr, HDR));
        if (h.op === 1) {
          hostPort = h.srcPort;
          send(VIRTIO_VSOCK_OP_RESPONSE);
          sock.once("data", () => {
            t0 = performance.now();
            let sent = 0;
            const pump = () => {
              while (sent < TOTAL) {
                sent += payload.length;
                if (!sock.write(payload)) return sock.once("drain", pump);
              }
            };
            pump();
          });
        } else if (h.op === VIRTIO_VSOCK_OP_RW) fwd += h.len;
        rx.add([{ addr: u.elements[0].addr, len: RXB, writable: true }]);
      }
      if (used.length) drv.kick(0);
      if (fwd - reported >= 256 * 1024) send(VIRTIO_VSOCK_OP_CREDIT_UPDATE);
      if (fwd >= TOTAL) return resolve(performance.now() - t0);
      setImmediate(loop);
    };
    loop();
  });
  sock.destroy();
  await dev.close();
  const mb = TOTAL / 1e6;
  return result("virtio-vsock-stream", mb / (ms / 1000), "MB/s", mb / (plain / 1000), {
    baseline: "the same 64 MiB through a plain Unix-socket copy",
    loadavg: loadavg().map((x) => +x.toFixed(2)),
  });
}

export default async function bench() {
  const dir = mkdtempSync(join(tmpdir(), "tsvmm-virtio-bench-"));
  const path = join(dir, "disk.img");
  writeFileSync(path, randomBytes(FILE_SIZE));
  try {
    const only = process.env.TSVMM_BENCH_VIRTIO_ONLY;
    const rows = [];
    if (!only || only === "blk-4k") rows.push(await blk4k(path));
    if (!only || only === "blk-seq") rows.push(await blkSeq(path));
    if (!only || only === "vsock") rows.push(await vsockStream(dir));
    return rows;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
