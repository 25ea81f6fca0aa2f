import type { AccessKind, PageFault } from "../emulator/cpu.js";

/** Which paging the guest runs (SDM vol. 3A 4.1.1): CR4.PAE = 0, PAE, or IA-32e with 4 or 5 levels. */
export type PagingMode = "32-bit" | "pae" | "4-level" | "5-level";

/** The control state a walk depends on, as the guest's CR0/CR3/CR4/EFER/RFLAGS and CPUID say. */
export interface PagingControl {
  readonly mode: PagingMode;
  /** CR3 as the guest wrote it (the flag bits are ignored). */
  readonly cr3: bigint;
  /** CR4.PSE: 4 MiB pages under 32-bit paging (PAE and IA-32e always have large pages). */
  readonly pse: boolean;
  /** CR0.WP: supervisor writes respect read-only pages. */
  readonly wp: boolean;
  /** EFER.NXE: bit 63 is XD (ignored under 32-bit paging, which has no XD). */
  readonly nxe: boolean;
  readonly smep: boolean;
  readonly smap: boolean;
  /** RFLAGS.AC: supervisor data accesses may reach user pages under SMAP. */
  readonly ac: boolean;
  /** MAXPHYADDR (CPUID 0x80000008 EAX[7:0]): entry address bits at and above it are reserved; it also bounds PSE-36. */
  readonly maxPhyAddr: number;
  /** 1 GiB pages (CPUID 0x80000001 EDX.Page1GB), IA-32e only. */
  readonly pages1G?: boolean;
  /**
   * PAE: the four PDPTE registers the processor loaded at the last MOV to CR3/CR0/CR4
   * (KVM_GET_SREGS2 holds them). Absent: read from the 32 bytes at CR3, which agrees unless the
   * guest changed its PDPT without reloading CR3.
   */
  readonly pdptes?: readonly bigint[];
}

/** Where the walk reads paging-structure entries and sets their Accessed/Dirty bits. */
export interface PagingMemory {
  /** The 4- or 8-byte entry at a guest-physical address. */
  readEntry(gpa: bigint, size: 4 | 8): bigint;
  /** OR `bits` into the entry (the processor does it with a locked operation). */
  setEntryBits(gpa: bigint, size: 4 | 8, bits: bigint): void;
}

/** One paging-structure entry the walk read, from the top level down. */
export interface WalkEntry {
  /** 1 = the page table, 2 = the page directory, 3 = PDPT, 4 = PML4, 5 = PML5. */
  readonly level: number;
  readonly address: bigint;
  readonly size: 4 | 8;
  readonly value: bigint;
}

export type WalkResult =
  | { readonly ok: true; readonly physical: bigint; readonly pageSize: number; readonly entries: readonly WalkEntry[] }
  | { readonly ok: false; readonly fault: PageFault; readonly entries: readonly WalkEntry[] };

/** #PF error code bits (SDM vol. 3A 4.7). */
export const PF_ERROR = { P: 1, W: 2, U: 4, RSVD: 8, ID: 16 } as const;
const { P: PF_P, W: PF_W, U: PF_U, RSVD: PF_RSVD, ID: PF_ID } = PF_ERROR;

const P = 1n;
const RW = 2n;
const US = 4n;
const PS = 0x80n;
const A = 0x20n;
const D = 0x40n;
const XD = 1n << 63n;
const M32 = 0xffffffffn;

const ones = (from: number, to: number): bigint => (to < from ? 0n : ((1n << BigInt(to - from + 1)) - 1n) << BigInt(from));

/**
 * Translate `linear` for an access of `kind` at `cpl` the way the processor walks the guest's
 * tables (SDM vol. 3A ch. 4): 32-bit paging (4 KiB pages, 4 MiB with CR4.PSE, PSE-36 up to
 * MAXPHYADDR 40), PAE (PDPTEs, 2 MiB pages, XD with EFER.NXE) and 4/5-level paging (2 MiB and,
 * when supported, 1 GiB pages). Reserved bits give RSVD faults; rights are U/S and R/W of every
 * level (not PAE's PDPTEs), CR0.WP, XD, SMEP and SMAP (RFLAGS.AC). On success Accessed is set in
 * every entry used (PAE PDPTEs have none) and Dirty in the leaf for a write, as the processor does;
 * a fault sets nothing. CPL 3 is a user access; everything else supervisor. Protection keys are
 * not applied.
 */
export function walkPaging(ctl: PagingControl, linear: bigint, kind: AccessKind, cpl: number, mem: PagingMemory): WalkResult {
  const user = cpl === 3;
  const write = kind === "write";
  const fetch = kind === "fetch";
  const legacy32 = ctl.mode === "32-bit";
  const nxe = ctl.nxe && !legacy32;
  const m = ctl.maxPhyAddr;
  const lin = ctl.mode === "32-bit" || ctl.mode === "pae" ? linear & M32 : BigInt.asUintN(64, linear);
  const code = (write ? PF_W : 0) | (user ? PF_U : 0) | (fetch && (ctl.smep || nxe) ? PF_ID : 0);
  const entries: WalkEntry[] = [];
  const fail = (extra: number): WalkResult => ({ ok: false, fault: { kind: "page-fault", errorCode: code | extra, cr2: linear }, entries });

  // Levels from the top: [level, index shift, index bits, may be a leaf, holds rights].
  let table: bigint;
  let size: 4 | 8 = 8;
  let levels: number[];
  if (legacy32) {
    size = 4;
    table = ctl.cr3 & 0xfffff000n;
    levels = [2, 1];
  } else if (ctl.mode === "pae") {
    const idx = Number((lin >> 30n) & 3n);
    const address = (ctl.cr3 & 0xffffffe0n) + BigInt(idx * 8);
    const pdpte = ctl.pdptes?.[idx] ?? mem.readEntry(address, 8);
    entries.push({ level: 3, address, size: 8, value: pdpte });
    if ((pdpte & P) === 0n) return fail(0);
    // PAE PDPTEs: bits 2:1 and 8:5 and MAXPHYADDR..63 are reserved.
    if ((pdpte & (0x6n | 0x1e0n | ones(m, 63))) !== 0n) return fail(PF_P | PF_RSVD);
    table = pdpte & ones(12, m - 1);
    levels = [2, 1];
  } else {
    table = ctl.cr3 & ones(12, m - 1);
    levels = ctl.mode === "5-level" ? [5, 4, 3, 2, 1] : [4, 3, 2, 1];
  }

  let andRw = true;
  let andUs = true;
  let xd = false;
  const used: WalkEntry[] = [];
  for (const level of levels) {
    const shift = legacy32 ? (level === 2 ? 22 : 12) : 12 + 9 * (level - 1);
    const mask = legacy32 ? 0x3ffn : 0x1ffn;
    const address = table + ((lin >> BigInt(shift)) & mask) * BigInt(size);
    const e = mem.readEntry(address, size);
    const entry: WalkEntry = { level, address, size, value: e };
    entries.push(entry);
    used.push(entry);
    if ((e & P) === 0n) return fail(0);
    const leaf = level === 1 || ((e & PS) !== 0n && (legacy32 ? ctl.pse : level <= 3));
    if (reserved(ctl, level, e, leaf, nxe)) return fail(PF_P | PF_RSVD);
    andRw &&= (e & RW) !== 0n;
    andUs &&= (e & US) !== 0n;
    xd ||= nxe && (e & XD) !== 0n;
    if (!leaf) {
      table = legacy32 ? e & 0xfffff000n : e & ones(12, m - 1);
      continue;
    }
    if (!allowed(ctl, kind, user, andRw, andUs, xd)) return fail(PF_P);
    let physical: bigint;
    let pageSize: number;
    if (legacy32 && level === 2) {
      // PSE-36: PDE bits (M-20):13 are physical address bits (M-1):32, M = min(MAXPHYADDR, 40).
      const high = (e >> 13n) & ones(0, Math.min(m, 40) - 33);
      pageSize = 0x400000;
      physical = (e & 0xffc00000n) | (high << 32n) | (lin & 0x3fffffn);
    } else {
      pageSize = 2 ** shift;
      const off = BigInt(pageSize - 1);
      physical = (e & ones(12, m - 1) & ~off) | (lin & off);
    }
    for (const u of used) {
      const bits = (u.value & A ? 0n : A) | (u === entry && write && (u.value & D) === 0n ? D : 0n);
      if (bits !== 0n) mem.setEntryBits(u.address, u.size, bits);
    }
    return { ok: true, physical, pageSize, entries };
  }
  return fail(0); // unreachable: level 1 is always a leaf
}

/** Reserved bits of a present entry (SDM vol. 3A tables 4-4 to 4-20). */
function reserved(ctl: PagingControl, level: number, e: bigint, leaf: boolean, nxe: boolean): boolean {
  const m = ctl.maxPhyAddr;
  if (ctl.mode === "32-bit") {
    // Only a 4 MiB PDE has reserved bits: 21:(M-19), M = min(MAXPHYADDR, 40).
    return leaf && level === 2 && (e & ones(Math.min(m, 40) - 19, 21)) !== 0n;
  }
  let r = ctl.mode === "pae" ? ones(m, 62) : ones(m, 51);
  if (!nxe) r |= XD;
  if (leaf && level === 2) r |= ones(13, 20);
  if (leaf && level === 3) r |= ones(13, 29);
  if (e & r) return true;
  // PS is reserved in PML4Es/PML5Es, and in PDPTEs without 1 GiB pages.
  return (e & PS) !== 0n && (level >= 4 || (level === 3 && ctl.pages1G !== true));
}

/** The access rights rule of SDM vol. 3A 4.6.1 for the combined U/S, R/W and XD of the walk. */
function allowed(ctl: PagingControl, kind: AccessKind, user: boolean, rw: boolean, us: boolean, xd: boolean): boolean {
  if (kind === "fetch") {
    if (xd) return false;
    return user ? us : !(us && ctl.smep);
  }
  if (user) return us && (kind === "read" || rw);
  if (us && ctl.smap && !ctl.ac) return false;
  return kind === "read" || rw || !ctl.wp;
}
