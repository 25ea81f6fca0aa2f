import type { Device, RegisterTarget } from "./bus.js";

/** Where QEMU's pc-testdev maps its "iomem" region, and its size. */
export const PC_TESTDEV_IOMEM_BASE = 0xff00_0000;
export const PC_TESTDEV_IOMEM_SIZE = 0x1_0000;

/** What {@link PcTestDevIomem.saveState} returns: the bytes as base64. */
export type PcTestDevIomemState = {
  data: string;
};

/**
 * QEMU pc-testdev's 64 KiB "iomem" region: MMIO that behaves like RAM (reads return what was
 * written, any width, any offset; zero at start). kvm-unit-tests' x86 emulator test maps it
 * (IORAM_BASE_PHYS) and runs instructions against it, so every access is an MMIO exit that KVM's
 * instruction emulator must carry out; it is deliberately not a memory slot.
 */
export class PcTestDevIomem implements Device {
  readonly name: string;
  readonly bytes = Buffer.alloc(PC_TESTDEV_IOMEM_SIZE);

  constructor(name = "pc-testdev.iomem") {
    this.name = name;
  }

  read(offset: number, data: Buffer): void {
    // The bus only hands accesses inside the registered range; clip anyway so a caller
    // registering a larger range cannot read past the buffer.
    data.fill(0);
    this.bytes.copy(data, 0, offset, Math.min(offset + data.length, this.bytes.length));
  }

  write(offset: number, data: Buffer): void {
    if (offset >= this.bytes.length) return;
    data.copy(this.bytes, offset, 0, Math.min(data.length, this.bytes.length - offset));
  }

  attach(bus: RegisterTarget, base = PC_TESTDEV_IOMEM_BASE): void {
    bus.register(base, PC_TESTDEV_IOMEM_SIZE, this);
  }

  saveState(): PcTestDevIomemState {
    return { data: this.bytes.toString("base64") };
  }

  restoreState(s: PcTestDevIomemState): void {
    const b = Buffer.from(s.data, "base64");
    this.bytes.fill(0);
    b.copy(this.bytes, 0, 0, Math.min(b.length, this.bytes.length));
  }
}
