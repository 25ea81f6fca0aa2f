import { anyBit, fillBits } from "../bits.js";
import { IoBitmapBase, PORT_LIMIT } from "./bitmap.js";

/** Bits past port 0xFFFF that a 2- or 4-byte access starting at 0xFFFD..0xFFFF reads. */
const OVERFLOW_BITS = 3;

/**
 * The SVM I/O permission map: 12 KiB, bit p intercepts port p. AMD APM vol. 2 §15.10.1: an access
 * of n bytes checks the bits of all n ports; near 0xFFFF those bits continue into the third 4 KiB
 * (bits 0x10000-0x10002), which is why the map is 12 KiB and not 8. There is no wrap to port 0.
 */
export class SvmIopm extends IoBitmapBase {
  static readonly BYTE_LENGTH = 12288;
  readonly kind = "svm-iopm" as const;
  protected readonly meaningfulBits = PORT_LIMIT + OVERFLOW_BITS;

  constructor() {
    super(SvmIopm.BYTE_LENGTH);
  }

  protected beyondPortSpace(port: number, size: number): boolean {
    return anyBit(this.page, port, size);
  }

  /** Whether all three bits past 0xFFFF are set (multi-byte accesses running past 0xFFFF exit). */
  get interceptsBeyondPortSpace(): boolean {
    return anyBit(this.page, PORT_LIMIT, 1) && anyBit(this.page, PORT_LIMIT + 1, 1) && anyBit(this.page, PORT_LIMIT + 2, 1);
  }

  /** Sets or clears the three bits past 0xFFFF together. */
  setInterceptBeyondPortSpace(intercept: boolean): this {
    fillBits(this.page, PORT_LIMIT, OVERFLOW_BITS, intercept);
    return this;
  }
}
