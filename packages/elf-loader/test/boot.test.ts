import { GuestMemoryMap } from "@tsvmm/abi";
import {
  BootError,
  bootLinux as bootLinuxWith, 
  bootMultiboot,
  bootPvh,
  HVM_START_MAGIC,type LinuxBootOptions,
  MULTIBOOT_BOOTLOADER_MAGIC,
  type PageTableBuilder,
  parseBzImage,
} from "@tsvmm/elf-loader";
import { identityPageTables } from "@tsvmm/ept";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { buildBzImage } from "./helpers/bzimage-builder.js";
import { buildElf, note } from "./helpers/elf-builder.js";
import { RecordingMemory } from "./helpers/recording-memory.js";

// The project's one identity-map builder (ept) is what bootLinux is given everywhere.
const bootLinux = (m: Parameters<typeof bootLinuxWith>[0], i: Parameters<typeof bootLinuxWith>[1], o: Partial<LinuxBootOptions> = {}) =>
  bootLinuxWith(m, i, { pageTables: identityPageTables(), ...o });

const MiB = 1 << 20;

function thrown(f: () => unknown): BootError {
  try {
    f();
  } catch (e) {
    if (e instanceof BootError) return e;
    throw e;
  }
  throw new Error("did not throw");
}

/** The memory map a 16 MiB guest from 0 must get: low RAM, the legacy hole, RAM from 1 MiB. */
const MAP_16M = [
  { addr: 0n, size: 0xa0000n, type: 1 },
  { addr: 0xa0000n, size: 0x60000n, type: 2 },
  { addr: 0x100000n, size: BigInt(15 * MiB), type: 1 },
];

function expectFlat32(cpu: { sregs: import("@tsvmm/abi").KvmSregs; regs: import("@tsvmm/abi").KvmRegs }) {
  expect(cpu.sregs.cr0 & 1n).toBe(1n); // PE
  expect(cpu.sregs.cr0 & (1n << 31n)).toBe(0n); // paging off
  expect(cpu.sregs.efer).toBe(0n);
  for (const s of [cpu.sregs.cs, cpu.sregs.ds, cpu.sregs.es, cpu.sregs.ss]) {
    expect(s).toMatchObject({ base: 0n, limit: 0xffffffff, present: 1, s: 1, db: 1, l: 0, g: 1, dpl: 0 });
  }
  expect(cpu.sregs.cs.type & 0x8).toBe(0x8); // code
  expect(cpu.sregs.cs.type & 0x2).toBe(0x2); // readable
  for (const s of [cpu.sregs.ds, cpu.sregs.es, cpu.sregs.ss]) expect(s.type & 0xa).toBe(0x2); // data, writable
  expect(cpu.regs.rflags & (1n << 9n)).toBe(0n); // IF
  expect(cpu.regs.rflags & (1n << 17n)).toBe(0n); // VM
}

describe("PVH", () => {
  const kernel = (desc: Buffer) =>
    buildElf({
      class: 64,
      entry: 0xffffffff81000000n,
      segments: [
        { vaddr: 0xffffffff81000000n, paddr: 0x100000n, data: Buffer.from("PVH kernel text"), memsz: 0x3000n },
        { type: 4, vaddr: 0n, data: note("Xen", 18, desc) },
      ],
    });
  const u32 = (v: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    return b;
  };

  it("builds hvm_start_info with cmdline, memmap and initrd, and the 32-bit entry state", () => {
    const mem = GuestMemoryMap.allocate([{ base: 0, size: 16 * MiB }]);
    const initrd = Buffer.from("initrd contents here");
    const r = bootPvh(mem, kernel(u32(0x100004)), { cmdline: "console=ttyS0 quiet", initrd });
    expect(r.entry).toBe(0x100004);
    expect(r.cpu.regs.rip).toBe(0x100004n);
    expect(r.cpu.regs.rbx).toBe(BigInt(r.startInfoAddress));
    expectFlat32(r.cpu);
    const si = r.startInfoAddress;
    expect(mem.readU32(si)).toBe(HVM_START_MAGIC);
    expect(mem.readU32(si + 4)).toBe(1);
    expect(mem.readU32(si + 12)).toBe(1);
    const cmd = Number(mem.readU64(si + 24));
    expect(mem.read(cmd, 20).toString("latin1")).toBe("console=ttyS0 quiet\0");
    const mod = Number(mem.readU64(si + 16));
    const modAddr = Number(mem.readU64(mod));
    expect(mem.readU64(mod + 8)).toBe(BigInt(initrd.length));
    expect(mem.read(modAddr, initrd.length).equals(initrd)).toBe(true);
    expect(modAddr % 4096).toBe(0);
    expect(modAddr).toBeGreaterThanOrEqual(0x103000); // not over the kernel
    const mm = Number(mem.readU64(si + 40));
    const n = mem.readU32(si + 48);
    const entries = Array.from({ length: n }, (_, i) => ({ addr: mem.readU64(mm + 24 * i), size: mem.readU64(mm + 24 * i + 8), type: mem.readU32(mm + 24 * i + 16) }));
    expect(entries).toEqual(MAP_16M);
    expect(mem.read(0x100000, 15).toString()).toBe("PVH kernel text");
  });

  it("accepts Linux's 8-byte note and rejects a note that is not a 32-bit address", () => {
    const mem = GuestMemoryMap.allocate([{ base: 0, size: 4 * MiB }]);
    const d = Buffer.alloc(8);
    d.writeBigUInt64LE(0x100850n);
    expect(bootPvh(mem, kernel(d)).entry).toBe(0x100850);
    d.writeBigUInt64LE(0x1_0000_0000n);
    expect(thrown(() => bootPvh(mem, kernel(d))).code).toBe("PVH_BAD_ENTRY_NOTE");
    expect(thrown(() => bootPvh(mem, kernel(Buffer.alloc(2)))).code).toBe("PVH_BAD_ENTRY_NOTE");
  });

  it("an image without the note is refused; a misplaced start_info writes nothing", () => {
    const plain = buildElf({ class: 64, entry: 0x100000n, segments: [{ vaddr: 0x100000n, data: Buffer.alloc(16) }] });
    const mem = new RecordingMemory(GuestMemoryMap.allocate([{ base: 0, size: 4 * MiB }]));
    expect(thrown(() => bootPvh(mem, plain)).code).toBe("PVH_NO_ENTRY_NOTE");
    expect(thrown(() => bootPvh(mem, kernel(u32(0x100000)), { startInfoAddress: 4 * MiB - 8 })).code).toBe("BOOT_OUTSIDE_MEMORY");
    expect(thrown(() => bootPvh(mem, kernel(u32(0x100000)), { startInfoAddress: 0x100100 })).code).toBe("BOOT_OVERLAP");
    expect(mem.writes).toEqual([]);
  });
});

describe("Multiboot v1", () => {
  const header = (flags: number, extra: number[] = [], checksumDelta = 0) => {
    const b = Buffer.alloc(12 + 4 * extra.length);
    b.writeUInt32LE(0x1badb002, 0);
    b.writeUInt32LE(flags >>> 0, 4);
    b.writeUInt32LE((-(0x1badb002 + flags) + checksumDelta) >>> 0, 8);
    extra.forEach((v, i) => {
      b.writeUInt32LE(v >>> 0, 12 + 4 * i);
    });
    return b;
  };
  const elfKernel = (h: Buffer) =>
    buildElf({ class: 32, entry: 0x100010n, segments: [{ vaddr: 0x100000n, data: Buffer.concat([h, Buffer.from("multiboot!")]), memsz: 0x2000n }] });

  it("ELF32 kernel: info structure, mmap, modules and EAX/EBX", () => {
    const mem = GuestMemoryMap.allocate([{ base: 0, size: 16 * MiB }]);
    const mod = Buffer.from("module payload");
    const r = bootMultiboot(mem, elfKernel(header(0x3)), { cmdline: "kvm-unit-test arg", modules: [{ data: mod, cmdline: "mod0" }] });
    expect(r.cpu.regs.rax).toBe(BigInt(MULTIBOOT_BOOTLOADER_MAGIC));
    expect(r.cpu.regs.rax).toBe(0x2badb002n);
    expect(r.cpu.regs.rbx).toBe(BigInt(r.infoAddress));
    expect(r.cpu.regs.rip).toBe(0x100010n);
    expectFlat32(r.cpu);
    const i = r.infoAddress;
    const flags = mem.readU32(i);
    expect(flags & 0b1001001101).toBe(0b1001001101); // mem, cmdline, mods, mmap, loader name
    expect(mem.readU32(i + 4)).toBe(640);
    expect(mem.readU32(i + 8)).toBe(15 * 1024);
    expect(mem.read(mem.readU32(i + 16), 18).toString("latin1")).toBe("kvm-unit-test arg\0");
    expect(mem.readU32(i + 20)).toBe(1);
    const m = mem.readU32(i + 24);
    const start = mem.readU32(m);
    expect(mem.readU32(m + 4) - start).toBe(mod.length);
    expect(start % 4096).toBe(0);
    expect(start).toBeGreaterThanOrEqual(0x102000);
    expect(mem.read(start, mod.length).equals(mod)).toBe(true);
    expect(mem.read(mem.readU32(m + 8), 5).toString("latin1")).toBe("mod0\0");
    const len = mem.readU32(i + 44);
    const addr = mem.readU32(i + 48);
    const entries = [];
    for (let p = addr; p < addr + len; p += mem.readU32(p) + 4) entries.push({ addr: mem.readU64(p + 4), size: mem.readU64(p + 12), type: mem.readU32(p + 20) });
    expect(entries).toEqual(MAP_16M);
    expect(mem.read(0x10000c, 10).toString()).toBe("multiboot!");
  });

  it("a.out kludge (flag 16): loads by the header's addresses, zeroes bss", () => {
    const mem = GuestMemoryMap.allocate([{ base: 0, size: 4 * MiB }]);
    mem.fill(0x200000, 0x3000, 0xcc);
    // Raw binary: 64 bytes of padding, header at file offset 64 = guest 0x200040.
    const h = header(0x10000, [0x200040, 0x200000, 0x200100, 0x202000, 0x200080]);
    const img = Buffer.concat([Buffer.alloc(64, 0x90), h, Buffer.alloc(0x100 - 64 - h.length, 0xf4), Buffer.from("not loaded")]);
    const r = bootMultiboot(mem, img);
    expect(r.entry).toBe(0x200080);
    expect(r.load).toBeUndefined();
    expect(mem.read(0x200000, 0x100).equals(img.subarray(0, 0x100))).toBe(true);
    expect(mem.read(0x200100, 0x1f00).every((x) => x === 0)).toBe(true);
    expect(mem.readU8(0x202000)).toBe(0xcc);
  });

  it("bad checksum, unknown required flags and no header are refused", () => {
    const mem = new RecordingMemory(GuestMemoryMap.allocate([{ base: 0, size: 4 * MiB }]));
    expect(thrown(() => bootMultiboot(mem, elfKernel(header(0x3, [], 1)))).code).toBe("MULTIBOOT_BAD_CHECKSUM");
    expect(thrown(() => bootMultiboot(mem, elfKernel(header(0x23)))).code).toBe("MULTIBOOT_UNSUPPORTED_FLAGS");
    expect(thrown(() => bootMultiboot(mem, buildElf({ class: 32, entry: 0n, segments: [{ vaddr: 0x100000n, data: Buffer.alloc(64) }] }))).code).toBe(
      "MULTIBOOT_NO_HEADER",
    );
    const kludge = header(0x10000, [0x200000, 0x200010, 0, 0, 0x200000]);
    expect(thrown(() => bootMultiboot(mem, kludge)).code).toBe("MULTIBOOT_BAD_ADDRESS");
    expect(mem.writes).toEqual([]);
  });
});

/** Walk 4-level tables with 2 MiB pages as the CPU would; undefined when not present. */
function translate(mem: GuestMemoryMap, cr3: bigint, va: bigint): bigint | undefined {
  const idx = (shift: bigint) => Number((va >> shift) & 0x1ffn);
  const e4 = mem.readU64(Number(cr3) + 8 * idx(39n));
  if ((e4 & 1n) === 0n) return undefined;
  const e3 = mem.readU64(Number(e4 & 0xffffffffff000n) + 8 * idx(30n));
  if ((e3 & 1n) === 0n) return undefined;
  const e2 = mem.readU64(Number(e3 & 0xffffffffff000n) + 8 * idx(21n));
  if ((e2 & 1n) === 0n || (e2 & 0x80n) === 0n) return undefined;
  return (e2 & 0xfffffffe00000n) | (va & 0x1fffffn);
}

describe("bzImage", () => {
  const kernel = Buffer.alloc(0x4000);
  for (let i = 0; i < kernel.length; i++) kernel[i] = (i * 7) & 0xff;

  it("places the kernel, fills boot_params, maps 4 GiB 1:1 and enters startup_64", () => {
    const mem = GuestMemoryMap.allocate([{ base: 0, size: 64 * MiB }]);
    const img = buildBzImage({ kernel });
    const initrd = Buffer.from("initramfs bytes");
    const r = bootLinux(mem, img, { cmdline: "console=ttyS0 root=/dev/vda", initrd });
    expect(r.loadAddress).toBe(0x1000000);
    expect(mem.read(0x1000000, kernel.length).equals(kernel)).toBe(true);
    expect(r.cpu.regs.rip).toBe(0x1000200n);
    expect(r.cpu.regs.rsi).toBe(BigInt(r.bootParamsAddress));
    const s = r.cpu.sregs;
    expect(s.cr0 & 0x80000001n).toBe(0x80000001n);
    expect(s.cr4 & 0x20n).toBe(0x20n);
    expect(s.efer & 0x500n).toBe(0x500n);
    expect(s.cs).toMatchObject({ l: 1, db: 0, present: 1, s: 1, selector: 0x10 });
    expect(s.ds).toMatchObject({ selector: 0x18, present: 1, s: 1, db: 1 });
    expect(s.cr3).toBe(r.cr3);
    const bp = r.bootParamsAddress;
    // Setup header copied verbatim apart from the fields a boot loader fills in.
    const filled = new Set([0x210, 0x214, 0x215, 0x216, 0x217, 0x218, 0x219, 0x21a, 0x21b, 0x21c, 0x21d, 0x21e, 0x21f, 0x228, 0x229, 0x22a, 0x22b]);
    for (let o = 0x1f1; o < 0x26c; o++) if (!filled.has(o)) expect([o, mem.readU8(bp + o)]).toEqual([o, img[o]]);
    expect(mem.readU8(bp + 0x210)).toBe(0xff);
    expect(mem.read(mem.readU32(bp + 0x228), 28).toString("latin1")).toBe("console=ttyS0 root=/dev/vda\0");
    const rd = mem.readU32(bp + 0x218);
    expect(mem.readU32(bp + 0x21c)).toBe(initrd.length);
    expect(mem.read(rd, initrd.length).equals(initrd)).toBe(true);
    expect(rd % 4096).toBe(0);
    expect(rd + initrd.length).toBeLessThanOrEqual(64 * MiB);
    expect(rd >= 0x1000000 + 0x100000 || rd + initrd.length <= 0x1000000).toBe(true); // clear of init_size
    expect(mem.readU8(bp + 0x1e8)).toBe(3);
    const e820 = [0, 1, 2].map((i) => ({ addr: mem.readU64(bp + 0x2d0 + 20 * i), size: mem.readU64(bp + 0x2d8 + 20 * i), type: mem.readU32(bp + 0x2e0 + 20 * i) }));
    expect(e820).toEqual([
      { addr: 0n, size: 0xa0000n, type: 1 },
      { addr: 0xa0000n, size: 0x60000n, type: 2 },
      { addr: 0x100000n, size: BigInt(63 * MiB), type: 1 },
    ]);
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 32n) - 1n }), (va) => {
        expect(translate(mem, r.cr3, va)).toBe(va);
      }),
      { numRuns: 300 },
    );
    expect(translate(mem, r.cr3, 1n << 32n)).toBeUndefined();
  });

  it("uses an injected page-table builder", () => {
    const calls: [number, bigint][] = [];
    const builder: PageTableBuilder = {
      buildIdentityMap(_m, base, size) {
        calls.push([base, size]);
        return BigInt(base) | 0x18n;
      },
    };
    const mem = GuestMemoryMap.allocate([{ base: 0, size: 32 * MiB }]);
    const r = bootLinux(mem, buildBzImage({ kernel }), { pageTables: builder, pageTablesAddress: 0x10000 });
    expect(calls).toEqual([[0x10000, 4n << 30n]]);
    expect(r.cpu.sregs.cr3).toBe(0x10018n);
  });

  it("relocation rules: alignment and relocatable_kernel", () => {
    const mem = GuestMemoryMap.allocate([{ base: 0, size: 64 * MiB }]);
    expect(bootLinux(mem, buildBzImage({ kernel }), { loadAddress: 0x2000000 }).entry).toBe(0x2000200n);
    expect(thrown(() => bootLinux(mem, buildBzImage({ kernel }), { loadAddress: 0x2001000 })).code).toBe("BZIMAGE_BAD_ALIGNMENT");
    expect(thrown(() => bootLinux(mem, buildBzImage({ kernel, relocatable: false }), { loadAddress: 0x2000000 })).code).toBe("BZIMAGE_NOT_RELOCATABLE");
  });

  it("refuses bad headers and impossible layouts, writing nothing", () => {
    const mem = new RecordingMemory(GuestMemoryMap.allocate([{ base: 0, size: 32 * MiB }]));
    const good = buildBzImage({ kernel });
    const mut = (o: number, v: number, size: 1 | 2 | 4 = 2) => {
      const b = Buffer.from(good);
      if (size === 1) b.writeUInt8(v, o);
      else if (size === 2) b.writeUInt16LE(v, o);
      else b.writeUInt32LE(v, o);
      return b;
    };
    expect(thrown(() => parseBzImage(mut(0x1fe, 0x55aa))).code).toBe("BZIMAGE_BAD_MAGIC");
    expect(thrown(() => parseBzImage(mut(0x202, 0x12345678, 4))).code).toBe("BZIMAGE_BAD_MAGIC");
    expect(thrown(() => parseBzImage(mut(0x206, 0x205))).code).toBe("BZIMAGE_OLD_PROTOCOL");
    expect(thrown(() => parseBzImage(mut(0x236, 0x2))).code).toBe("BZIMAGE_NOT_64BIT");
    expect(thrown(() => parseBzImage(good.subarray(0, 0x200))).code).toBe("BZIMAGE_TRUNCATED");
    expect(thrown(() => parseBzImage(good.subarray(0, good.length - 0x100))).code).toBe("BZIMAGE_TRUNCATED");
    expect(thrown(() => bootLinux(mem, buildBzImage({ kernel, cmdlineSize: 8 }), { cmdline: "123456789" })).code).toBe("BZIMAGE_CMDLINE_TOO_LONG");
    expect(thrown(() => bootLinux(mem, buildBzImage({ kernel, initSize: 32 * MiB }))).code).toBe("BOOT_OUTSIDE_MEMORY");
    expect(thrown(() => bootLinux(mem, good, { bootParamsAddress: 0x1000100 })).code).toBe("BOOT_OVERLAP");
    expect(thrown(() => bootLinux(mem, good, { initrd: Buffer.alloc(31 * MiB) })).code).toBe("BOOT_OUTSIDE_MEMORY");
    const many = Array.from({ length: 129 }, (_, i) => ({ addr: BigInt(i * 4096), size: 4096n, type: 1 }));
    expect(thrown(() => bootLinux(mem, good, { memoryMap: many })).code).toBe("BZIMAGE_TOO_MANY_E820");
    expect(mem.writes).toEqual([]);
  });
});
