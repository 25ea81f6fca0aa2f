import { BitmapError } from "./errors.js";

export type Ctor<T> = new () => T;

/**
 * A hardware intercept page (VMX MSR or I/O bitmap, SVM MSRPM or IOPM): its bytes, its kind, and
 * the operations that do not care how the bits are laid out.
 */
export abstract class PageBitmap<K extends string> {
  abstract readonly kind: K;
  protected readonly page: Buffer;

  /** A zeroed page: nothing intercepted. */
  protected constructor(byteLength: number) {
    this.page = Buffer.alloc(byteLength);
  }

  /** Reads the page(s) exactly as the CPU would; the buffer is copied. */
  static fromBuffer<T extends PageBitmap<string>>(this: Ctor<T>, bytes: Uint8Array): T {
    const b = new this();
    if (!(bytes instanceof Uint8Array) || bytes.length !== b.page.length) {
      throw new BitmapError(
        "BITMAP_BAD_LENGTH",
        `${b.kind} must be exactly ${b.page.length} bytes, got ${bytes instanceof Uint8Array ? bytes.length : typeof bytes}`,
      );
    }
    b.page.set(bytes);
    return b;
  }

  clone(): this {
    const c = new (this.constructor as Ctor<this>)();
    c.page.set(this.page);
    return c;
  }

  /** Intercepts wherever either bitmap intercepts (the stricter combination). */
  union(other: this): this {
    return this.combine(other, (a, b) => a | b);
  }

  /** Intercepts only where both bitmaps intercept (the laxer combination). */
  intersection(other: this): this {
    return this.combine(other, (a, b) => a & b);
  }

  equals(other: PageBitmap<string>): boolean {
    return other.kind === this.kind && this.page.equals(other.page);
  }

  private combine(other: PageBitmap<string>, op: (a: number, b: number) => number): this {
    if (!(other instanceof PageBitmap) || other.kind !== this.kind) {
      throw new BitmapError("BITMAP_KIND_MISMATCH", `cannot combine a ${this.kind} with ${other instanceof PageBitmap ? `a ${other.kind}` : "a non-bitmap"}`);
    }
    const c = this.clone();
    for (let i = 0; i < c.page.length; i++) c.page[i] = op(this.page[i]!, other.page[i]!);
    return c;
  }
}
