import { TWO32 } from "./bits.js";
import type { PagingFormat } from "./format.js";
import type { TableMemory } from "./table-memory.js";

// Fault codes, as in tables.ts `Fault` (kept as literals so this module needs nothing from there).
const NOT_PRESENT = -1;
const RESERVED = -2;
const PERMISSION = -3;
const ADDRESS_OUT_OF_RANGE = -4;
const TABLE_OUTSIDE_MEMORY = -5;

/**
 * The format's per-level masks flattened into scalars once, for {@link walkFast}. The general
 * walker looks each mask up by level in arrays and calls the format per entry; at ~10^7 entries a
 * second those lookups, and the bookkeeping for `translate`'s steps, cost several times the walk
 * itself. Built from the format's own description, so there is still one source for every rule.
 */
export class FastWalkPlan {
  // Declared, not defined: a defined class field starts as undefined, and V8 then keeps the field
  // as a tagged value it must check and untag on every load of the walk. Assigned once in the
  // constructor, each is a plain small integer (or the typed array) from the start.
  declare readonly format: PagingFormat<unknown>;
  declare readonly root: number;
  declare readonly five: boolean;
  declare readonly signExtend: boolean;
  /** Shift of the high word that leaves the bits above the input width (sign bit included when sign-extending). */
  declare readonly top: number;
  declare readonly present: number;
  declare readonly reservedHi: number;
  declare readonly addrHi: number;
  declare readonly badRwx: number;
  declare readonly badLeafType: number;
  declare readonly tableLo5: number;
  declare readonly tableLo4: number;
  declare readonly tableLo3: number;
  declare readonly tableLo2: number;
  declare readonly leafLo3: number;
  declare readonly leafLo2: number;
  declare readonly leafLo1: number;
  declare readonly leaf3: boolean;
  declare readonly leaf2: boolean;
  /** Inputs at or past this take the full walk: 2^47 or 2^48 for 4 levels, 0 for 5. */
  declare readonly quickLimit: number;
  /** The root when below 4 GiB, else -1 (which no region check accepts). */
  declare readonly quickRoot: number;
  /** Index in {@link quickWords} of the root table's first word (meaningful when quickLimit > 0). */
  declare readonly quickRootWord: number;
  /** Bit k set: an entry whose bits 2:0 are k is not present through them, or is misconfigured. */
  declare readonly quickBadRwx: number;
  /** `format.requiredBit` for each access 0..7. */
  readonly need = new Int32Array(8);
  /**
   * Low-word bits that send a PML4E, PDPTE or PDE to the full walk: reserved bits at any of those
   * levels, and the page-size bit. One mask for all three keeps the quick walk a short loop; being
   * stricter than a level needs only sends more entries to the full walk, never a wrong answer.
   */
  declare readonly quickTableLo: number;
  /** High-word bits that send a table entry to the full walk: reserved, or an address above 4 GiB. */
  declare readonly quickTableHi: number;
  /** `reservedHi`, `leafLo1` and `addrHi` as int32 (fields V8 keeps as small integers: no check per load). */
  declare readonly quickResHi: number;
  declare readonly quickLeafLo1: number;
  declare readonly quickAddrHi: number;
  /** Nibble a (0..7): the number of the bit `format.requiredBit(a)` (packed so the walk needs no array). */
  declare readonly quickNeed: number;

  /** Words, base address and last page offset of the region holding the root (span -1: no quick walk). */
  declare readonly quickWords: Int32Array;
  declare readonly quickBase: number;
  declare readonly quickSpan: number;

  constructor(format: PagingFormat<unknown>, root: number, mem: TableMemory) {
    this.format = format;
    this.root = root;
    this.five = format.levels === 5;
    this.signExtend = format.signExtend;
    this.top = format.width - 32 - (format.signExtend ? 1 : 0);
    this.present = format.presentMask;
    this.reservedHi = format.reservedHi;
    this.addrHi = format.addrHiMask;
    this.badRwx = format.misconfiguredRwx;
    this.badLeafType = format.misconfiguredLeafType;
    // Bit 7 selects a leaf only at levels 3 and 2; at 5 and 4 an entry is a table whatever it holds.
    this.tableLo5 = format.reservedTableLo[5]!;
    this.tableLo4 = format.reservedTableLo[4]!;
    this.tableLo3 = format.reservedTableLo[3]!;
    this.tableLo2 = format.reservedTableLo[2]!;
    this.leafLo3 = format.reservedLeafLo[3]!;
    this.leafLo2 = format.reservedLeafLo[2]!;
    this.leafLo1 = format.reservedLeafLo[1]!;
    this.leaf3 = format.leafAllowed[3] === true;
    this.leaf2 = format.leafAllowed[2] === true;
    for (let a = 0; a < 8; a++) this.need[a] = format.requiredBit(a);
    // The quick walk knows only permission rules of one required bit.
    const simple = this.need.every((bit) => bit !== 0);
    this.quickRoot = root < 2 ** 32 ? root : -1;
    // Region views never change, so the quick walk keeps its own and never depends on which
    // region TableMemory switched to last.
    const inMemory = mem.page(root) >= 0;
    // Read as int32: every use is a bitwise test or mask, and int32 loads need no range check.
    this.quickWords = new Int32Array(mem.words.buffer, mem.words.byteOffset, mem.words.length);
    this.quickBase = mem.curBase;
    // At most 2 GiB - 4 KiB, so table offsets are int32 arithmetic. A table past that, in a larger
    // region, takes the full walk.
    this.quickSpan = inMemory ? Math.min(mem.quickSpan, 0x7fff_f000) : -1;
    // The root never moves: whether the quick walk can start from it is decided here, once,
    // rather than on every walk (a root it cannot use turns the quick walk off).
    const rootOff = (this.quickRoot - this.quickBase) >>> 0;
    const rootUsable = this.quickRoot >= 0 && rootOff <= this.quickSpan;
    this.quickRootWord = rootUsable ? rootOff >>> 2 : 0;
    this.quickLimit = format.levels === 4 && simple && rootUsable ? 2 ** (format.signExtend ? 47 : 48) : 0;
    let rwx = 0;
    for (let k = 0; k < 8; k++) if ((k & format.presentMask) !== 0 && ((format.misconfiguredRwx >>> k) & 1) === 0) rwx |= 1 << k;
    this.quickBadRwx = ~rwx & 0xff;
    this.quickTableLo = this.tableLo4 | this.tableLo3 | this.tableLo2 | 0x80;
    this.quickTableHi = this.reservedHi | this.addrHi;
    this.quickResHi = this.reservedHi | 0;
    this.quickLeafLo1 = this.leafLo1 | 0;
    this.quickAddrHi = this.addrHi | 0;
    let packed = 0;
    for (let a = 0; a < 8; a++) packed |= (simple ? 31 - Math.clz32(this.need[a]!) : 0) << (4 * a);
    this.quickNeed = packed;
  }
}

/** {@link walkQuick}'s answer when it cannot finish alone (a literal there, to keep it small). Not a fault code. */
export const TAKE_FULL_WALK = -100;

/**
 * The walk for the common case: 4 levels, 4 KiB pages, every table in the guest-memory region
 * holding the root, that region below 4 GiB, and a permission rule of one required bit (EPT).
 * Unrolled, and split in two functions small enough for V8 to inline the whole walk into the
 * caller's loop: the result is never boxed and the CPU overlaps the cache misses of successive
 * walks, which is most of the gap to C. Every check of the full walk is made here too, folded
 * into one test per entry; when any fails, and for anything else (a large page, a table
 * elsewhere, an entry present only through bit 10) it answers {@link TAKE_FULL_WALK} and
 * {@link walkFast} walks again and says precisely what failed.
 */
export function walkQuick(p: FastWalkPlan, address: number, access: number): number {
  if (!(address >= 0 && address < p.quickLimit)) return -100;
  const words = p.quickWords;
  const base = p.quickBase | 0;
  const span = p.quickSpan;
  const badRwx = p.quickBadRwx;
  const badLo = p.quickTableLo;
  // A table address above 4 GiB leaves the quick path, so those bits count as bad here.
  const badHi = p.quickTableHi;
  const vlo = address >>> 0;
  // Most addresses are below 4 GiB: skip the (slow) division for them.
  const vhi = address < TWO32 ? 0 : (address / TWO32) >>> 0;

  let e = p.quickRootWord + ((vhi >>> 7) & 511) * 2;
  let lo = words[e]!;
  if ((((badRwx >>> (lo & 7)) & 1) | (words[e + 1]! & badHi) | (lo & badLo)) !== 0) return -100;
  let andLo = lo;

  // The table's offset in the region, wrapped to int32: exact up to span (< 2^31), and negative
  // or past span for a table anywhere else below 4 GiB.
  let off = ((lo & 0xfffff000) - base) | 0;
  if (off < 0 || off > span) return -100;
  e = (off >>> 2) + (((vlo >>> 30) | (vhi << 2)) & 511) * 2;
  lo = words[e]!;
  if ((((badRwx >>> (lo & 7)) & 1) | (words[e + 1]! & badHi) | (lo & badLo)) !== 0) return -100;
  andLo &= lo;

  off = ((lo & 0xfffff000) - base) | 0;
  if (off < 0 || off > span) return -100;
  e = (off >>> 2) + ((vlo >>> 21) & 511) * 2;
  lo = words[e]!;
  if ((((badRwx >>> (lo & 7)) & 1) | (words[e + 1]! & badHi) | (lo & badLo)) !== 0) return -100;
  return walkQuickPte(p, words, base, span, lo, andLo & lo, vlo, access);
}

/** The last step of {@link walkQuick}: the PTE, from the PDE's low word `pde`. */
function walkQuickPte(p: FastWalkPlan, words: Int32Array, base: number, span: number, pde: number, andLo: number, vlo: number, access: number): number {
  const off = ((pde & 0xfffff000) - base) | 0;
  if (off < 0 || off > span) return -100;
  const e = (off >>> 2) + ((vlo >>> 12) & 511) * 2;
  const lo = words[e]!;
  const hi = words[e + 1]!;
  const bad = ((p.quickBadRwx >>> (lo & 7)) & 1) | ((p.badLeafType >>> ((lo >>> 3) & 7)) & 1) | (hi & p.quickResHi) | (lo & p.quickLeafLo1);
  if (bad !== 0 || (andLo & lo & (1 << ((p.quickNeed >>> ((access & 7) * 4)) & 15))) === 0) return -100;
  return (hi & p.quickAddrHi) * TWO32 + (((lo & 0xfffff000) | (vlo & 0xfff)) >>> 0);
}

/**
 * The walk of `PageTables.translate`, unrolled by level and without its per-step record: the
 * physical address, or a negative fault code. Same checks in the same order (per level: table
 * page in guest memory, present, reserved bits and misconfiguration, then at the leaf the
 * format's permission rule over the AND of the low words and OR of the high words).
 */
export function walkFast(p: FastWalkPlan, mem: TableMemory, vlo: number, vhi: number, access: number): number {
  if (p.signExtend) {
    const t = vhi >> p.top;
    if (t !== 0 && t !== -1) return ADDRESS_OUT_OF_RANGE;
  } else if (vhi >>> p.top !== 0) {
    return ADDRESS_OUT_OF_RANGE;
  }
  const present = p.present;
  const resHi = p.reservedHi;
  const addrHi = p.addrHi;
  const badRwx = p.badRwx;
  // The region TableMemory viewed last; a table outside it takes TableMemory.page's slow path.
  let words = mem.words;
  let base = mem.curBase;
  let last = mem.curSmall ? mem.curEnd - 4096 : -1;
  let table = p.root;
  let andLo = -1;
  let orHi = 0;
  let w: number;
  let lo: number;
  let hi: number;

  if (p.five) {
    if (table >= base && table <= last) {
      w = (table - base) >>> 2;
    } else {
      w = mem.page(table);
      if (w < 0) return TABLE_OUTSIDE_MEMORY;
      words = mem.words;
      base = mem.curBase;
      last = mem.curSmall ? mem.curEnd - 4096 : -1;
    }
    w += ((vhi >>> 16) & 511) << 1;
    lo = words[w]!;
    hi = words[w + 1]!;
    if ((lo & present) === 0) return NOT_PRESENT;
    if ((hi & resHi) !== 0 || (lo & p.tableLo5) !== 0 || ((badRwx >>> (lo & 7)) & 1) !== 0) return RESERVED;
    andLo &= lo;
    orHi |= hi;
    table = (hi & addrHi) * TWO32 + ((lo & 0xfffff000) >>> 0);
  }

  // Level 4: never a leaf.
  if (table >= base && table <= last) {
    w = (table - base) >>> 2;
  } else {
    w = mem.page(table);
    if (w < 0) return TABLE_OUTSIDE_MEMORY;
    words = mem.words;
    base = mem.curBase;
    last = mem.curSmall ? mem.curEnd - 4096 : -1;
  }
  w += ((vhi >>> 7) & 511) << 1;
  lo = words[w]!;
  hi = words[w + 1]!;
  if ((lo & present) === 0) return NOT_PRESENT;
  if ((hi & resHi) !== 0 || (lo & p.tableLo4) !== 0 || ((badRwx >>> (lo & 7)) & 1) !== 0) return RESERVED;
  andLo &= lo;
  orHi |= hi;
  table = (hi & addrHi) * TWO32 + ((lo & 0xfffff000) >>> 0);

  // Level 3: a table or a 1 GiB leaf.
  if (table >= base && table <= last) {
    w = (table - base) >>> 2;
  } else {
    w = mem.page(table);
    if (w < 0) return TABLE_OUTSIDE_MEMORY;
    words = mem.words;
    base = mem.curBase;
    last = mem.curSmall ? mem.curEnd - 4096 : -1;
  }
  w += (((vlo >>> 30) | (vhi << 2)) & 511) << 1;
  lo = words[w]!;
  hi = words[w + 1]!;
  if ((lo & present) === 0) return NOT_PRESENT;
  if ((hi & resHi) !== 0 || ((badRwx >>> (lo & 7)) & 1) !== 0) return RESERVED;
  andLo &= lo;
  orHi |= hi;
  if ((lo & 0x80) !== 0) {
    if (!p.leaf3 || (lo & p.leafLo3) !== 0 || ((p.badLeafType >>> ((lo >>> 3) & 7)) & 1) !== 0) return RESERVED;
    if (p.format.permissionDenied(andLo, orHi, lo, hi, access) !== 0) return PERMISSION;
    return (hi & addrHi) * TWO32 + (((lo & 0xc0000000) | (vlo & 0x3fffffff)) >>> 0);
  }
  if ((lo & p.tableLo3) !== 0) return RESERVED;
  table = (hi & addrHi) * TWO32 + ((lo & 0xfffff000) >>> 0);

  // Level 2: a table or a 2 MiB leaf.
  if (table >= base && table <= last) {
    w = (table - base) >>> 2;
  } else {
    w = mem.page(table);
    if (w < 0) return TABLE_OUTSIDE_MEMORY;
    words = mem.words;
    base = mem.curBase;
    last = mem.curSmall ? mem.curEnd - 4096 : -1;
  }
  w += ((vlo >>> 21) & 511) << 1;
  lo = words[w]!;
  hi = words[w + 1]!;
  if ((lo & present) === 0) return NOT_PRESENT;
  if ((hi & resHi) !== 0 || ((badRwx >>> (lo & 7)) & 1) !== 0) return RESERVED;
  andLo &= lo;
  orHi |= hi;
  if ((lo & 0x80) !== 0) {
    if (!p.leaf2 || (lo & p.leafLo2) !== 0 || ((p.badLeafType >>> ((lo >>> 3) & 7)) & 1) !== 0) return RESERVED;
    if (p.format.permissionDenied(andLo, orHi, lo, hi, access) !== 0) return PERMISSION;
    return (hi & addrHi) * TWO32 + (((lo & 0xffe00000) | (vlo & 0x1fffff)) >>> 0);
  }
  if ((lo & p.tableLo2) !== 0) return RESERVED;
  table = (hi & addrHi) * TWO32 + ((lo & 0xfffff000) >>> 0);

  // Level 1: always a leaf (bit 7 is PAT or ignored).
  if (table >= base && table <= last) {
    w = (table - base) >>> 2;
  } else {
    w = mem.page(table);
    if (w < 0) return TABLE_OUTSIDE_MEMORY;
    words = mem.words;
  }
  w += ((vlo >>> 12) & 511) << 1;
  lo = words[w]!;
  hi = words[w + 1]!;
  if ((lo & present) === 0) return NOT_PRESENT;
  if ((hi & resHi) !== 0 || (lo & p.leafLo1) !== 0 || ((badRwx >>> (lo & 7)) & 1) !== 0 || ((p.badLeafType >>> ((lo >>> 3) & 7)) & 1) !== 0) {
    return RESERVED;
  }
  andLo &= lo;
  orHi |= hi;
  if (p.format.permissionDenied(andLo, orHi, lo, hi, access) !== 0) return PERMISSION;
  return (hi & addrHi) * TWO32 + (((lo & 0xfffff000) | (vlo & 0xfff)) >>> 0);
}
