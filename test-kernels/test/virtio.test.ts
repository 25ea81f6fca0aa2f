import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, connect as netConnect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { GuestMemory } from "@tsvmm/abi";
import { kvmAvailable } from "@tsvmm/kvm-backend";
import { main, type VmmBuilder } from "@tsvmm/vmm";
import { build } from "esbuild";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildGuests, type GuestCase, guestPath, RAM_BYTES, type RunResult, runGuest } from "../harness/guest.js";

// Guests that drive tsvmm's virtio devices from inside, with the test-kernels virtio-mmio driver
// (lib/virtio.c): each device is attached through VmmBuilder exactly as users attach it.

const PARAMS = 0x6000;
const PARAMS_MAGIC = 0x736d7261706f6976n; // "vioparms", lib/virtio.h
const VERSION_1 = 1n << 32n;
const RING_PACKED = 1n << 34n;

function writeParams(memory: GuestMemory, args: readonly bigint[]): void {
  memory.writeU64(PARAMS, PARAMS_MAGIC);
  for (const [i, a] of args.entries()) memory.writeU64(PARAMS + 8 + 8 * i, BigInt.asUintN(64, a));
}

interface VirtioRun {
  readonly r: RunResult;
  readonly errors: unknown[];
}

async function runVirtio(name: string, attach: (b: VmmBuilder) => void, extra: Partial<GuestCase> & { args?: readonly bigint[] } = {}): Promise<VirtioRun> {
  const errors: unknown[] = [];
  const { args, ...rest } = extra;
  const r = await runGuest({
    name,
    irqchip: true,
    timeoutMs: 10_000,
    prepare: ({ memory }) => {
      if (args !== undefined) writeParams(memory, args);
      return undefined;
    },
    configure: (b) => {
      attach(b);
      b.onDeviceError((e) => errors.push(e));
    },
    ...rest,
  });
  return { r, errors };
}

function expectCleanExit(r: RunResult, code = 0): void {
  expect(r.end, `console: ${r.console} values: ${JSON.stringify(r.values.map((v) => [v.name, v.value.toString(16)]))}`).toEqual({ kind: "exit" });
  expect(r.exitCode).toBe(code);
}

function values(r: RunResult, name: string): bigint[] {
  return r.values.filter((v) => v.name === name).map((v) => v.value);
}

const M64 = (1n << 64n) - 1n;

/** The guests' pattern (tests/virtio-blk.c): xorshift64* words, little-endian. */
function pattern(seed: bigint, bytes: number): Buffer {
  const out = Buffer.alloc(bytes);
  let s = seed;
  for (let i = 0; i < bytes / 8; i++) {
    s ^= s >> 12n;
    s = (s ^ (s << 25n)) & M64;
    s ^= s >> 27n;
    out.writeBigUInt64LE((s * 0x2545f4914f6cdd1dn) & M64, i * 8);
  }
  return out;
}

/** FNV-1a over 64-bit words, as the guests hash what they read. */
function hashWords(b: Buffer): bigint {
  let h = 0xcbf29ce484222325n;
  for (let i = 0; i < b.length; i += 8) h = ((h ^ b.readBigUInt64LE(i)) * 0x100000001b3n) & M64;
  return h;
}

/** FNV-1a 32 over bytes, as tests/virtio-vsock.c hashes its streams. */
function fnv32(b: Buffer): bigint {
  let h = 0x811c9dc5;
  for (const x of b) h = Math.imul(h ^ x, 16777619) >>> 0;
  return BigInt(h);
}

/** Collect a socket's bytes until the peer ends its side; then end ours (after our writes). */
function exchangeOn(s: Socket, send: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    s.on("data", (d: Buffer) => chunks.push(d));
    s.on("error", reject);
    s.on("end", () => {
      s.end();
      resolve(Buffer.concat(chunks));
    });
    s.write(send);
  });
}

function randomSeed(): bigint {
  return randomBytes(8).readBigUInt64LE(0) | 1n;
}

let dir = "";
const figures: Record<string, string> = {};
const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..");
// The virtio-net VM must run in the TAP's namespace: a child process under `unshare -n` runs the
// fixture, bundled from the sources next to the kvm-backend addon (where its loader looks). The
// bundle is made while the other cases run.
const netVmBundlePath = join(root, "packages", "kvm-backend", "build", `virtio-net-vm-${process.pid}.cjs`);
let netVmBundle: Promise<string> | undefined;

afterAll(() => {
  rmSync(netVmBundlePath, { force: true });
  if (dir !== "") rmSync(dir, { recursive: true, force: true });
  if (Object.keys(figures).length > 0) console.log(`virtio guest figures: ${JSON.stringify(figures)}`);
});

beforeAll(() => {
  const alias = Object.fromEntries(readdirSync(join(root, "packages")).map((p) => [`@tsvmm/${p}`, join(root, "packages", p, "src", "index.ts")]));
  netVmBundle = build({
    entryPoints: [join(here, "fixtures", "virtio-net-vm.ts")], bundle: true, platform: "node", format: "cjs", target: "node20",
    outfile: netVmBundlePath, logLevel: "silent", alias,
  }).then(() => netVmBundlePath);
  // An unawaited rejection would be reported on its own; the net case awaits and sees it.
  netVmBundle.catch(() => {});
  dir = mkdtempSync(join(tmpdir(), "tsvmm-virtio-guests-"));
  buildGuests();
  expect(kvmAvailable(), "/dev/kvm must be readable and writable to run the virtio guests").toBe(true);
});

describe("virtio devices driven by guests on /dev/kvm", () => {
  it("virtio-rng: 32 bytes from the host CSPRNG on a split and a packed ring; runs differ", async () => {
    const words: bigint[][] = [];
    for (const packed of [false, true]) {
      const { r, errors } = await runVirtio("virtio-rng", (b) => b.rng(), { args: [packed ? 1n : 0n] });
      expectCleanExit(r);
      expect(errors).toEqual([]);
      expect(r.value("rng.device-id")).toBe(4n);
      expect(r.value("rng.features")).toBe(VERSION_1 | (packed ? RING_PACKED : 0n));
      expect(r.value("rng.status")).toBe(0xfn);
      expect(r.value("rng.token-match")).toBe(1n);
      expect(r.value("rng.len")).toBe(32n);
      const w = values(r, "rng.word");
      expect(w).toHaveLength(4);
      words.push(w);
    }
    // 256 random bits twice: equal only if the device did not fill the buffer from the CSPRNG.
    expect(words[0]).not.toEqual(words[1]);
    expect(words[0]!.some((w) => w !== 0n)).toBe(true);
  });

  const BLK_FEATURE_FLUSH = 1n << 9n;
  const EVENT_IDX = 1n << 29n;
  const INDIRECT = 1n << 28n;
  const SECTOR = 64;
  const BYTES = 1 << 20;

  it("virtio-blk: pattern written, FLUSHed (then in the host file), read back; a second VM after a restart reads it on a packed ring; GET_ID; past-end IOERR", async () => {
    const img = join(dir, "blk-restart.img");
    const initial = randomBytes(2 << 20);
    writeFileSync(img, initial);
    const seedA = randomSeed();
    const seedB = randomSeed();
    const region = (b: Buffer) => b.subarray(SECTOR * 512, SECTOR * 512 + BYTES);
    const expectedA = pattern(seedA, BYTES);

    // VM 1: split ring, EVENT_IDX, polling.
    let fileAtFlush: Buffer | undefined;
    const one = await runVirtio("virtio-blk", (b) => b.disk(img), {
      args: [2n, 0n, seedA, BigInt(SECTOR), BigInt(BYTES), 16n],
      onValue: (name) => {
        if (name === "blk.flushed") fileAtFlush = readFileSync(img);
      },
    });
    expectCleanExit(one.r);
    expect(one.errors).toEqual([]);
    const r1 = one.r;
    expect(r1.value("blk.features")).toBe(VERSION_1 | EVENT_IDX | BLK_FEATURE_FLUSH);
    expect(r1.value("blk.capacity")).toBe(BigInt(initial.length / 512));
    expect(r1.value("blk.blk-size")).toBe(512n);
    // GET_ID: the VMM names a disk by the last 20 characters of its path, NUL-padded to 20 bytes.
    expect(r1.value("blk.get-id-status")).toBe(0n);
    expect(r1.value("blk.get-id-used")).toBe(21n);
    expect(r1.console).toContain(`blk.id=${img.slice(-20)}\n`);
    expect(r1.value("blk.write-status")).toBe(0n);
    expect(r1.value("blk.write-used")).toBe(1n);
    expect(r1.value("blk.flush-status")).toBe(0n);
    // When the guest saw FLUSH complete, the host file already held the data.
    expect(fileAtFlush && region(fileAtFlush).equals(expectedA)).toBe(true);
    expect(r1.value("blk.read-status")).toBe(0n);
    expect(r1.value("blk.read-used")).toBe(BigInt(BYTES + 1));
    expect(r1.value("blk.readback-mismatches")).toBe(0n);
    expect(r1.value("blk.past-end-status")).toBe(1n); // VIRTIO_BLK_S_IOERR
    const after1 = readFileSync(img);
    expect(region(after1).equals(expectedA)).toBe(true);
    // Nothing outside the region changed.
    expect(after1.subarray(0, SECTOR * 512).equals(initial.subarray(0, SECTOR * 512))).toBe(true);
    expect(after1.subarray(SECTOR * 512 + BYTES).equals(initial.subarray(SECTOR * 512 + BYTES))).toBe(true);

    // VM 2, a new VM on the same file: packed ring, EVENT_IDX, the interrupt, indirect descriptors.
    const two = await runVirtio("virtio-blk", (b) => b.disk(img), { args: [1n | 2n | 4n | 8n, seedA, seedB, BigInt(SECTOR), BigInt(BYTES), 16n] });
    expectCleanExit(two.r);
    expect(two.errors).toEqual([]);
    const r2 = two.r;
    expect(r2.value("blk.features")).toBe(VERSION_1 | RING_PACKED | EVENT_IDX | INDIRECT | BLK_FEATURE_FLUSH);
    expect(r2.value("blk.verify-status")).toBe(0n);
    expect(r2.value("blk.verify-mismatches")).toBe(0n);
    expect(r2.value("blk.verify-hash")).toBe(hashWords(expectedA));
    expect(r2.value("blk.write-status")).toBe(0n);
    expect(r2.value("blk.flush-status")).toBe(0n);
    expect(r2.value("blk.readback-mismatches")).toBe(0n);
    expect(r2.value("blk.past-end-status")).toBe(1n);
    // Every request completed through the level-triggered interrupt.
    expect(r2.value("blk.irqs")).toBeGreaterThanOrEqual(6n);
    expect(region(readFileSync(img)).equals(pattern(seedB, BYTES))).toBe(true);

    for (const [label, r] of [["split", r1], ["packed", r2]] as const) {
      const at = (n: string) => r.values.find((v) => v.name === n)!.at;
      const mbps = (n: string) => ((BYTES / (at(`blk.${n}-done`) - at(`blk.${n}-start`))) * 1000) / (1 << 20);
      figures[`blk-${label}-1MiB-write-MiB/s`] = mbps("write").toFixed(0);
      // 16 back-to-back 1 MiB reads, each waited for (polling on the split ring, the interrupt on the packed one).
      figures[`blk-${label}-16x1MiB-read-MiB/s`] = (((16 * BYTES) / (at("blk.bench-done") - at("blk.bench-start"))) * 1000 / (1 << 20)).toFixed(0);
    }
  });

  it("virtio-blk read-only: VIRTIO_BLK_F_RO offered, a write refused with IOERR and the file unchanged, reads work (split and packed)", async () => {
    const img = join(dir, "blk-ro.img");
    const content = randomBytes(64 << 10);
    writeFileSync(img, content);
    for (const packed of [false, true]) {
      const { r, errors } = await runVirtio("virtio-blk-ro", (b) => b.disk(img, { readOnly: true }), { args: [packed ? 1n : 0n] });
      expectCleanExit(r);
      expect(errors).toEqual([]);
      const RO = 1n << 5n;
      expect(r.value("ro.offered") & RO).toBe(RO);
      expect(r.value("ro.features")).toBe(VERSION_1 | RO | BLK_FEATURE_FLUSH | (packed ? RING_PACKED : 0n));
      expect(r.value("ro.write-status")).toBe(1n); // VIRTIO_BLK_S_IOERR
      expect(r.value("ro.write-used")).toBe(1n);
      expect(r.value("ro.flush-status")).toBe(0n);
      expect(r.value("ro.read-status")).toBe(0n);
      expect(r.value("ro.read-used")).toBe(4097n);
      expect(r.value("ro.read-hash")).toBe(hashWords(content.subarray(0, 4096)));
      // A refused request is the request's failure, not the device's: no NEEDS_RESET.
      expect(r.value("ro.device-status")).toBe(0xfn);
      expect(readFileSync(img).equals(content)).toBe(true);
    }
  });

  it("virtio-console: guest text reaches the console sink as source \"virtio\"; host input (vmm.consoleInput) reaches the guest", async () => {
    const nonce = randomSeed();
    const typed = `typed by the host ${randomBytes(6).toString("hex")}\n`;
    const { r, errors } = await runVirtio("virtio-console", (b) => b.virtioConsole(), {
      args: [nonce],
      onValue: (name, _v, ctx) => {
        if (name === "con.ready") ctx.vmm.consoleInput(Buffer.from(typed));
      },
    });
    expectCleanExit(r);
    expect(errors).toEqual([]);
    expect(r.value("con.features")).toBe(VERSION_1 | 1n | 4n);
    expect([r.value("con.cols"), r.value("con.rows")]).toEqual([80n, 25n]);
    expect(r.value("con.tx")).toBe(0n);
    expect(r.value("con.rx-len")).toBe(BigInt(typed.length));
    expect(r.value("con.echo")).toBe(0n);
    // Guest -> host: the emergency-write byte, the line, then the echo of what the host typed, all from the virtio port.
    expect(r.virtioConsole).toBe(`!virtio-console says ${nonce.toString(16).padStart(16, "0")}\necho:${typed}`);
    // Host -> guest: the guest saw exactly the typed bytes (it reports them on the hypercall console).
    expect(r.console).toContain(`rx=${typed}`);
    // The guest waited by halting for the interrupt (completions that came while it was in a
    // hypercall share one interrupt with the next, so the count is not fixed).
    expect(r.value("con.irqs")).toBeGreaterThanOrEqual(1n);
  });

  it("virtio-irq: device 1 answers at 0xd0001000 on GSI 17, level-triggered: EOI without the ack gets it delivered again, an edge-triggered pin does not", async () => {
    const statuses: Record<string, bigint[]> = {};
    for (const edge of [false, true]) {
      const { r, errors } = await runVirtio("virtio-irq", (b) => b.virtioConsole().rng(), { args: [edge ? 1n : 0n] });
      expectCleanExit(r);
      expect(errors).toEqual([]);
      expect(r.value("irq.device-id")).toBe(4n);
      expect(r.value("irq.window")).toBe(0xd0001000n);
      expect(r.value("irq.used")).toBeGreaterThanOrEqual(0n);
      expect(r.value("irq.len")).toBe(16n);
      expect(r.value("irq.status-after-ack")).toBe(0n);
      // The redirection entry as the guest programmed it (vector, bit 15 = level), Remote IRR (bit 14) clear.
      expect(r.value("irq.rte")).toBe(0x33n | (edge ? 0n : 1n << 15n));
      statuses[edge ? "edge" : "level"] = values(r, "irq.status");
    }
    // Level: the first interrupt was EOI'd with InterruptStatus still 1 (VIRTIO_MMIO_INT_VRING), so the
    // IOAPIC delivered it again, still 1, and the handler acknowledged it. Deliveries after that (this
    // host's KVM re-delivers once after the acknowledged EOI) see 0: the ack lowered the line.
    const level = statuses.level!;
    expect(level.slice(0, 2)).toEqual([1n, 1n]);
    expect(level.slice(2).every((s) => s === 0n)).toBe(true);
    expect(level.length).toBeLessThanOrEqual(3);
    // Edge: one delivery, nothing more while the cause stayed pending.
    expect(statuses.edge).toEqual([1n]);
  });

  it("virtio-hostile: loops, buffers outside or straddling RAM, avail index jumps, over-long packed chains end in DEVICE_NEEDS_RESET; the VMM runs on and the reset device works", async () => {
    const { r, errors } = await runVirtio("virtio-hostile", (b) => b.rng(), { args: [BigInt(RAM_BYTES)] });
    expectCleanExit(r);
    for (const name of ["hostile.loop", "hostile.outside-ram", "hostile.straddle", "hostile.index-jump", "hostile.packed-too-long"]) {
      // DEVICE_NEEDS_RESET on top of what the driver had set (ACK | DRIVER | FEATURES_OK | DRIVER_OK).
      expect(r.value(name), name).toBe(0x4fn);
    }
    // Each time the config-change cause was raised with it.
    expect(values(r, "hostile.isr").every((v) => (v & 2n) === 2n)).toBe(true);
    expect(values(r, "hostile.isr")).toHaveLength(5);
    expect(values(r, "hostile.recovered")).toEqual([1n, 1n, 1n, 1n, 1n]);
    expect(r.value("hostile.canary")).toBe(0x0123456789abcdefn);
    const codes = errors.map((e) => (e as { code?: string }).code);
    expect(codes).toEqual(["VIRTQ_CHAIN_TOO_LONG", "VIRTQ_BUFFER_OUT_OF_RANGE", "VIRTQ_BUFFER_OUT_OF_RANGE", "VIRTQ_AVAIL_INDEX_JUMP", "VIRTQ_CHAIN_TOO_LONG"]);
  });

  it("virtio-vsock: guest connects to a host listener and the host connects to a guest listener (CONNECT); each streams more than a credit window both ways; hashes match", async () => {
    const uds = join(dir, "vsock.sock");
    const CID = 42;
    const HOST_PORT = 5000;
    const GUEST_PORT = 6000;
    const GUEST_BYTES = 768 << 10; // 3x the device's 256 KiB buf_alloc
    const hostOut = randomBytes(256 << 10); // 8x the guest's 32 KiB buf_alloc
    const hostIn = randomBytes(256 << 10);
    let outbound: Promise<Buffer> | undefined;
    const server = createServer({ allowHalfOpen: true }, (s) => {
      outbound = exchangeOn(s, hostOut);
    });
    await new Promise<void>((resolve) => server.listen(`${uds}_${HOST_PORT}`, resolve));
    let inbound: Promise<Buffer> | undefined;
    try {
      const { r, errors } = await runVirtio("virtio-vsock", (b) => b.vsock(CID, uds), {
        args: [BigInt(GUEST_BYTES), BigInt(HOST_PORT), BigInt(GUEST_PORT), randomSeed()],
        timeoutMs: 20_000,
        onValue: (name) => {
          if (name !== "vsock.listening") return;
          const s = netConnect({ path: uds, allowHalfOpen: true });
          s.write(`CONNECT ${GUEST_PORT}\n`);
          inbound = exchangeOn(s, hostIn);
        },
      });
      expectCleanExit(r);
      expect(errors).toEqual([]);
      expect(r.value("vsock.cid")).toBe(BigInt(CID));
      const fromGuestOut = await outbound!;
      const fromGuestIn = await inbound!;
      // The host-initiated stream starts with the device's "OK <host port>\n".
      const ok = fromGuestIn.subarray(0, fromGuestIn.indexOf(10) + 1).toString();
      expect(ok).toMatch(/^OK \d+\n$/);
      const txHash = r.value("vsock.tx-hash");
      for (const [dir_, host, got] of [["out", hostOut, fromGuestOut], ["in", hostIn, fromGuestIn.subarray(ok.length)]] as const) {
        expect(r.value(`vsock.${dir_}.result`), dir_).toBe(0n);
        // host -> guest, 8x the guest's window: the device never ran more than 32 KiB past the
        // fwd_cnt the guest had told it, so it went on only as the guest handed out credit.
        expect(r.value(`vsock.${dir_}.rx-bytes`)).toBe(BigInt(host.length));
        expect(r.value(`vsock.${dir_}.rx-hash`)).toBe(fnv32(host));
        expect(r.value(`vsock.${dir_}.rx-window-max`)).toBeGreaterThan(0n);
        expect(r.value(`vsock.${dir_}.rx-window-max`)).toBeLessThanOrEqual(32n << 10n);
        // guest -> host, 3x the device's window (it told the guest its buf_alloc); going past the
        // credit would have been answered with RST (result != 0).
        expect(r.value(`vsock.${dir_}.peer-buf-alloc`)).toBe(256n << 10n);
        expect(r.value(`vsock.${dir_}.sent`)).toBe(BigInt(GUEST_BYTES));
        expect(got.length).toBe(GUEST_BYTES);
        expect(fnv32(got)).toBe(txHash);
      }
      const at = (n: string) => r.values.find((v) => v.name === n)!.at;
      figures["vsock-guest-connect-MiB/s-both-ways"] = (((GUEST_BYTES + hostOut.length) / (at("vsock.out.result") - at("vsock.tx-hash"))) * 1000 / (1 << 20)).toFixed(1);
    } finally {
      server.close();
    }
  });

  it("tsvmm run virtio-blk.elf --disk FILE: the CLI attaches the disk, the guest's default pattern lands in the file, status 0", async () => {
    const img = join(dir, "cli.img");
    writeFileSync(img, Buffer.alloc(1 << 20));
    let out = "";
    let err = "";
    const code = await main(["run", guestPath("virtio-blk"), "--disk", img, "--timeout", "20"], {
      stdout: (s) => {
        out += s.toString();
      },
      stderr: (s) => {
        err += s;
      },
    });
    expect(code, err).toBe(0);
    expect(out).toContain(`blk.id=${img.slice(-20)}\n`);
    expect(out).toContain("virtio-blk: 0 failures\n");
    // The guest's defaults without a parameter block: seed 0x5eed5eed12345678, 64 KiB at sector 8.
    const file = readFileSync(img);
    expect(file.subarray(8 * 512, 8 * 512 + 65536).equals(pattern(0x5eed5eed12345678n, 65536))).toBe(true);
    expect(file.subarray(0, 8 * 512).every((b) => b === 0)).toBe(true);
    expect(file.subarray(8 * 512 + 65536).every((b) => b === 0)).toBe(true);
  });

  it("virtio-net: through a TAP in a network namespace of the test's own, the guest's ARP is answered by the host kernel and its UDP datagram by a host socket", async () => {
    const bundle = await netVmBundle!;
    const nonce = randomSeed();
    const child = spawnSync("unshare", ["-n", process.execPath, bundle, guestPath("virtio-net"), nonce.toString()], { encoding: "utf8", timeout: 30_000 });
    expect(child.error).toBeUndefined();
    const out = JSON.parse(String(child.stdout).trim().split("\n").pop() ?? "{}") as {
      error?: string; tapMac: string; reason: string; exitCode: number; message: string; values: [string, string][]; console: string;
      received: { msg: string; from: string }[]; errors: string[];
    };
    expect(out.error, String(child.stderr)).toBeUndefined();
    expect([out.reason, out.exitCode], `${out.message} ${out.console} ${JSON.stringify(out.values)}`).toEqual(["guest-exit", 0]);
    expect(out.errors).toEqual([]);
    const v = new Map(out.values);
    const macNum = (m: string) => BigInt(`0x${m.replaceAll(":", "")}`).toString();
    expect(v.get("net.mac")).toBe(macNum("52:54:00:12:34:56"));
    expect(v.get("net.link")).toBe("1"); // VIRTIO_NET_S_LINK_UP
    expect(v.get("net.arp-sent")).toBe("0");
    // The ARP answer came from the host kernel: it carries the TAP's own MAC.
    expect(v.get("net.host-mac")).toBe(macNum(out.tapMac));
    const ping = `ping ${nonce.toString(16).padStart(16, "0")}`;
    // Guest -> host: the datagram reached the host socket, from the guest's address.
    expect(out.received).toEqual([{ msg: ping, from: "10.201.0.2:4444" }]);
    // Host -> guest: the answer reached the guest.
    expect(out.console).toContain(`net.rx=pong ${ping}\n`);
    expect(v.get("net.rx-len")).toBe(String(`pong ${ping}`.length));
    // The namespace went with the child.
    expect(spawnSync("ip", ["link", "show", "tsvmmvn0"], { stdio: "pipe" }).status).not.toBe(0);
  });
});
