/** Segment access-rights format of the guest AR-byte fields (SDM Vol. 3C Table 24-2 / 25-2). */
export const AR = {
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
  RESERVED_11_8: 0xf00,
  AVL: 1 << 12,
  L: 1 << 13,
  DB: 1 << 14,
  G: 1 << 15,
  UNUSABLE: 1 << 16,
  RESERVED_31_17: 0xfffe_0000,
} as const;

/** Segment/system descriptor types used by the checks. */
export const SEG_TYPE = {
  DATA_RW_ACCESSED: 3,
  DATA_RW_EXPAND_DOWN_ACCESSED: 7,
  CODE_EXEC_ACCESSED: 9,
  CODE_EXEC_READ_ACCESSED: 11,
  CODE_CONFORMING_ACCESSED: 13,
  CODE_CONFORMING_READ_ACCESSED: 15,
  LDT: 2,
  TSS16_BUSY: 3,
  TSS32_BUSY: 11,
} as const;

export interface AccessRights {
  type: number;
  s: number;
  dpl: number;
  p: number;
  avl: number;
  l: number;
  db: number;
  g: number;
  unusable: number;
}

/** Pack access-rights fields into the 32-bit VMCS AR format. */
export function packAr(a: AccessRights): number {
  return (
    ((a.type & 0xf) |
      ((a.s & 1) << 4) |
      ((a.dpl & 3) << 5) |
      ((a.p & 1) << 7) |
      ((a.avl & 1) << 12) |
      ((a.l & 1) << 13) |
      ((a.db & 1) << 14) |
      ((a.g & 1) << 15) |
      ((a.unusable & 1) << 16)) >>>
    0
  );
}

/** Unpack the 32-bit VMCS AR format (reserved bits are ignored). */
export function unpackAr(ar: number): AccessRights {
  return {
    type: ar & 0xf,
    s: (ar >>> 4) & 1,
    dpl: (ar >>> 5) & 3,
    p: (ar >>> 7) & 1,
    avl: (ar >>> 12) & 1,
    l: (ar >>> 13) & 1,
    db: (ar >>> 14) & 1,
    g: (ar >>> 15) & 1,
    unusable: (ar >>> 16) & 1,
  };
}
