import { MsrBitmapBase, type MsrSegment } from "./bitmap.js";

// Intel SDM vol. 3C §25.6.9: four 1-KiB bitmaps in one page — read-low at 0x000, read-high at
// 0x400, write-low at 0x800, write-high at 0xC00. "Low" is MSRs 0x0-0x1FFF, "high" is
// 0xC0000000-0xC0001FFF; RDMSR/WRMSR of any other MSR always exits.
const VMX_SEGMENTS: readonly MsrSegment[] = [
  { first: 0x0000_0000, count: 0x2000, readBit: 0x000 * 8, writeBit: 0x800 * 8, stride: 1 },
  { first: 0xc000_0000, count: 0x2000, readBit: 0x400 * 8, writeBit: 0xc00 * 8, stride: 1 },
];

/** The VMX MSR bitmap: one 4-KiB page, one bit per MSR per direction; 1 = the access exits. */
export class VmxMsrBitmap extends MsrBitmapBase {
  static readonly BYTE_LENGTH = 4096;
  readonly kind = "vmx-msr-bitmap" as const;
  protected readonly segments = VMX_SEGMENTS;

  constructor() {
    super(VmxMsrBitmap.BYTE_LENGTH);
  }
}
