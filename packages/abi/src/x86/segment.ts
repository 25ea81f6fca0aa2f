import { TsvmmError } from "../errors.js";
import type { KvmSegment } from "../kvm/structs.js";

// One model of a segment register's hidden part, and its three encodings: the descriptor in a
// GDT/LDT (SDM Vol. 3A §3.4.5, APM Vol. 2 §4.7–4.8), the VMCS access-rights field (SDM Vol. 3C
// Table 25-2) and the VMCB attribute field (APM Vol. 2 §15.5.1, appendix B). The two
// virtualization encodings are the descriptor's bits 47:40 and 55:52 placed differently: VMX puts
// 55:52 at 15:12 and adds "unusable" at 16, SVM packs 55:52 into 11:8 and has no unusable bit.

/** The attributes a segment register caches: descriptor bits 47:40 and 55:52, plus "unusable". */
export interface SegmentAccess {
  /** Type field, 4 bits (see SEGMENT_TYPE and the TYPE_* bits of VMX_AR). */
  type: number;
  /** 1: code or data segment; 0: system segment (LDT, TSS, gate). */
  s: number;
  dpl: number;
  p: number;
  avl: number;
  /** 64-bit code segment (IA-32e mode). */
  l: number;
  /** Default operation size / big (D/B). */
  db: number;
  /** Granularity: the limit counts 4-KiB units. */
  g: number;
  /** Loaded with a null selector (or otherwise not usable); VMX and KVM track it, SVM has P = 0. */
  unusable: number;
}

/** A whole segment register. `limit` is the byte-granular limit the CPU caches (what KVM and the VMCS hold). */
export interface Segment extends SegmentAccess {
  selector: number;
  base: bigint;
  limit: number;
}

/** Type-field values used by VM-entry and VMRUN checks and by boot code. */
export const SEGMENT_TYPE = {
  DATA_RW_ACCESSED: 3,
  DATA_RW_EXPAND_DOWN_ACCESSED: 7,
  CODE_EXEC_ACCESSED: 9,
  CODE_EXEC_READ_ACCESSED: 11,
  CODE_CONFORMING_ACCESSED: 13,
  CODE_CONFORMING_READ_ACCESSED: 15,
  // System segments (S = 0). In IA-32e mode 9 and 11 are the 64-bit TSS.
  TSS16_AVAILABLE: 1,
  LDT: 2,
  TSS16_BUSY: 3,
  TSS32_AVAILABLE: 9,
  TSS32_BUSY: 11,
} as const;

/** Bits 7:0 of both encodings: the descriptor's access byte (its bits 47:40). */
const ACCESS_BYTE = {
  TYPE_MASK: 0xf,
  TYPE_ACCESSED: 1 << 0,
  /** Data: writable; code: readable. */
  TYPE_RW: 1 << 1,
  /** Data: expand-down; code: conforming. */
  TYPE_DC: 1 << 2,
  TYPE_CODE: 1 << 3,
  S: 1 << 4,
  DPL_SHIFT: 5,
  DPL_MASK: 3 << 5,
  P: 1 << 7,
} as const;

/** The 32-bit VMCS guest access-rights format (GUEST_xx_AR_BYTES). */
export const VMX_AR = {
  ...ACCESS_BYTE,
  RESERVED_11_8: 0xf00,
  AVL: 1 << 12,
  L: 1 << 13,
  DB: 1 << 14,
  G: 1 << 15,
  UNUSABLE: 1 << 16,
  RESERVED_31_17: 0xfffe_0000,
} as const;

/** The 16-bit VMCB segment attribute field (save.xx.attrib); bits 15:12 are unused. */
export const SVM_ATTRIB = {
  ...ACCESS_BYTE,
  AVL: 1 << 8,
  L: 1 << 9,
  DB: 1 << 10,
  G: 1 << 11,
} as const;

/** Descriptor bits 47:40 and 55:52 as one 12-bit value (the SVM attrib layout) -> access, usable. */
function fromAttrib12(v: number, unusable: number): SegmentAccess {
  return {
    type: v & 0xf,
    s: (v >>> 4) & 1,
    dpl: (v >>> 5) & 3,
    p: (v >>> 7) & 1,
    avl: (v >>> 8) & 1,
    l: (v >>> 9) & 1,
    db: (v >>> 10) & 1,
    g: (v >>> 11) & 1,
    unusable,
  };
}

function toAttrib12(a: SegmentAccess, p: number): number {
  return (a.type & 0xf) | ((a.s & 1) << 4) | ((a.dpl & 3) << 5) | ((p & 1) << 7) | ((a.avl & 1) << 8) | ((a.l & 1) << 9) | ((a.db & 1) << 10) | ((a.g & 1) << 11);
}

/** Decode a VMCS access-rights value; the reserved bits 11:8 and 31:17 are ignored. */
export function accessFromVmxAr(ar: number): SegmentAccess {
  return fromAttrib12((ar & 0xff) | ((ar >>> 4) & 0xf00), (ar >>> 16) & 1);
}

/** Encode a VMCS access-rights value (reserved bits 0). */
export function vmxArFromAccess(a: SegmentAccess): number {
  const v = toAttrib12(a, a.p);
  return ((v & 0xff) | ((v & 0xf00) << 4) | ((a.unusable & 1) << 16)) >>> 0;
}

/**
 * Decode a VMCB attribute value (bits 15:12 ignored). SVM has no unusable bit; a segment with
 * P = 0 is reported unusable, as KVM reports it. Real mode, where the CPU uses a segment whatever
 * its P bit, is the caller's to treat.
 */
export function accessFromSvmAttrib(attrib: number): SegmentAccess {
  const p = (attrib >>> 7) & 1;
  return fromAttrib12(attrib & 0xfff, p ^ 1);
}

/** Encode a VMCB attribute value. An unusable segment is stored with P = 0, its only SVM form. */
export function svmAttribFromAccess(a: SegmentAccess): number {
  return toAttrib12(a, a.unusable & 1 ? 0 : a.p);
}

/** The same segment as `struct kvm_segment` (KVM_GET/SET_SREGS). */
export function kvmSegmentFromSegment(s: Segment): KvmSegment {
  return {
    base: s.base,
    limit: s.limit,
    selector: s.selector,
    type: s.type,
    present: s.p,
    dpl: s.dpl,
    db: s.db,
    s: s.s,
    l: s.l,
    g: s.g,
    avl: s.avl,
    unusable: s.unusable,
  };
}

/** A `struct kvm_segment` as a Segment. */
export function segmentFromKvmSegment(k: KvmSegment): Segment {
  return {
    selector: k.selector,
    base: k.base,
    limit: k.limit,
    type: k.type,
    s: k.s,
    dpl: k.dpl,
    p: k.present,
    avl: k.avl,
    l: k.l,
    db: k.db,
    g: k.g,
    unusable: k.unusable,
  };
}

/** A segment that no 8-byte descriptor can hold. */
export class SegmentError extends TsvmmError<"SEGMENT_NOT_ENCODABLE"> {
  constructor(message: string) {
    super("SEGMENT_NOT_ENCODABLE", message);
  }
}

/**
 * The 8-byte GDT/LDT descriptor that loads as `s`. The base must fit 32 bits; the cached limit
 * must be a 20-bit value (G = 0) or one ending in FFFh whose bits 31:12 fit 20 bits (G = 1).
 * Throws SegmentError otherwise: a silently truncated descriptor would load a different segment.
 */
export function encodeSegmentDescriptor(s: Segment): bigint {
  if (s.base < 0n || s.base > 0xffff_ffffn) throw new SegmentError(`base 0x${s.base.toString(16)} does not fit a descriptor's 32 bits`);
  const limit = s.limit >>> 0;
  if (s.g & 1 ? (limit & 0xfff) !== 0xfff : limit > 0xfffff) {
    throw new SegmentError(`limit 0x${limit.toString(16)} cannot be encoded with G=${s.g & 1}`);
  }
  const raw = BigInt(s.g & 1 ? limit >>> 12 : limit);
  const attrib = BigInt(toAttrib12(s, s.p));
  const base = s.base;
  return (
    (raw & 0xffffn) |
    ((base & 0xff_ffffn) << 16n) |
    ((attrib & 0xffn) << 40n) |
    ((raw >> 16n) << 48n) |
    ((attrib >> 8n) << 52n) |
    ((base >> 24n) << 56n)
  );
}

/** The segment a descriptor loads, with `selector`. A descriptor is never unusable. */
export function decodeSegmentDescriptor(d: bigint, selector = 0): Segment {
  const raw = Number((d & 0xffffn) | (((d >> 48n) & 0xfn) << 16n));
  const attrib = Number(((d >> 40n) & 0xffn) | (((d >> 52n) & 0xfn) << 8n));
  const base = ((d >> 16n) & 0xff_ffffn) | (((d >> 56n) & 0xffn) << 24n);
  const access = fromAttrib12(attrib, 0);
  return { selector, base, limit: access.g ? ((raw << 12) | 0xfff) >>> 0 : raw, ...access };
}
