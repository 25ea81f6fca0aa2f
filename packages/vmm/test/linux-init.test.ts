import { execFileSync, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { requireKvm } from "@tsvmm/kvm-backend";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { busyboxInitramfs, type InitramfsFile } from "../src/initramfs.js";

// The one full Linux boot of the suite: Debian's cloud vmlinux through PVH on the built `tsvmm`
// CLI with --emulate, to the /init of a busybox initramfs written here (newc cpio, Debian's
// busybox-static from .ci/setup). On this project's PVM host KVM stops the kernel on instructions
// it cannot emulate (lock cmpxchg16b, int3, ...) and user-mode SYSCALL stays at CPL3: the VMM's
// emulator and its SYSCALL fix-up carry it to init.
// Then Linux's own virtio drivers are the client of the VMM's devices: /init loads Debian's modules
// of the same release (virtio_mmio finds the devices in the DSDT as LNRO0005), writes and reads the
// disk, reads the rng, writes to the virtio console, talks vsock both ways (a static C program,
// linux-guest/vsock.c: busybox has no AF_VSOCK) and pings the host through virtio-net and a TAP in a
// network namespace of the VMM's own; then it powers off.
const hasKvm = requireKvm();
const root = join(__dirname, "..", "..", "..");
const cli = join(root, "packages", "vmm", "bin", "tsvmm.cjs");
// Beyond the console: what only costs time at emulated-CPL0 speed (zeroing every allocated page,
// ftrace's check of weak functions, soft-lockup reports of the slowness itself).
const CMDLINE = "console=ttyS0 earlyprintk=ttyS0 nowatchdog init_on_alloc=0 initcall_blacklist=ftrace_check_for_weak_functions";
const MARKER = "TSVMM-INIT-REACHED";
const DONE = "TSVMM-INIT-DONE";
const BUSYBOX = "/bin/busybox";
const MODULES = ["virtio_mmio", "virtio_blk", "virtio_rng", "virtio_console", "virtio_net", "vmw_vsock_virtio_transport"];
const TAP = "tsvmm-lx0";
const GUEST_MAC = "52:54:00:12:34:56";
const GUEST_CID = 3;
const PORT_TO_HOST = 1234;
const PORT_TO_GUEST = 5000;
// The disk: the host fills its first 64 KiB (the guest reports their md5), the guest writes a
// pattern at 64 KiB (the host file is checked byte for byte after the VM ends).
const DISK_SIZE = 1 << 20;
const HOST_PART = randomBytes(65536);
const PATTERN_LINE = "TSVMM-DISK-PATTERN\n";
const PATTERN = Buffer.from(PATTERN_LINE.repeat(Math.ceil(65536 / PATTERN_LINE.length))).subarray(0, 65536);
const SIGNATURE_MAGIC = "~Module signature appended~\n";
const md5 = (b: Uint8Array) => createHash("md5").update(b).digest("hex");

// `timeout` bounds every device step: a driver that hangs costs one step, not the boot.
const SCRIPT = `#!/bin/busybox sh
export PATH=/bin
/bin/busybox --install -s /bin
mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo ${MARKER} $(uname -r)
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko || echo "TSVMM-INSMOD-FAILED $m"; done
echo "TSVMM-MODULES $(cut -d' ' -f1 /proc/modules | sort | tr '\\n' ' ')"
echo "TSVMM-VIRTIO $(for d in /sys/bus/virtio/devices/*; do echo $(cat $d/device):$(basename $(readlink $d/driver)); done | tr '\\n' ' ')"
echo "TSVMM-BLK-SIZE $(cat /sys/block/vda/size)"
echo "TSVMM-BLK-HOST $(timeout 60 dd if=/dev/vda bs=4096 count=16 2>/dev/null | md5sum | cut -d' ' -f1)"
yes TSVMM-DISK-PATTERN | head -c 65536 | timeout 60 dd of=/dev/vda bs=4096 seek=16 conv=fsync 2>/dev/null
echo 3 > /proc/sys/vm/drop_caches
echo "TSVMM-BLK-READBACK $(timeout 60 dd if=/dev/vda bs=4096 skip=16 count=16 2>/dev/null | md5sum | cut -d' ' -f1)"
echo "TSVMM-RNG-CURRENT $(cat /sys/class/misc/hw_random/rng_current)"
echo "TSVMM-RNG $(timeout 60 dd if=/dev/hwrng bs=32 count=1 2>/dev/null | xxd -p -c 64)"
echo TSVMM-HVC-$((6 * 7)) > /dev/hvc0
timeout 60 /bin/vsock connect 2 ${PORT_TO_HOST} hello-from-guest
timeout 120 /bin/vsock listen ${PORT_TO_GUEST} answer-from-guest
echo "TSVMM-NET-MAC $(cat /sys/class/net/eth0/address)"
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
echo "TSVMM-NET-PING $(timeout 60 ping -c 2 -W 20 10.0.2.1 | grep -c 'bytes from 10.0.2.1')"
dmesg | grep -i virtio
echo ${DONE}
poweroff -f
`;

let dir = "";
let initramfs = "";
let vmlinux = "";
let disk = "";
let uds = "";
afterAll(() => rmSync(dir, { recursive: true, force: true }));
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "tsvmm-linux-init-"));
  initramfs = join(dir, "initramfs.cpio");
  disk = join(dir, "disk.img");
  uds = join(dir, "vsock.sock");
  const image = Buffer.alloc(DISK_SIZE);
  HOST_PART.copy(image, 0);
  writeFileSync(disk, image);
  const script = (name: string) => join(root, "packages", "elf-loader", "scripts", name);
  const out = execFileSync(process.execPath, [script("fetch-debian-kernel.mjs")], { encoding: "utf8", timeout: 600_000 });
  vmlinux = (JSON.parse(out.trim().split("\n").pop() ?? "{}") as { vmlinux: string }).vmlinux;
  const mods = JSON.parse(execFileSync(process.execPath, [script("fetch-debian-modules.mjs"), ...MODULES], { encoding: "utf8", timeout: 600_000 }).trim().split("\n").pop() ?? "{}") as {
    modules: { name: string; path: string }[];
  };
  const vsockBin = join(dir, "vsock");
  execFileSync("gcc", ["-static", "-nostdlib", "-ffreestanding", "-fno-stack-protector", "-fno-pie", "-no-pie", "-Os", "-s", "-Wall", "-Werror", "-o", vsockBin, join(__dirname, "linux-guest", "vsock.c")], { stdio: "pipe" });
  const files: InitramfsFile[] = [
    ...mods.modules.map((m) => ({ path: `lib/modules/${m.name}.ko`, data: unsigned(m.path, join(dir, `${m.name}.ko`)) })),
    { path: "lib/modules/order", data: Buffer.from(`${mods.modules.map((m) => m.name).join("\n")}\n`) },
    { path: "bin/vsock", data: readFileSync(vsockBin), mode: 0o755 },
  ];
  writeFileSync(initramfs, busyboxInitramfs({ busyboxPath: BUSYBOX, script: SCRIPT, files }));
  if (!existsSync(join(root, "packages", "vmm", "dist", "cli.cjs"))) execFileSync("npx", ["tsup"], { cwd: join(root, "packages", "vmm"), stdio: "ignore" });
}, 600_000);

/**
 * The module at `from` without Debian's signature, written to `to`. The kernel checks a signature
 * by hashing the whole module and verifying RSA in kernel code, which this host emulates: that
 * took ~70 of the ~250 s this test took with the twelve signed modules. The signature is appended
 * after the ELF file, and objcopy writes the ELF file alone; the kernel (not enforcing signatures)
 * then loads the module and taints itself once.
 */
function unsigned(from: string, to: string): Buffer {
  const signed = readFileSync(from);
  if (!signed.toString("latin1", signed.length - SIGNATURE_MAGIC.length).endsWith(SIGNATURE_MAGIC)) throw new Error(`${from}: no module signature`);
  execFileSync("objcopy", [from, to], { stdio: "pipe" });
  const elf = readFileSync(to);
  if (elf.length >= signed.length || !elf.equals(signed.subarray(0, elf.length))) throw new Error(`${from}: objcopy did not just drop the signature`);
  return elf;
}

/** The host end of guest-initiated vsock connections to PORT_TO_HOST: what arrived, answered. */
function hostListener(): { server: Server; received: Promise<string> } {
  let done: (s: string) => void = () => {};
  const received = new Promise<string>((r) => {
    done = r;
  });
  const server = createServer((s) => {
    let got = "";
    s.setEncoding("utf8");
    s.on("data", (d: string) => {
      got += d;
    });
    s.on("end", () => {
      s.end(`host-saw-${got}`);
      done(got);
    });
    s.on("error", () => {});
  });
  server.listen(`${uds}_${PORT_TO_HOST}`);
  return { server, received };
}

/** A host-initiated connection through the VMM's socket: CONNECT, a line, then what the guest answers. */
function connectToGuest(): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(uds);
    let got = "";
    s.setEncoding("utf8");
    s.on("connect", () => s.write(`CONNECT ${PORT_TO_GUEST}\nhello-from-host\n`));
    s.on("data", (d: string) => {
      got += d;
    });
    s.on("close", () => resolve(got));
    s.on("error", (e) => resolve(`${got}<error ${e.message}>`));
  });
}

describe.runIf(hasKvm)("Linux to its init (Debian cloud kernel, --emulate), its virtio drivers on our devices", () => {
  it("vmlinux through PVH runs our /init, which loads the virtio modules and uses disk, rng, console, vsock and net", async () => {
    expect(existsSync(BUSYBOX), "busybox-static must be installed (.ci/setup)").toBe(true);
    expect(existsSync("/dev/net/tun") && process.getuid?.() === 0, "the TAP needs /dev/net/tun and root").toBe(true);
    const host = hostListener();
    const t0 = performance.now();
    const vmm = [cli, "run", vmlinux, "--mem", "256", "--cmdline", CMDLINE, "--initrd", initramfs, "--emulate", "--timeout", "3300"];
    const devices = ["--disk", disk, "--rng", "--console", "virtio", "--vsock", `${GUEST_CID},${uds}`, "--net", `tap=${TAP}`];
    // The VMM runs in a network namespace of its own, where the TAP is made and given the host's address.
    const netns = `ip tuntap add dev ${TAP} mode tap && ip addr add 10.0.2.1/24 dev ${TAP} && ip link set ${TAP} up && exec "$0" "$@"`;
    const child = spawn("unshare", ["-n", "sh", "-c", netns, process.execPath, ...vmm, ...devices], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    let markerAt = Number.NaN;
    let toGuest: Promise<string> | undefined;
    let killArmed = false;
    child.stdout.setEncoding("utf8");
    child.stderr.setEncoding("utf8");
    child.stdout.on("data", (s: string) => {
      out += s;
      if (process.env.TSVMM_LINUX_LOG) writeFileSync(process.env.TSVMM_LINUX_LOG, out);
      if (Number.isNaN(markerAt) && out.includes(MARKER)) markerAt = (performance.now() - t0) / 1000;
      if (toGuest === undefined && out.includes(`vsock: listening ${PORT_TO_GUEST}`)) toGuest = connectToGuest();
      // poweroff -f ends the VM through the ACPI PM device (S5); should the kernel only halt, it ends here.
      if (!killArmed && out.includes(DONE)) {
        killArmed = true;
        setTimeout(() => child.kill("SIGKILL"), 60_000).unref();
      }
    });
    child.stderr.on("data", (s: string) => {
      err += s;
    });
    const status = await new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
    host.server.close();
    const doneAt = (performance.now() - t0) / 1000;
    const before = out.slice(0, Math.max(0, out.indexOf(MARKER)));
    const lastKernelLine = before.split("\n").filter((l) => /^\[\s*\d+\.\d+\]/.test(l)).at(-1) ?? "";
    process.stderr.write(
      `linux-init.test: /init marker after ${markerAt.toFixed(1)} s, VM ended after ${doneAt.toFixed(1)} s; last kernel line before it: ${lastKernelLine}\n` +
        `linux-init.test: ${out.split("\n").filter((l) => l.startsWith("TSVMM-") || l.startsWith("vsock: ")).join("\nlinux-init.test: ")}\n` +
        `linux-init.test: ${err.trim().split("\n").at(-1)}\n`,
    );
    const tail = `stderr:\n${err}\nconsole tail:\n${out.slice(-4000)}`;
    expect(out, `no marker; ${tail}`).toContain(MARKER);
    // The marker line carries the release uname(2) returned: the kernel really ran our /init.
    expect(out).toMatch(new RegExp(`${MARKER} 6\\.\\d+\\.\\d+[^\\n]*cloud-amd64`));
    expect(out).toMatch(/Linux version 6\.\d+\.\d+[^\n]*cloud-amd64/);
    expect(out).toContain(`Command line: ${CMDLINE}`);
    // The builder said what it added for this host, and the kernel got it.
    expect(err).toMatch(/tsvmm: this host's KVM emulates guest kernel code[^\n]*added to the kernel command line: /);
    expect(out).toMatch(/Command line: [^\n]*noxsave/);
    expect(out, `/init did not finish; ${tail}`).toContain(DONE);
    const line = (key: string) => new RegExp(`^${key} (.*)$`, "m").exec(out)?.[1]?.trim();
    // Debian's modules of this release loaded (their signatures dropped: unsigned() above), and
    // virtio_mmio bound a driver to every device the VMM put in the DSDT: ids 2 blk, 4 rng, 3 console, 19 vsock, 1 net.
    expect(out).not.toContain("TSVMM-INSMOD-FAILED");
    expect(out).toMatch(/\w: module verification failed: signature and\/or required key missing - tainting kernel/);
    expect(line("TSVMM-MODULES")?.split(" ")).toEqual(expect.arrayContaining(["virtio_mmio", "virtio_blk", "virtio_rng", "virtio_console", "virtio_net", "vmw_vsock_virtio_transport"]));
    expect(line("TSVMM-VIRTIO")?.split(" ").sort()).toEqual(
      ["0x0001:virtio_net", "0x0002:virtio_blk", "0x0003:virtio_console", "0x0004:virtio_rng", "0x0013:vmw_vsock_virtio_transport"].sort(),
    );
    // virtio-blk: the size the config space gave, the host's bytes as the guest read them, the
    // guest's pattern as it read it back, and the host file after the VM: the pattern where the guest
    // wrote it, the host's bytes and zeros elsewhere.
    expect(line("TSVMM-BLK-SIZE")).toBe(String(DISK_SIZE / 512));
    expect(line("TSVMM-BLK-HOST")).toBe(md5(HOST_PART));
    expect(line("TSVMM-BLK-READBACK")).toBe(md5(PATTERN));
    const after = readFileSync(disk);
    expect(after.length).toBe(DISK_SIZE);
    expect(after.subarray(0, 65536).equals(HOST_PART)).toBe(true);
    expect(after.subarray(65536, 131072).equals(PATTERN)).toBe(true);
    expect(after.subarray(131072).equals(Buffer.alloc(DISK_SIZE - 131072))).toBe(true);
    // virtio-rng: the hwrng core took the virtio source, and 32 bytes came out of it.
    expect(line("TSVMM-RNG-CURRENT")).toMatch(/^virtio_rng\.\d+$/);
    expect(line("TSVMM-RNG")).toMatch(/^[0-9a-f]{64}$/);
    expect(line("TSVMM-RNG")).not.toBe("0".repeat(64));
    // virtio-console: a line written to /dev/hvc0 only reaches stdout through the virtio port.
    expect(out).toContain("TSVMM-HVC-42");
    // vsock, Firecracker's hybrid model: guest → host `${uds}_${port}`, host → guest through "CONNECT".
    const late = new Promise<string>((r) => setTimeout(() => r("<no connection>"), 5000).unref());
    expect(await Promise.race([host.received, late])).toBe("hello-from-guest");
    expect(out).toContain("vsock: reply host-saw-hello-from-guest");
    expect(out).toContain("vsock: accepted hello-from-host");
    expect(await Promise.race([toGuest ?? "<never listened>", late])).toMatch(/^OK \d+\nanswer-from-guest$/);
    // virtio-net: the MAC the VMM gave, and ICMP echo answered by the host end of the TAP (ARP and
    // ping both ways through the device).
    expect(line("TSVMM-NET-MAC")).toBe(GUEST_MAC);
    expect(line("TSVMM-NET-PING")).toBe("2");
    // A VM that ended by itself (poweroff, or a halt) prints its stop line with what was emulated.
    if (status !== null) expect(err).toMatch(/emulated: [^\]]*syscall-fixup \d+/);
  }, 3_400_000);
});
