import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findRsdp, readAcpiTables } from "@tsvmm/acpi";
import { requireKvm } from "@tsvmm/kvm-backend";
import { VIRTIO_MMIO_BASE, VmmBuilder, virtioCmdline, virtioSlot } from "@tsvmm/vmm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// The VMM side of virtio: windows, interrupts and doorbells as the builder gives them out. The
// guests that drive the devices are in test-kernels (virtio-* cases).

const hasKvm = requireKvm();
const root = join(__dirname, "..", "..", "..");
let dir = "";
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "tsvmm-virtio-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("virtio placement", () => {
  it("windows are 4 KiB apart from 0xd0000000, GSIs from 16, and the command line says the same", () => {
    expect([0, 1, 2].map(virtioSlot)).toEqual([
      { address: 0xd0000000, size: 0x1000, gsi: 16 },
      { address: 0xd0001000, size: 0x1000, gsi: 17 },
      { address: 0xd0002000, size: 0x1000, gsi: 18 },
    ]);
    expect(virtioCmdline([virtioSlot(0), virtioSlot(1)])).toBe("virtio_mmio.device=4K@0xd0000000:16 virtio_mmio.device=4K@0xd0001000:17");
  });
});

describe.runIf(hasKvm)("virtio devices on a built VM", () => {
  it("each device answers on its window with the virtio-mmio magic, version 2 and its device id; everything is released", async () => {
    const img = join(dir, "disk.img");
    writeFileSync(img, Buffer.alloc(1 << 20));
    const vmm = new VmmBuilder()
      .kernelFile(join(root, "test-kernels", "out", "exit-code.elf"))
      .memoryMiB(16)
      .disk(img)
      .rng()
      .virtioConsole()
      .vsock(3, join(dir, "v.sock"))
      .build();
    const ids = [0, 1, 2, 3].map((i) => {
      const base = VIRTIO_MMIO_BASE + i * 0x1000;
      return [vmm.mmio.readValue(base, 4), vmm.mmio.readValue(base + 4, 4), vmm.mmio.readValue(base + 8, 4)];
    });
    expect(ids).toEqual([
      [0x74726976, 2, 2],
      [0x74726976, 2, 4],
      [0x74726976, 2, 3],
      [0x74726976, 2, 19],
    ]);
    const r = await vmm.run();
    expect(r.exitCode).toBe(42);
    expect(vmm.vm.closed).toBe(true);
  });

  it("every attached device is in the DSDT as LNRO0005 with its window and GSI (how ACPI-only kernels find them)", async () => {
    const vmm = new VmmBuilder().kernelFile(join(root, "test-kernels", "out", "exit-code.elf")).memoryMiB(16).rng().virtioConsole().build();
    try {
      const t = readAcpiTables(vmm.vm.memory, findRsdp(vmm.vm.memory)!);
      const dsdt = Buffer.from(t.find("DSDT")!.bytes);
      expect(dsdt.toString("latin1").split("LNRO0005").length - 1).toBe(2);
      for (const i of [0, 1]) {
        const base = Buffer.alloc(4);
        base.writeUInt32LE(VIRTIO_MMIO_BASE + i * 0x1000);
        // Memory32Fixed: tag 0x86, length 9, then the read-write flag and the base.
        expect(dsdt.includes(Buffer.concat([Buffer.from([0x86, 0x09, 0x00, 0x01]), base])), `window ${i}`).toBe(true);
      }
    } finally {
      await vmm.close();
    }
  });

  it("virtio without the in-kernel irqchip is a build error of the devices step", () => {
    expect(() => new VmmBuilder().kernelFile(join(root, "test-kernels", "out", "hello.elf")).irqchip(false).rng().build()).toThrow(
      expect.objectContaining({ code: "VMM_BUILD_DEVICES" }),
    );
  });
});
