import type { XsaveLayout } from "./cpu.js";
import { FxsaveLegacyLayout, XSAVE_EXTENDED_OFFSET, XSAVE_HEADER_OFFSET, XsaveHeaderLayout } from "./xsave-layout.js";

const L = FxsaveLegacyLayout;
const OFF_FCW = L.offsetOf("cwd");
const OFF_MXCSR = L.offsetOf("mxcsr");
const OFF_ST = L.offsetOf("stSpace");
const OFF_XMM = L.offsetOf("xmmSpace");
const OFF_XSTATE_BV = XSAVE_HEADER_OFFSET + XsaveHeaderLayout.offsetOf("xstateBv");
const OFF_XCOMP_BV = XSAVE_HEADER_OFFSET + XsaveHeaderLayout.offsetOf("xcompBv");
const HEADER_RESERVED = XSAVE_HEADER_OFFSET + XsaveHeaderLayout.offsetOf("reserved");
export const MXCSR_DEFAULT = 0x1f80;
export const BIT63 = 1n << 63n;

function le64(b: Uint8Array, off: number): bigint {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).readBigUInt64LE(off);
}
function put64(b: Uint8Array, off: number, v: bigint): void {
  Buffer.from(b.buffer, b.byteOffset, b.byteLength).writeBigUInt64LE(BigInt.asUintN(64, v), off);
}
export function readMxcsr(image: Uint8Array): number {
  return Buffer.from(image.buffer, image.byteOffset, image.byteLength).readUInt32LE(OFF_MXCSR);
}
export function writeMxcsr(image: Uint8Array, v: number): void {
  Buffer.from(image.buffer, image.byteOffset, image.byteLength).writeUInt32LE(v >>> 0, OFF_MXCSR);
}
export function xstateBv(image: Uint8Array): bigint {
  return le64(image, OFF_XSTATE_BV);
}
export function setXstateBv(image: Uint8Array, v: bigint): void {
  put64(image, OFF_XSTATE_BV, v);
}
/** Offset of XMM register `i` in the legacy region (the low 128 bits of YMM/ZMM). */
export function xmmOffset(i: number): number {
  return OFF_XMM + 16 * i;
}

/** Byte ranges [offset, length] of component `i` in the standard format (MXCSR excluded). */
function standardRanges(i: number, layout: XsaveLayout, xmmCount: number): [number, number][] {
  if (i === 0) return [[OFF_FCW, OFF_MXCSR - OFF_FCW], [OFF_ST, 128]];
  if (i === 1) return [[OFF_XMM, 16 * xmmCount]];
  const c = layout.components.find((x) => x.index === i);
  return c?.offset === undefined ? [] : [[c.offset, c.size]];
}

/** Component offsets in the compacted format for the components of `xcomp` (SDM vol. 1 13.4.3). */
export function compactedOffsets(xcomp: bigint, layout: XsaveLayout): Map<number, number> {
  const out = new Map<number, number>();
  let off = XSAVE_EXTENDED_OFFSET;
  const comps = [...layout.components].sort((a, b) => a.index - b.index);
  for (const c of comps) {
    if (c.index < 2 || !((xcomp >> BigInt(c.index)) & 1n)) continue;
    if (c.align64) off = (off + 63) & ~63;
    out.set(c.index, off);
    off += c.size;
  }
  return out;
}

/** Size of the area an XSAVE* of `rfbm` touches. */
export function areaSize(rfbm: bigint, compacted: boolean, layout: XsaveLayout): number {
  let end = XSAVE_EXTENDED_OFFSET;
  if (compacted) {
    const offs = compactedOffsets(rfbm, layout);
    for (const [i, o] of offs) end = Math.max(end, o + layout.components.find((c) => c.index === i)!.size);
  } else {
    for (const c of layout.components) {
      if (c.offset !== undefined && (rfbm >> BigInt(c.index)) & 1n) end = Math.max(end, c.offset + c.size);
    }
  }
  return end;
}

function initComponent(image: Uint8Array, i: number, layout: XsaveLayout, xmmCount: number): void {
  for (const [o, n] of standardRanges(i, layout, xmmCount)) image.fill(0, o, o + n);
  if (i === 0) Buffer.from(image.buffer, image.byteOffset, image.byteLength).writeUInt16LE(0x037f, OFF_FCW);
}

export type XsaveKind = "xsave" | "xsaveopt" | "xsavec" | "xsaves";

/** Pieces of guest memory an XSAVE-family store writes: [offset in the area, bytes]. */
export type AreaWrites = [number, Uint8Array][];

/**
 * What XSAVE/XSAVEOPT (standard format) or XSAVEC/XSAVES (compacted) store for requested-feature
 * bitmap `rfbm`, from the vCPU state `image` (standard format). `oldXstateBv` is the area's current
 * XSTATE_BV (standard-format stores keep its bits outside RFBM).
 */
export function xsaveStore(kind: XsaveKind, image: Uint8Array, layout: XsaveLayout, rfbm: bigint, oldXstateBv: bigint, xmmCount: number): AreaWrites {
  const xinuse = xstateBv(image) | 1n | 2n;
  const compacted = kind === "xsavec" || kind === "xsaves";
  const writes: AreaWrites = [];
  const init = new Uint8Array(image.length);
  initComponent(init, 0, layout, xmmCount);
  const offs = compacted ? compactedOffsets(rfbm, layout) : undefined;
  for (let i = 0; i < 64; i++) {
    if (!((rfbm >> BigInt(i)) & 1n)) continue;
    const inUse = ((xinuse >> BigInt(i)) & 1n) === 1n;
    if (!inUse && kind !== "xsave") continue;
    const src = inUse ? image : init;
    const ranges = standardRanges(i, layout, xmmCount);
    if (i >= 2 && offs !== undefined) {
      const dst = offs.get(i);
      const r = ranges[0];
      if (dst === undefined) continue;
      // A supervisor component without a standard offset is not in the vCPU image: store its init state (zeros).
      writes.push([dst, r === undefined ? new Uint8Array(layout.components.find((c) => c.index === i)!.size) : src.slice(r[0], r[0] + r[1])]);
    } else {
      for (const [o, n] of ranges) writes.push([o, src.slice(o, o + n)]);
    }
  }
  if (rfbm & 6n) writes.push([OFF_MXCSR, image.slice(OFF_MXCSR, OFF_MXCSR + 8)]);
  const hdr = new Uint8Array(compacted ? 16 : 8);
  if (compacted) {
    put64(hdr, 0, xinuse & rfbm);
    put64(hdr, 8, rfbm | BIT63);
  } else {
    put64(hdr, 0, (oldXstateBv & ~rfbm) | (xinuse & rfbm));
  }
  writes.push([OFF_XSTATE_BV, hdr]);
  return writes;
}

/** Why XRSTOR/XRSTORS refuses an area: #GP(0). */
export type XrstorError = { readonly gp: string };

/** Where the header of an XSAVE area lies, for reading it before the whole area. */
export const XSAVE_HEADER = { offset: XSAVE_HEADER_OFFSET, size: XsaveHeaderLayout.size };

/** The area size XRSTOR/XRSTORS reads given the area's header. */
export function restoreAreaSize(header: Uint8Array, rfbm: bigint, layout: XsaveLayout): number {
  const xcomp = le64(header, 8);
  return (xcomp & BIT63) !== 0n ? areaSize(xcomp & ~BIT63, true, layout) : areaSize(rfbm, false, layout);
}

/**
 * XRSTOR (`supervisor` false: RFBM = XCR0 & EDX:EAX) or XRSTORS (true: RFBM includes IA32_XSS bits,
 * compacted format only) from `area` into a copy of `image`. Applies the SDM vol. 1 13.8 checks.
 */
export function xrstorLoad(
  area: Uint8Array,
  image: Uint8Array,
  layout: XsaveLayout,
  rfbm: bigint,
  enabled: bigint,
  supervisor: boolean,
  mxcsrMask: number,
  xmmCount: number,
): Uint8Array | XrstorError {
  const xstate = le64(area, OFF_XSTATE_BV);
  const xcomp = le64(area, OFF_XCOMP_BV);
  const compacted = (xcomp & BIT63) !== 0n;
  if (supervisor && !compacted) return { gp: "XRSTORS needs the compacted format (XCOMP_BV bit 63)" };
  if (compacted) {
    if ((xcomp & ~BIT63 & ~enabled) !== 0n) return { gp: "XCOMP_BV has a bit outside XCR0 | IA32_XSS" };
    if ((xstate & ~xcomp) !== 0n) return { gp: "XSTATE_BV has a bit outside XCOMP_BV" };
    for (let k = HEADER_RESERVED; k < XSAVE_EXTENDED_OFFSET; k++) if (area[k] !== 0) return { gp: "header bytes 63:16 are not zero" };
  } else {
    if ((xstate & ~enabled) !== 0n) return { gp: "XSTATE_BV has a bit outside XCR0" };
    for (let k = OFF_XCOMP_BV; k < OFF_XCOMP_BV + 16; k++) if (area[k] !== 0) return { gp: "header bytes 23:8 are not zero" };
  }
  const loadMxcsr = compacted ? (rfbm & xstate & 6n) !== 0n : (rfbm & 6n) !== 0n;
  let mxcsr: number | undefined;
  if (loadMxcsr) {
    mxcsr = Buffer.from(area.buffer, area.byteOffset, area.byteLength).readUInt32LE(OFF_MXCSR);
    if ((mxcsr & ~mxcsrMask) !== 0) return { gp: `MXCSR 0x${mxcsr.toString(16)} sets reserved bits` };
  }
  const out = Uint8Array.from(image);
  const offs = compacted ? compactedOffsets(xcomp & ~BIT63, layout) : undefined;
  let bv = xstateBv(out);
  for (let i = 0; i < 64; i++) {
    const bit = 1n << BigInt(i);
    if (!(rfbm & bit)) continue;
    const ranges = standardRanges(i, layout, xmmCount);
    if (xstate & bit) {
      if (i >= 2 && offs !== undefined) {
        const src = offs.get(i);
        const r = ranges[0];
        if (src !== undefined && r !== undefined) out.set(area.subarray(src, src + r[1]), r[0]);
      } else {
        for (const [o, n] of ranges) out.set(area.subarray(o, o + n), o);
      }
      bv |= bit;
    } else {
      initComponent(out, i, layout, xmmCount);
      bv &= ~bit;
    }
  }
  if (mxcsr !== undefined) writeMxcsr(out, mxcsr);
  setXstateBv(out, bv);
  return out;
}
