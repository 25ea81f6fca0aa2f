// The firmware tables the VMM writes into every VM, read back from guest memory with
// @tsvmm/acpi's readers (as a guest would walk them) and with iasl, and checked against the VM's
// configuration; the RSDP hand-over per boot protocol; the power-off path; the build step's refusals.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GuestMemoryMap } from "@tsvmm/abi";
import { findMpFloatingPointer, findRsdp, parseFadt, parseMadt, parseMpTable, readAcpiTables } from "@tsvmm/acpi";
import { BootParamsLayout } from "@tsvmm/elf-loader";
import { requireKvm } from "@tsvmm/kvm-backend";
import { ACPI_TABLES_ADDRESS, bootKernel, MP_TABLE_ADDRESS, VmmBuildError, VmmBuilder } from "@tsvmm/vmm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HvmStartInfoLayout } from "../../elf-loader/src/hvm-start-info.js";
import { buildBzImage } from "../../elf-loader/test/helpers/bzimage-builder.js";

const hasKvm = requireKvm();
const root = join(__dirname, "..", "..", "..");
const guest = (name: string) => join(root, "test-kernels", "out", `${name}.elf`);
let dir = "";
/** The local APIC ID register's offset in the APIC page (SDM vol. 3, table 11-1); the id is in bits 31:24. */
const APIC_ID_REGISTER = 0x20;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "tsvmm-platform-"));
  execFileSync("flock", ["/tmp/tsvmm-test-kernels.lock", "make", "-s", "-C", join(root, "test-kernels")]);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** iasl -d of one table; returns the disassembly and what iasl said. */
function disassemble(name: string, bytes: Buffer): { dsl: string; log: string } {
  const file = join(dir, `${name}.dat`);
  writeFileSync(file, bytes);
  const log = execFileSync("iasl", ["-d", file], { cwd: dir, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  // iasl annotates lines with // comments; drop them so the checks read the ASL itself.
  const dsl = readFileSync(join(dir, `${name}.dsl`), "utf8").replace(/\/\/[^\n]*/g, "");
  return { dsl, log };
}

describe("RSDP hand-over per boot protocol (pure: bootKernel into plain memory)", () => {
  it("bzImage: boot_params.acpi_rsdp_addr carries the address given; without one it stays 0", () => {
    const bz = buildBzImage({ kernel: Buffer.alloc(0x2000, 0x90) });
    for (const rsdp of [0xe0000, undefined]) {
      const mem = GuestMemoryMap.allocate([{ base: 0, size: 64 << 20 }]);
      const plan = bootKernel(mem, bz, "bzimage", { rsdpAddress: rsdp, decompress: "guest" });
      const zp = BootParamsLayout.decode(mem.read(Number(plan.cpu.regs.rsi), BootParamsLayout.size));
      expect(zp.acpiRsdpAddr).toBe(BigInt(rsdp ?? 0));
      // The rest of the zero page is what the loader wrote: its own header magic survives.
      expect(zp.hdr.header).toBe(0x53726448);
    }
  });
});

describe.runIf(hasKvm)("firmware tables written by the VMM", () => {
  it.each([1, 2, 4])("%i vCPUs + one virtio-mmio device: RSDP/XSDT/FADT/MADT/DSDT and the MP table in guest memory describe this VM", async (vcpus) => {
    const dev = { kind: "virtio-mmio" as const, address: 0xd000_0000, size: 0x200, gsi: 16 };
    const vmm = new VmmBuilder().kernelFile(guest("hello"), "tsvmm").memoryMiB(16).vcpus(vcpus).platformDevice(dev).build();
    try {
      const mem = vmm.vm.memory;
      const rsdp = findRsdp(mem);
      expect(rsdp).toBe(ACPI_TABLES_ADDRESS);
      const set = readAcpiTables(mem, rsdp!);
      expect(set.root.signature).toBe("XSDT");
      expect(set.tables.map((t) => t.signature).sort()).toEqual(["APIC", "DSDT", "FACP"]);
      // Every table lies in the reserved BIOS window, under the MP table.
      for (const t of set.tables) {
        expect(t.address).toBeGreaterThanOrEqual(0xe0000);
        expect(t.address + t.header.length).toBeLessThanOrEqual(MP_TABLE_ADDRESS);
      }
      const madt = parseMadt(set.find("APIC")!.bytes);
      // One enabled LAPIC per vCPU with the APIC id KVM's LAPIC of that vCPU reports.
      const lapicIds = vmm.vcpus.map((c) => c.getLapic().regs.readUInt32LE(APIC_ID_REGISTER) >>> 24);
      expect(lapicIds).toEqual(Array.from({ length: vcpus }, (_, i) => i));
      expect(madt.localApics.map((l) => l.apicId)).toEqual(lapicIds);
      expect(madt.localApics.every((l) => l.enabled && l.kind === "local-apic")).toBe(true);
      // The IOAPIC entry matches KVM's in-kernel IOAPIC (its id register and base address).
      const ioapic = vmm.vm.getIoapic();
      expect(madt.ioApics).toEqual([{ id: ioapic.id, address: Number(ioapic.baseAddress), gsiBase: 0 }]);
      expect(madt.overrides.map((o) => [o.source, o.gsi])).toEqual([
        [0, 2],
        [9, 9],
      ]);
      const fadt = parseFadt(set.find("FACP")!.bytes);
      expect([fadt.pm1aEvtBlk, fadt.pm1aCntBlk, fadt.pmTmrBlk]).toEqual([0x600, 0x604, 0x608]);
      // The PM device is on those ports: PM1 control reads SCI_EN, the timer moves.
      expect(vmm.pio.readValue(0x604, 2)).toBe(1);
      const t0 = vmm.pio.readValue(0x608, 4);
      await new Promise((r) => setTimeout(r, 5));
      expect((vmm.pio.readValue(0x608, 4) - t0) & 0xffffff).toBeGreaterThan(0);
      const dsdt = set.find("DSDT")!.bytes;
      expect(dsdt.includes(Buffer.from("LNRO0005"))).toBe(true);
      expect(dsdt.includes(Buffer.from("COM1"))).toBe(true);
      const mp = parseMpTable(mem, findMpFloatingPointer(mem, 0xf0000, 0x100000)!);
      expect(mp.address).toBe(MP_TABLE_ADDRESS);
      expect(mp.processors.map((p) => p.apicId)).toEqual(lapicIds);
      expect(mp.processors.map((p) => p.bsp)).toEqual(lapicIds.map((_, i) => i === 0));
      expect(mp.ioApics.map((i) => [i.id, i.address])).toEqual([[ioapic.id, Number(ioapic.baseAddress)]]);
    } finally {
      await vmm.close();
    }
  });

  it("iasl -d disassembles the DSDT and MADT the VMM wrote, and they say what the builder put in", async () => {
    const vmm = new VmmBuilder()
      .kernelFile(guest("hello"), "tsvmm")
      .memoryMiB(16)
      .vcpus(3)
      .platformDevice({ kind: "virtio-mmio", address: 0xd000_0000, size: 0x200, gsi: 16 })
      .platformDevice({ kind: "virtio-mmio", address: 0xd000_1000, size: 0x200, gsi: 17 })
      .build();
    try {
      const set = readAcpiTables(vmm.vm.memory, findRsdp(vmm.vm.memory)!);
      const dsdt = disassemble("DSDT", set.find("DSDT")!.bytes);
      expect(dsdt.log).not.toMatch(/Error|Warning/i);
      expect(dsdt.dsl).toMatch(/Name \(_S5, Package \(0x04\)\s*\{\s*0x05,\s*0x05,\s*Zero,\s*Zero\s*\}\)/);
      expect(dsdt.dsl).toContain('EisaId ("PNP0501")');
      expect(dsdt.dsl).toMatch(/IO \(Decode16,\s*0x03F8,\s*0x03F8,\s*0x00,\s*0x08,\s*\)/);
      expect(dsdt.dsl).toMatch(/IRQNoFlags \(\)\s*\{4\}/);
      expect(dsdt.dsl.match(/Name \(_HID, "LNRO0005"\)/g)).toHaveLength(2);
      expect(dsdt.dsl).toMatch(/Memory32Fixed \(ReadWrite,\s*0xD0000000,\s*0x00000200,\s*\)/);
      expect(dsdt.dsl).toMatch(/Memory32Fixed \(ReadWrite,\s*0xD0001000,\s*0x00000200,\s*\)/);
      expect(dsdt.dsl).toMatch(/Interrupt \(ResourceConsumer, Level, ActiveHigh, Exclusive, ,, \)\s*\{\s*0x00000010,\s*\}/);
      expect(dsdt.dsl).toMatch(/Interrupt \(ResourceConsumer, Level, ActiveHigh, Exclusive, ,, \)\s*\{\s*0x00000011,\s*\}/);
      const madt = disassemble("APIC", set.find("APIC")!.bytes);
      expect(madt.log).not.toMatch(/Error|Warning/i);
      const ids = [...madt.dsl.matchAll(/Local Apic ID : ([0-9A-F]{2})/g)].map((m) => Number.parseInt(m[1]!, 16));
      expect(ids).toEqual([0, 1, 2]);
      expect(madt.dsl).toMatch(/Address : FEC00000/);
      expect(madt.dsl).toMatch(/Interrupt : 00000002/);
    } finally {
      await vmm.close();
    }
  });

  it("PVH: hvm_start_info.rsdp_paddr is the RSDP the VMM wrote", async () => {
    // pmode-flat carries a Xen PVH entry note as well as the tsvmm one.
    const vmm = new VmmBuilder().kernelFile(guest("pmode-flat"), "pvh").memoryMiB(16).build();
    try {
      expect(vmm.boot.format).toBe("pvh");
      const info = HvmStartInfoLayout.decode(vmm.vm.memory.read(Number(vmm.boot.cpu.regs.rbx), HvmStartInfoLayout.size));
      expect(info.magic).toBe(0x336ec578);
      expect(info.rsdpPaddr).toBe(BigInt(findRsdp(vmm.vm.memory)!));
    } finally {
      await vmm.close();
    }
  });

  it("acpi(false): no RSDP anywhere and no PM ports; mpTable(false): no MP table; the guest sees unclaimed ports", async () => {
    const vmm = new VmmBuilder().kernelFile(guest("hello"), "tsvmm").memoryMiB(16).acpi(false).build();
    try {
      expect(findRsdp(vmm.vm.memory, 0, 0x100000)).toBeUndefined();
      expect(findMpFloatingPointer(vmm.vm.memory, 0xf0000, 0x100000)).toBe(MP_TABLE_ADDRESS);
      expect(vmm.pio.readValue(0x604, 2)).toBe(0xffff);
    } finally {
      await vmm.close();
    }
    const bare = new VmmBuilder().kernelFile(guest("hello"), "tsvmm").memoryMiB(16).acpi(false).mpTable(false).build();
    try {
      expect(findMpFloatingPointer(bare.vm.memory, 0, 0x100000)).toBeUndefined();
      expect(bare.vm.memory.read(0xe0000, 0x20000).every((b) => b === 0)).toBe(true);
    } finally {
      await bare.close();
    }
  });

  it("the guest's S5 write ends the run with reason poweroff and exit status 0", async () => {
    const r = await new VmmBuilder().kernelFile(guest("acpi-poweroff"), "tsvmm").memoryMiB(16).watchdog({ timeoutMs: 10_000 }).run();
    expect(r.reason).toBe("poweroff");
    expect(r.exitCode).toBe(0);
    expect(r.detail).toEqual({ kind: "device", device: "acpi-pm" });
  });

  it("an image reaching into the tables is refused at the firmware step, naming both", async () => {
    // An ELF32 whose only segment sits on the ACPI blob at 0xE0000.
    const src = join(dir, "over.s");
    writeFileSync(src, ".code32\n.globl _start\n_start:\n hlt\n .fill 64, 1, 0\n");
    execFileSync("as", ["--32", "-o", join(dir, "over.o"), src]);
    execFileSync("ld", ["-m", "elf_i386", "-Ttext=0xe0040", "-e", "_start", "-o", join(dir, "over.elf"), join(dir, "over.o")]);
    const b = new VmmBuilder().kernelFile(join(dir, "over.elf"), "elf").memoryMiB(16);
    let err: unknown;
    try {
      b.build();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(VmmBuildError);
    expect(err).toMatchObject({ code: "VMM_BUILD_FIRMWARE", step: "firmware", causeCode: "VMM_BUILD_INVALID" });
    expect((err as Error).message).toMatch(/segment at 0xe0040\+0x\w+ overlaps the ACPI tables at 0xe0000/);
    // The same image builds without the tables in its way.
    await b.acpi(false).mpTable(false).build().close();
  });
});
