import { decodeSegmentDescriptor, kvmSegmentFromSegment } from "@tsvmm/abi";
import { BOOT_CS, BOOT_DS, BOOT_GDT_SIZE, BOOT_TSS, bootGdt, longMode64State, protectedMode32State } from "@tsvmm/elf-loader";
import { describe, expect, it } from "vitest";

// The boot GDT and the boot sregs are made from one set of segments; these tests hold both to the
// descriptors of Linux's boot protocol (Documentation/arch/x86/boot.rst: __BOOT_CS flat 4 GiB
// execute/read, __BOOT_DS flat 4 GiB read/write) written out as numbers, and to each other.

const qwords = (g: Buffer): bigint[] => Array.from({ length: g.length / 8 }, (_, i) => g.readBigUInt64LE(i * 8));

describe("boot GDT", () => {
  it("holds the boot protocol's descriptors at their selectors, a null descriptor at 0", () => {
    expect(BOOT_GDT_SIZE).toBe(40);
    const g64 = qwords(bootGdt(true));
    const g32 = qwords(bootGdt(false));
    expect(g64).toEqual([0n, 0n, 0x00af9b000000ffffn, 0x00cf93000000ffffn, 0x00008b000000ffffn]);
    expect(g32).toEqual([0n, 0n, 0x00cf9b000000ffffn, 0x00cf93000000ffffn, 0x00008b000000ffffn]);
  });

  it("each descriptor loads as the segment the boot sregs hold", () => {
    for (const [long, cpu] of [[true, longMode64State(0x100000n, 0x500, 0x1000n)], [false, protectedMode32State(0x100000, 0x500)]] as const) {
      const g = bootGdt(long);
      const load = (sel: number) => kvmSegmentFromSegment(decodeSegmentDescriptor(g.readBigUInt64LE(sel), sel));
      expect(load(BOOT_CS)).toEqual(cpu.sregs.cs);
      for (const s of [cpu.sregs.ds, cpu.sregs.es, cpu.sregs.fs, cpu.sregs.gs, cpu.sregs.ss]) expect(load(BOOT_DS)).toEqual(s);
      expect(load(BOOT_TSS)).toEqual(cpu.sregs.tr);
    }
  });
});
