import { BitmapError } from "../errors.js";
import { IoBitmapBase } from "./bitmap.js";

const PAGE = 4096;

/**
 * The VMX I/O bitmaps A (ports 0x0000-0x7FFF) and B (0x8000-0xFFFF), one 4-KiB page each, kept
 * here as one 8-KiB buffer (A then B). Intel SDM vol. 3C §26.1.3: an access exits if the bit of
 * any port it touches is set, and one that wraps past 0xFFFF always exits.
 */
export class VmxIoBitmap extends IoBitmapBase {
  static readonly BYTE_LENGTH = 2 * PAGE;
  readonly kind = "vmx-io-bitmap" as const;
  protected readonly meaningfulBits = 0x10000;

  constructor() {
    super(VmxIoBitmap.BYTE_LENGTH);
  }

  protected beyondPortSpace(): boolean {
    return true;
  }

  /** Builds from the two pages the VMCS points at (each copied). */
  static fromPages(a: Uint8Array, b: Uint8Array): VmxIoBitmap {
    for (const [name, p] of [["A", a], ["B", b]] as const) {
      if (!(p instanceof Uint8Array) || p.length !== PAGE) {
        throw new BitmapError("BITMAP_BAD_LENGTH", `VMX I/O bitmap ${name} must be exactly ${PAGE} bytes`);
      }
    }
    const bm = new VmxIoBitmap();
    bm.page.set(a, 0);
    bm.page.set(b, PAGE);
    return bm;
  }

  /** Copies of bitmap A (ports 0x0000-0x7FFF) and bitmap B (0x8000-0xFFFF). */
  toPages(): { a: Buffer; b: Buffer } {
    return { a: Buffer.from(this.page.subarray(0, PAGE)), b: Buffer.from(this.page.subarray(PAGE)) };
  }
}
