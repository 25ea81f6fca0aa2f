import { anyBit, fillBits, getBit, runsOf } from "../bits.js";
import { BitmapError } from "../errors.js";
import { formatRange, hex, type IndexRange, parseRange } from "../hex.js";
import { type Ctor, PageBitmap } from "../page-bitmap.js";

/**
 * The PIO bus's question: does an access of `size` bytes at `port` go to the VMM? Structural, so a
 * bus can accept any object of this shape without importing this package.
 */
export interface IoInterceptPolicy {
  intercepts(port: number, size: number): boolean;
}

export type IoBitmapKind = "vmx-io-bitmap" | "svm-iopm";
/** One port or an inclusive range of ports. */
export type PortSelector = number | IndexRange;

/** JSON form of an I/O bitmap: the intercepted ports (SVM also lists its bits past 0xFFFF). */
export interface IoBitmapJson {
  format: "tsvmm.io-bitmap/1";
  kind: IoBitmapKind;
  intercept: string[];
}

export const PORT_LIMIT = 0x10000;

export function checkPort(port: unknown): number {
  if (typeof port !== "number" || !Number.isInteger(port) || port < 0 || port >= PORT_LIMIT) {
    throw new BitmapError("IO_INVALID_PORT", `I/O port must be an integer in 0x0..0xffff, got ${String(port)}`);
  }
  return port;
}

function checkSize(size: unknown): number {
  if (size !== 1 && size !== 2 && size !== 4) {
    throw new BitmapError("IO_INVALID_SIZE", `I/O access size must be 1, 2 or 4 bytes, got ${String(size)}`);
  }
  return size;
}

export function portRange(sel: PortSelector): IndexRange {
  if (typeof sel === "number") return { first: checkPort(sel), last: sel };
  if (typeof sel !== "object" || sel === null) {
    throw new BitmapError("IO_INVALID_PORT", `expected a port or {first, last}, got ${String(sel)}`);
  }
  const first = checkPort(sel.first);
  const last = checkPort(sel.last);
  if (first > last) throw new BitmapError("BITMAP_INVALID_RANGE", `port range ${hex(first)}-${hex(last)} has first > last`);
  return { first, last };
}


/**
 * Logic shared by the VMX I/O bitmaps and the SVM IOPM: bit p of the page intercepts port p; an
 * access of n bytes at p touches ports p..p+n-1 and exits if any of their bits is set. They differ
 * only for an access that runs past port 0xFFFF ({@link beyondPortSpace}).
 */
export abstract class IoBitmapBase extends PageBitmap<IoBitmapKind> implements IoInterceptPolicy {
  /** Bits that mean something: 0x10000 for VMX; SVM adds the three it reads past port 0xFFFF. */
  protected abstract readonly meaningfulBits: number;

  /** An access that runs past port 0xFFFF (port + size > 0x10000). */
  protected abstract beyondPortSpace(port: number, size: number): boolean;

  /** Every port intercepted (and, for SVM, the bits past 0xFFFF set). */
  static interceptAll<T extends IoBitmapBase>(this: Ctor<T>): T {
    const b = new this();
    fillBits(b.page, 0, b.meaningfulBits, true);
    return b;
  }

  /** Intercept every port except the listed ones. */
  static fromAllowList<T extends IoBitmapBase>(this: Ctor<T>, ports: Iterable<PortSelector>): T {
    const b = new this();
    fillBits(b.page, 0, b.meaningfulBits, true);
    for (const p of ports) b.allow(p);
    return b;
  }

  /** Intercept exactly the listed ports. */
  static fromDenyList<T extends IoBitmapBase>(this: Ctor<T>, ports: Iterable<PortSelector>): T {
    const b = new this();
    for (const p of ports) b.intercept(p);
    return b;
  }

  static fromJSON<T extends IoBitmapBase>(this: Ctor<T>, json: unknown): T {
    const b = new this();
    const j = json as Partial<IoBitmapJson> | null;
    if (typeof j !== "object" || j === null || j.format !== "tsvmm.io-bitmap/1" || j.kind !== b.kind || !Array.isArray(j.intercept)) {
      throw new BitmapError("BITMAP_BAD_JSON", `not a ${b.kind}: expected format "tsvmm.io-bitmap/1", kind "${b.kind}" and an "intercept" array`);
    }
    j.intercept.forEach((text: unknown, i: number) => {
      const r = parseRange(text, b.meaningfulBits - 1, `intercept[${i}]`);
      fillBits(b.page, r.first, r.last - r.first + 1, true);
    });
    return b;
  }

  get byteLength(): number {
    return this.page.length;
  }

  /** Whether an IN/OUT of `size` (1, 2 or 4) bytes at `port` exits. */
  intercepts(port: number, size = 1): boolean {
    checkPort(port);
    checkSize(size);
    if (port + size > PORT_LIMIT) return this.beyondPortSpace(port, size);
    return size === 1 ? getBit(this.page, port) : anyBit(this.page, port, size);
  }

  /** The bit of one port, ignoring access size. */
  interceptsPort(port: number): boolean {
    return getBit(this.page, checkPort(port));
  }

  intercept(ports: PortSelector): this {
    const r = portRange(ports);
    fillBits(this.page, r.first, r.last - r.first + 1, true);
    return this;
  }

  allow(ports: PortSelector): this {
    const r = portRange(ports);
    fillBits(this.page, r.first, r.last - r.first + 1, false);
    return this;
  }

  /** Intercepted ports (0..0xFFFF only). */
  interceptedRanges(): IndexRange[] {
    return runsOf(this.page, 0, PORT_LIMIT, 1, true).map(([s, e]) => ({ first: s, last: e - 1 }));
  }

  allowedRanges(): IndexRange[] {
    return runsOf(this.page, 0, PORT_LIMIT, 1, false).map(([s, e]) => ({ first: s, last: e - 1 }));
  }

  /** A copy of the page(s), byte for byte what the CPU reads. */
  toBuffer(): Buffer {
    return Buffer.from(this.page);
  }

  toJSON(): IoBitmapJson {
    const runs = runsOf(this.page, 0, this.meaningfulBits, 1, true);
    return { format: "tsvmm.io-bitmap/1", kind: this.kind, intercept: runs.map(([s, e]) => formatRange({ first: s, last: e - 1 })) };
  }
}
