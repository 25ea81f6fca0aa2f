import { MsrBitmapBase, type MsrSegment } from "./bitmap.js";

// AMD APM vol. 2 §15.11: the MSR permission map is 8 KiB; each MSR has two consecutive bits, the
// lower one intercepting RDMSR and the higher one WRMSR. Bytes 0x000-0x7FF cover 0x0-0x1FFF,
// 0x800-0xFFF cover 0xC0000000-0xC0001FFF, 0x1000-0x17FF cover 0xC0010000-0xC0011FFF; the last
// 2 KiB are reserved. Any other MSR is always intercepted.
const SVM_SEGMENTS: readonly MsrSegment[] = [
  { first: 0x0000_0000, count: 0x2000, readBit: 0x0000 * 8, writeBit: 0x0000 * 8 + 1, stride: 2 },
  { first: 0xc000_0000, count: 0x2000, readBit: 0x0800 * 8, writeBit: 0x0800 * 8 + 1, stride: 2 },
  { first: 0xc001_0000, count: 0x2000, readBit: 0x1000 * 8, writeBit: 0x1000 * 8 + 1, stride: 2 },
];

/** The SVM MSR permission map (MSRPM): 8 KiB, two bits per MSR (read, then write); 1 = the access exits. */
export class SvmMsrpm extends MsrBitmapBase {
  static readonly BYTE_LENGTH = 8192;
  readonly kind = "svm-msrpm" as const;
  protected readonly segments = SVM_SEGMENTS;

  constructor() {
    super(SvmMsrpm.BYTE_LENGTH);
  }
}
