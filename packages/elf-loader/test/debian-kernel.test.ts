// Real files: Debian's cloud kernel, fetched through apt and cached under .cache/debian-kernel/.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { GuestMemoryMap } from "@tsvmm/abi";
import { bootLinux as bootLinuxWith, bootPvh, findPvhEntry, type LinuxBootOptions, PT_LOAD, parseBzImage, parseElf } from "@tsvmm/elf-loader";
import { identityPageTables } from "@tsvmm/ept";
import { beforeAll, describe, expect, it } from "vitest";
import { readelf } from "./helpers/seeds.js";

// The project's one identity-map builder (ept) is what bootLinux is given everywhere.
const bootLinux = (m: Parameters<typeof bootLinuxWith>[0], i: Parameters<typeof bootLinuxWith>[1], o: Partial<LinuxBootOptions> = {}) =>
  bootLinuxWith(m, i, { pageTables: identityPageTables(), ...o });

const script = fileURLToPath(new URL("../scripts/fetch-debian-kernel.mjs", import.meta.url));
let bz: Buffer;
let vmlinux: Buffer;

beforeAll(() => {
  const info = JSON.parse(execFileSync("node", [script], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] }).trim().split("\n").pop()!);
  bz = readFileSync(info.bzImage);
  vmlinux = readFileSync(info.vmlinux);
}, 300_000);

describe("Debian linux-image-cloud-amd64", () => {
  it("bzImage header parses: 64-bit, relocatable, payload is the lz4 stream the vmlinux came from", () => {
    const h = parseBzImage(bz).header;
    expect(h.version).toBeGreaterThanOrEqual(0x20c);
    expect(h.xloadflags & 1).toBe(1);
    expect(h.relocatableKernel).toBe(1);
    const start = (h.setupSects + 1) * 512 + h.payloadOffset;
    expect(bz.readUInt32LE(start)).toBe(0x184c2102); // lz4 legacy frame
    // The build appends the decompressed size after the payload: it must be the vmlinux we have.
    expect(bz.readUInt32LE(start + h.payloadLength - 4)).toBe(vmlinux.length);
    // The kernel's link-time physical start (first PT_LOAD p_paddr) is what pref_address advertises.
    const first = parseElf(vmlinux).programHeaders.find((p) => p.type === PT_LOAD)!;
    expect(h.prefAddress).toBe(first.paddr);
  });

  it("vmlinux PVH note matches readelf", () => {
    const elf = parseElf(vmlinux);
    const line = readelf(vmlinux, ["-n"])
      .split("\n")
      .find((l) => /\(0x00000012\)/.test(l))!;
    const bytes = /description data: ([0-9a-f ]+)/.exec(line)![1]!.trim().split(" ").map((x) => Number.parseInt(x, 16));
    expect(findPvhEntry(elf)).toBe(Buffer.from(bytes).readUInt32LE(0));
  });

  it("vmlinux loads by PVH into a 256 MiB guest", () => {
    const mem = GuestMemoryMap.allocate([{ base: 0, size: 256 << 20 }]);
    const elf = parseElf(vmlinux);
    const r = bootPvh(mem, elf, { cmdline: "console=ttyS0", initrd: Buffer.from("initrd") });
    expect(r.cpu.regs.rip).toBe(BigInt(findPvhEntry(elf)!));
    expect(r.cpu.regs.rbx).toBe(BigInt(r.startInfoAddress));
    expect(mem.readU32(r.startInfoAddress)).toBe(0x336ec578);
    expect(r.cpu.sregs.cr0 & 0x80000001n).toBe(1n);
    expect(r.cpu.sregs.cs).toMatchObject({ db: 1, l: 0, base: 0n, limit: 0xffffffff });
    for (const p of elf.programHeaders.filter((x) => x.type === PT_LOAD)) {
      const a = Number(p.paddr);
      expect(mem.read(a, Number(p.filesz)).equals(vmlinux.subarray(Number(p.offset), Number(p.offset + p.filesz)))).toBe(true);
    }
    expect(r.load.end).toBeLessThanOrEqual(256 << 20);
  });

  it("bzImage loads into a 256 MiB guest with the 64-bit entry state", () => {
    const mem = GuestMemoryMap.allocate([{ base: 0, size: 256 << 20 }]);
    const r = bootLinux(mem, bz, { cmdline: "console=ttyS0 earlyprintk=serial", initrd: Buffer.alloc(1 << 20, 1) });
    const h = r.header;
    expect(r.loadAddress).toBe(0x1000000);
    expect(r.cpu.regs.rip).toBe(0x1000200n);
    expect(r.cpu.regs.rsi).toBe(BigInt(r.bootParamsAddress));
    expect(r.cpu.sregs.efer & 0x500n).toBe(0x500n);
    expect(r.cpu.sregs.cs.l).toBe(1);
    const pm = bz.subarray((h.setupSects + 1) * 512);
    expect(mem.read(r.loadAddress, pm.length).equals(pm)).toBe(true);
    expect(r.initrd!.address + r.initrd!.size - 1).toBeLessThanOrEqual(h.initrdAddrMax);
    expect(r.initrd!.address >= r.loadAddress + h.initSize || r.initrd!.address + r.initrd!.size <= r.loadAddress).toBe(true);
  });
});
