import { checkMaxPhyAddr, type Level, reservedHighMask } from "./bits.js";
import {
  EPT_ACCESSED,
  EPT_DIRTY,
  EPT_EXECUTE,
  EPT_HI_PAGING_WRITE,
  EPT_HI_SUB_PAGE_WRITE,
  EPT_HI_SUPERVISOR_SHADOW_STACK,
  EPT_HI_SUPPRESS_VE,
  EPT_HI_VERIFY_GUEST_PAGING,
  EPT_IGNORE_PAT,
  EPT_PAGE_SIZE,
  EPT_READ,
  EPT_USER_EXECUTE,
  EPT_WRITE,
} from "./ept/bits.js";
import { type EptMemoryType, isEptMemoryType } from "./ept/entries.js";
import { EptError } from "./errors.js";
import {
  PG_ACCESSED,
  PG_DIRTY,
  PG_GLOBAL,
  PG_HI_PKEY_SHIFT,
  PG_HI_XD,
  PG_PAGE_SIZE,
  PG_PAT_4K,
  PG_PAT_LARGE,
  PG_PCD,
  PG_PRESENT,
  PG_PWT,
  PG_USER,
  PG_WRITE,
} from "./paging/bits.js";

/** Access-type flags for translation: none set means a supervisor data read. */
export const Access = { WRITE: 1, EXECUTE: 2, USER: 4 } as const;

/**
 * What the shared table code needs to know about one paging format. Everything the walker tests
 * per level is a plain 32-bit mask over an entry's low or high word, indexed by level, so one walk
 * loop serves EPT and IA-32e alike; only the leaf encoding and the final permission rule differ.
 */
export abstract class PagingFormat<A> {
  abstract readonly kind: "ept" | "ia32e";
  readonly levels: 4 | 5;
  readonly maxPhyAddr: number;
  /** Bits of the input address the walk translates (48 or 57). */
  readonly width: number;
  /** IA-32e addresses are sign-extended from bit width-1; EPT addresses must be below 2^width. */
  abstract readonly signExtend: boolean;
  /** An entry is present when (low word & presentMask) != 0. */
  abstract readonly presentMask: number;
  /** Low/high bits of an entry referencing a table (besides the address). */
  abstract readonly tableLo: number;
  abstract readonly tableHi: number;
  /** Whether a leaf may sit at each level (index = level; 1 is always true). */
  readonly leafAllowed: readonly boolean[];
  /** Reserved-bit masks by level: non-leaf low word, leaf low word, and the high word. */
  abstract readonly reservedTableLo: readonly number[];
  abstract readonly reservedLeafLo: readonly number[];
  abstract readonly reservedHi: number;
  /**
   * Misconfigurations beyond reserved bits, as bit sets so a walk tests them with one shift:
   * bit k of `misconfiguredRwx` set means a present entry whose bits 2:0 equal k is misconfigured;
   * bit k of `misconfiguredLeafType` set means a leaf whose bits 5:3 equal k is.
   */
  readonly misconfiguredRwx: number = 0;
  readonly misconfiguredLeafType: number = 0;
  /** Address bits in an entry's high word (bits MAXPHYADDR-1:32). */
  readonly addrHiMask: number;

  constructor(levels: 4 | 5 | undefined, maxPhyAddr: number | undefined, pages2M: boolean, pages1G: boolean) {
    const l = levels ?? 4;
    if (l !== 4 && l !== 5) throw new EptError("EPT_INVALID_ARGUMENT", `paging levels must be 4 or 5, got ${String(l)}`);
    const m = maxPhyAddr ?? 52;
    checkMaxPhyAddr(m);
    this.levels = l;
    this.maxPhyAddr = m;
    this.width = 12 + 9 * l;
    this.leafAllowed = [false, true, pages2M, pages1G, false, false];
    this.addrHiMask = (1 << (m - 32)) - 1;
  }

  /** Leaf low/high bits for `attrs` at `level` (no address). Throws on attributes that cannot be encoded. */
  abstract leafBits(level: 1 | 2 | 3, attrs: A): [number, number];
  /** The attributes of a leaf, every field filled in. */
  abstract leafAttributes(level: 1 | 2 | 3, lo: number, hi: number): A;
  /** Format-specific misconfiguration beyond reserved bits (EPT: write-only, bad memory type). */
  misconfigured(leaf: boolean, lo: number): boolean {
    return ((this.misconfiguredRwx >>> (lo & 7)) & 1) !== 0 || (leaf && ((this.misconfiguredLeafType >>> ((lo >>> 3) & 7)) & 1) !== 0);
  }
  /**
   * Whether an access is refused given the AND of all low words and OR of all high words:
   * 0 when allowed, otherwise a format-specific reason number for {@link permissionProblem}.
   * Numbers only, so the hot-path walk neither allocates nor builds strings. The default serves
   * formats that only describe their rule as text.
   */
  permissionDenied(andLo: number, orHi: number, leafLo: number, leafHi: number, access: number): number {
    return this.permissionProblem(andLo, orHi, leafLo, leafHi, access) === null ? 0 : 1;
  }
  /**
   * For formats whose rule is "one bit must be set in every entry of the walk": that bit for
   * `access` (a sum of {@link Access} flags), so the hot path tests `andLo & bit`; 0 when the
   * rule has another shape and only {@link permissionDenied} can decide.
   */
  requiredBit(_access: number): number {
    return 0;
  }
  /** Why an access is refused, as text; null when allowed. */
  abstract permissionProblem(andLo: number, orHi: number, leafLo: number, leafHi: number, access: number): string | null;
}

/** Options describing the processor's EPT support. */
export interface EptFormatOptions {
  /** Page-walk length, 4 (default) or 5. */
  levels?: 4 | 5;
  /** Physical-address width; default 52. */
  maxPhyAddr?: number;
  /** Mode-based execute control: bit 10 is user-mode execute. */
  mbec?: boolean;
  /** IA32_VMX_EPT_VPID_CAP bit 0: execute-only pages allowed. */
  executeOnly?: boolean;
  /** 2 MiB / 1 GiB leaves allowed (caps bits 16/17); default true. */
  pages2M?: boolean;
  pages1G?: boolean;
}

/** Attributes of an EPT leaf. Optional flags default to false, memory type to WB. */
export interface EptPageAttributes {
  read: boolean;
  write: boolean;
  execute: boolean;
  userExecute?: boolean;
  memoryType?: EptMemoryType;
  ignorePat?: boolean;
  suppressVe?: boolean;
  supervisorShadowStack?: boolean;
  verifyGuestPaging?: boolean;
  pagingWrite?: boolean;
  subPageWrite?: boolean;
  accessed?: boolean;
  dirty?: boolean;
}

const EPT_LEAF_RESERVED_LO = [0, 0, 0x1ff000, 0x3ffff000, 0, 0];
const EPT_DENIALS: readonly (string | null)[] = [null, "read not allowed", "write not allowed", "execute not allowed", "user-mode execute not allowed"];

export class EptFormat extends PagingFormat<EptPageAttributes> {
  readonly kind = "ept" as const;
  readonly signExtend = false;
  readonly presentMask: number;
  readonly tableLo: number;
  readonly tableHi = 0;
  readonly reservedTableLo = [0, 0, 0x78, 0x78, 0xf8, 0xf8];
  readonly reservedLeafLo = EPT_LEAF_RESERVED_LO;
  readonly reservedHi: number;
  readonly mbec: boolean;
  readonly executeOnly: boolean;
  override readonly misconfiguredRwx: number;
  override readonly misconfiguredLeafType = 0b1000_1100;

  constructor(options: EptFormatOptions = {}) {
    super(options.levels, options.maxPhyAddr, options.pages2M ?? true, options.pages1G ?? true);
    this.mbec = options.mbec ?? false;
    this.executeOnly = options.executeOnly ?? false;
    this.presentMask = this.mbec ? 0x407 : 7;
    // Tables grant everything: the leaf alone decides, which keeps permission changes local.
    this.tableLo = EPT_READ | EPT_WRITE | EPT_EXECUTE | (this.mbec ? EPT_USER_EXECUTE : 0);
    this.reservedHi = reservedHighMask(this.maxPhyAddr);
    // Bits 2:0 = 010 or 110 (write without read); without the capability, any value with bit 0
    // clear (execute-only). Memory types 2, 3 and 7 are reserved.
    this.misconfiguredRwx = this.executeOnly ? 0b0100_0100 : 0b0101_0101;
  }

  leafBits(level: 1 | 2 | 3, a: EptPageAttributes): [number, number] {
    let lo = 0;
    if (a.read) lo |= EPT_READ;
    if (a.write) lo |= EPT_WRITE;
    if (a.execute) lo |= EPT_EXECUTE;
    if (a.userExecute) {
      if (!this.mbec) throw new EptError("EPT_INVALID_ENTRY", "userExecute needs mode-based execute control (mbec)");
      lo |= EPT_USER_EXECUTE;
    }
    if ((lo & this.presentMask) === 0) throw new EptError("EPT_INVALID_ENTRY", "an EPT mapping needs at least one of read/write/execute");
    if ((lo & 3) === 2) throw new EptError("EPT_INVALID_ENTRY", "an EPT page cannot be writable without being readable");
    if ((lo & 1) === 0 && !this.executeOnly) throw new EptError("EPT_INVALID_ENTRY", "execute-only EPT pages need the execute-only capability");
    const mt = a.memoryType ?? 6;
    if (!isEptMemoryType(mt)) throw new EptError("EPT_INVALID_ENTRY", `EPT memory type ${String(mt)} is reserved`);
    lo |= mt << 3;
    if (a.ignorePat) lo |= EPT_IGNORE_PAT;
    if (level > 1) lo |= EPT_PAGE_SIZE;
    if (a.accessed) lo |= EPT_ACCESSED;
    if (a.dirty) lo |= EPT_DIRTY;
    let hi = 0;
    if (a.verifyGuestPaging) hi |= EPT_HI_VERIFY_GUEST_PAGING;
    if (a.pagingWrite) hi |= EPT_HI_PAGING_WRITE;
    if (a.supervisorShadowStack) hi |= EPT_HI_SUPERVISOR_SHADOW_STACK;
    if (a.subPageWrite) hi |= EPT_HI_SUB_PAGE_WRITE;
    if (a.suppressVe) hi |= EPT_HI_SUPPRESS_VE;
    return [lo, hi >>> 0];
  }

  leafAttributes(_level: 1 | 2 | 3, lo: number, hi: number): Required<EptPageAttributes> {
    return {
      read: (lo & EPT_READ) !== 0,
      write: (lo & EPT_WRITE) !== 0,
      execute: (lo & EPT_EXECUTE) !== 0,
      userExecute: (lo & EPT_USER_EXECUTE) !== 0,
      memoryType: ((lo >>> 3) & 7) as EptMemoryType,
      ignorePat: (lo & EPT_IGNORE_PAT) !== 0,
      suppressVe: (hi & EPT_HI_SUPPRESS_VE) !== 0,
      supervisorShadowStack: (hi & EPT_HI_SUPERVISOR_SHADOW_STACK) !== 0,
      verifyGuestPaging: (hi & EPT_HI_VERIFY_GUEST_PAGING) !== 0,
      pagingWrite: (hi & EPT_HI_PAGING_WRITE) !== 0,
      subPageWrite: (hi & EPT_HI_SUB_PAGE_WRITE) !== 0,
      accessed: (lo & EPT_ACCESSED) !== 0,
      dirty: (lo & EPT_DIRTY) !== 0,
    };
  }

  override requiredBit(access: number): number {
    if ((access & Access.EXECUTE) !== 0) return this.mbec && (access & Access.USER) !== 0 ? EPT_USER_EXECUTE : EPT_EXECUTE;
    return (access & Access.WRITE) !== 0 ? EPT_WRITE : EPT_READ;
  }

  // Reason numbers index EPT_DENIALS (1 = read … 4 = user execute).
  override permissionDenied(andLo: number, _orHi: number, _leafLo: number, _leafHi: number, access: number): number {
    const bit = this.requiredBit(access);
    if ((andLo & bit) !== 0) return 0;
    return bit === EPT_READ ? 1 : bit === EPT_WRITE ? 2 : bit === EPT_EXECUTE ? 3 : 4;
  }

  permissionProblem(andLo: number, orHi: number, leafLo: number, leafHi: number, access: number): string | null {
    return EPT_DENIALS[this.permissionDenied(andLo, orHi, leafLo, leafHi, access)] ?? null;
  }
}

/** The guest's paging controls that decide IA-32e translations. */
export interface PagingFormatOptions {
  /** 4 (default) or 5 (CR4.LA57). */
  levels?: 4 | 5;
  maxPhyAddr?: number;
  /** IA32_EFER.NXE; default true. Without it XD is a reserved bit. */
  nxe?: boolean;
  /** CPUID Page1GB; default true. */
  pages1G?: boolean;
  /** CR0.WP; default true. */
  wp?: boolean;
  /** CR4.SMEP / CR4.SMAP; default false. SMAP is applied as if EFLAGS.AC = 0. */
  smep?: boolean;
  smap?: boolean;
  /** PKRU when CR4.PKE = 1 (user pages); undefined when protection keys are off. */
  pkru?: number;
  /** IA32_PKRS when CR4.PKS = 1 (supervisor pages). */
  pkrs?: number;
}

/** Attributes of an IA-32e leaf. `execute` defaults to true (XD clear); other flags to false. */
export interface PagingPageAttributes {
  write: boolean;
  user: boolean;
  execute?: boolean;
  global?: boolean;
  pwt?: boolean;
  pcd?: boolean;
  pat?: boolean;
  protectionKey?: number;
  accessed?: boolean;
  dirty?: boolean;
}

const IA32E_DENIALS: readonly string[] = [
  "",
  "user-mode access to a supervisor page",
  "instruction fetch from an execute-disable page",
  "supervisor instruction fetch from a user page (SMEP)",
  "supervisor data access to a user page (SMAP)",
  "write to a read-only page",
];

export class Ia32eFormat extends PagingFormat<PagingPageAttributes> {
  readonly kind = "ia32e" as const;
  override readonly misconfiguredRwx = 0;
  override readonly misconfiguredLeafType = 0;
  readonly signExtend = true;
  readonly presentMask = PG_PRESENT;
  readonly tableLo = PG_PRESENT | PG_WRITE | PG_USER;
  readonly tableHi = 0;
  readonly reservedTableLo = [0, 0, 0, 0, PG_PAGE_SIZE, PG_PAGE_SIZE];
  readonly reservedLeafLo = [0, 0, 0x1fe000, 0x3fffe000, 0, 0];
  readonly reservedHi: number;
  readonly nxe: boolean;
  readonly wp: boolean;
  readonly smep: boolean;
  readonly smap: boolean;
  readonly pkru: number | undefined;
  readonly pkrs: number | undefined;

  constructor(options: PagingFormatOptions = {}) {
    super(options.levels, options.maxPhyAddr, true, options.pages1G ?? true);
    this.nxe = options.nxe ?? true;
    this.wp = options.wp ?? true;
    this.smep = options.smep ?? false;
    this.smap = options.smap ?? false;
    for (const [name, v] of [["pkru", options.pkru], ["pkrs", options.pkrs]] as const) {
      if (v !== undefined && (!Number.isInteger(v) || v < 0 || v > 0xffffffff)) {
        throw new EptError("EPT_INVALID_ARGUMENT", `${name} must be a 32-bit unsigned integer`);
      }
    }
    this.pkru = options.pkru;
    this.pkrs = options.pkrs;
    this.reservedHi = (reservedHighMask(this.maxPhyAddr) | (this.nxe ? 0 : PG_HI_XD)) >>> 0;
  }

  leafBits(level: 1 | 2 | 3, a: PagingPageAttributes): [number, number] {
    let lo = PG_PRESENT;
    if (a.write) lo |= PG_WRITE;
    if (a.user) lo |= PG_USER;
    if (a.pwt) lo |= PG_PWT;
    if (a.pcd) lo |= PG_PCD;
    if (a.accessed) lo |= PG_ACCESSED;
    if (a.dirty) lo |= PG_DIRTY;
    if (a.global) lo |= PG_GLOBAL;
    if (level > 1) lo |= PG_PAGE_SIZE;
    if (a.pat) lo |= level === 1 ? PG_PAT_4K : PG_PAT_LARGE;
    const pk = a.protectionKey ?? 0;
    if (!Number.isInteger(pk) || pk < 0 || pk > 15) throw new EptError("EPT_INVALID_ARGUMENT", `protection key must be 0..15, got ${String(pk)}`);
    let hi = pk << PG_HI_PKEY_SHIFT;
    if (a.execute === false) {
      if (!this.nxe) throw new EptError("EPT_INVALID_ENTRY", "execute-disable needs IA32_EFER.NXE (nxe option)");
      hi |= PG_HI_XD;
    }
    return [lo, hi >>> 0];
  }

  leafAttributes(level: 1 | 2 | 3, lo: number, hi: number): Required<PagingPageAttributes> {
    return {
      write: (lo & PG_WRITE) !== 0,
      user: (lo & PG_USER) !== 0,
      execute: !this.nxe || (hi & PG_HI_XD) === 0,
      global: (lo & PG_GLOBAL) !== 0,
      pwt: (lo & PG_PWT) !== 0,
      pcd: (lo & PG_PCD) !== 0,
      pat: (lo & (level === 1 ? PG_PAT_4K : PG_PAT_LARGE)) !== 0,
      protectionKey: (hi >>> PG_HI_PKEY_SHIFT) & 0xf,
      accessed: (lo & PG_ACCESSED) !== 0,
      dirty: (lo & PG_DIRTY) !== 0,
    };
  }

  // SDM Vol. 3A §4.6 (access rights) and §4.6.2 (protection keys).
  override permissionDenied(andLo: number, orHi: number, _leafLo: number, leafHi: number, access: number): number {
    const user = (access & Access.USER) !== 0;
    const userPage = (andLo & PG_USER) !== 0;
    if (user && !userPage) return 1;
    if ((access & Access.EXECUTE) !== 0) {
      if (this.nxe && (orHi & PG_HI_XD) !== 0) return 2;
      if (!user && this.smep && userPage) return 3;
      return 0;
    }
    if (!user && this.smap && userPage) return 4;
    const write = (access & Access.WRITE) !== 0;
    if (write && (user || this.wp) && (andLo & PG_WRITE) === 0) return 5;
    const rights = userPage ? this.pkru : this.pkrs;
    if (rights !== undefined) {
      const pk = (leafHi >>> PG_HI_PKEY_SHIFT) & 0xf;
      if (((rights >>> (2 * pk)) & 1) !== 0) return 6;
      if (write && ((rights >>> (2 * pk + 1)) & 1) !== 0 && (user || this.wp)) return 7;
    }
    return 0;
  }

  permissionProblem(andLo: number, orHi: number, leafLo: number, leafHi: number, access: number): string | null {
    const why = this.permissionDenied(andLo, orHi, leafLo, leafHi, access);
    if (why === 0) return null;
    const pk = (leafHi >>> PG_HI_PKEY_SHIFT) & 0xf;
    return why === 6 ? `protection key ${pk} disables access` : why === 7 ? `protection key ${pk} disables writes` : IA32E_DENIALS[why]!;
  }
}

export type { Level };
