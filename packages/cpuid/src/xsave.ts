import { CpuidError } from "./errors.js";
import { type CpuidTable, KVM_CPUID_FLAG_SIGNIFCANT_INDEX } from "./table.js";

/** One XSAVE state component (SDM Vol. 1, 13.2 and 13.4). */
export interface XsaveComponent {
  index: number;
  name: string;
  /** Size in bytes (CPUID.(0DH, i):EAX). */
  size: number;
  /**
   * Offset in the standard (non-compacted) format as Intel's processors place it; undefined for
   * supervisor components. Processors may place components elsewhere (AMD's without MPX put
   * opmask right after AVX): CPUID.(0DH, i):EBX is the truth, read it with `xsaveOffsets`.
   */
  offset: number | undefined;
  /** Managed through IA32_XSS rather than XCR0 (CPUID.(0DH, i):ECX[0]). */
  supervisor: boolean;
  /** 64-byte aligned in the compacted format (CPUID.(0DH, i):ECX[1]). */
  align64: boolean;
  /** Supports extended feature disable (CPUID.(0DH, i):ECX[2]). */
  xfd: boolean;
}

const c = (
  index: number,
  name: string,
  size: number,
  offset: number | undefined,
  extra: Partial<Pick<XsaveComponent, "align64" | "xfd">> = {},
): XsaveComponent => ({
  index,
  name,
  size,
  offset,
  supervisor: offset === undefined,
  align64: extra.align64 ?? false,
  xfd: extra.xfd ?? false,
});

/**
 * The architectural components. Components 0 and 1 live in the 512-byte legacy region, which with
 * the 64-byte XSAVE header makes the 576 bytes every XSAVE area starts with.
 */
export const XSAVE_COMPONENTS: readonly XsaveComponent[] = Object.freeze([
  c(0, "x87", 160, 0),
  c(1, "sse", 256, 160),
  c(2, "avx", 256, 576),
  c(3, "bndregs", 64, 960),
  c(4, "bndcsr", 64, 1024),
  c(5, "opmask", 64, 1088),
  c(6, "zmm_hi256", 512, 1152),
  c(7, "hi16_zmm", 1024, 1664),
  c(8, "pt", 128, undefined),
  c(9, "pkru", 8, 2688),
  c(10, "pasid", 8, undefined),
  c(11, "cet_u", 16, undefined),
  c(12, "cet_s", 24, undefined),
  c(13, "hdc", 8, undefined),
  c(14, "uintr", 48, undefined),
  c(15, "lbr", 808, undefined),
  c(16, "hwp", 8, undefined),
  c(17, "xtilecfg", 64, 2752),
  c(18, "xtiledata", 8192, 2816, { align64: true, xfd: true }),
]);

const LEGACY_AND_HEADER = 576;

/** Components that are only meaningful together, or need another one (SDM Vol. 1, 13.3). */
const GROUPS: readonly (readonly number[])[] = [
  [3, 4],
  [5, 6, 7],
  [17, 18],
];
const REQUIRES: readonly [number, number][] = [
  [2, 1],
  [5, 2],
  [17, 1],
];

/** The component-set sizes that CPUID leaf 0xD reports. */
export interface XsaveSizes {
  /** Standard format size of every XCR0 component enabled (CPUID.(0DH,0):ECX). */
  standardSize: number;
  /** Compacted format size of XCR0 | IA32_XSS components (CPUID.(0DH,1):EBX). */
  compactedSize: number;
}

function componentsOf(mask: bigint, supervisor: boolean): XsaveComponent[] {
  const out: XsaveComponent[] = [];
  for (let i = 0; i < 64; i++) {
    if (((mask >> BigInt(i)) & 1n) === 0n) continue;
    const comp = XSAVE_COMPONENTS[i];
    if (comp === undefined) throw new CpuidError("CPUID_INVALID_XSAVE", `XSAVE component ${i} is not known`);
    if (comp.supervisor !== supervisor) {
      throw new CpuidError(
        "CPUID_INVALID_XSAVE",
        `component ${i} (${comp.name}) is ${comp.supervisor ? "a supervisor (IA32_XSS)" : "a user (XCR0)"} component`,
      );
    }
    out.push(comp);
  }
  return out;
}

/** Checks an XCR0/IA32_XSS pair against the architectural rules; throws CPUID_INVALID_XSAVE. */
export function validateXsave(xcr0: bigint, xss = 0n): void {
  const user = componentsOf(xcr0, false);
  componentsOf(xss, true);
  const has = (i: number) => user.some((u) => u.index === i);
  if (!has(0)) throw new CpuidError("CPUID_INVALID_XSAVE", "XCR0 bit 0 (x87) must be set");
  for (const g of GROUPS) {
    const n = g.filter(has).length;
    if (n !== 0 && n !== g.length) {
      throw new CpuidError("CPUID_INVALID_XSAVE", `XCR0 components ${g.join(", ")} must be enabled together`);
    }
  }
  for (const [a, b] of REQUIRES) {
    if (has(a) && !has(b)) throw new CpuidError("CPUID_INVALID_XSAVE", `XCR0 component ${a} requires component ${b}`);
  }
}

/**
 * The standard-format offsets a CPUID table reports for its user components (CPUID.(0DH, i):EBX
 * of each non-supervisor subleaf i >= 2 with a non-zero size). Where a processor puts a component
 * is its own business; this is how a VMM learns it.
 */
export function xsaveOffsets(table: CpuidTable): Map<number, number> {
  const out = new Map<number, number>();
  for (let i = 2; i < 63; i++) {
    const e = table.get(0xd, i);
    if (e !== undefined && e.eax !== 0 && (e.ecx & 1) === 0) out.set(i, e.ebx >>> 0);
  }
  return out;
}

/**
 * Sizes of the XSAVE areas for the given XCR0 and IA32_XSS component masks. `offsets` (from
 * `xsaveOffsets` of the processor's table) place the standard-format components; components it
 * does not name fall back to Intel's placement.
 */
export function xsaveSizes(xcr0: bigint, xss = 0n, offsets?: ReadonlyMap<number, number>): XsaveSizes {
  validateXsave(xcr0, xss);
  let standardSize = LEGACY_AND_HEADER;
  for (const comp of componentsOf(xcr0, false)) {
    if (comp.index >= 2) standardSize = Math.max(standardSize, (offsets?.get(comp.index) ?? comp.offset!) + comp.size);
  }
  // Compacted format: components >= 2 follow the header in index order, each 64-byte aligned
  // when its align bit says so (SDM Vol. 1, 13.4.3).
  let compactedSize = LEGACY_AND_HEADER;
  const all = [...componentsOf(xcr0, false), ...componentsOf(xss, true)].sort((a, b) => a.index - b.index);
  for (const comp of all) {
    if (comp.index < 2) continue;
    if (comp.align64) compactedSize = Math.ceil(compactedSize / 64) * 64;
    compactedSize += comp.size;
  }
  return { standardSize, compactedSize };
}

/**
 * Rewrites leaf 0xD for the given components: subleaf 0 (supported XCR0 bits, sizes), subleaf 1
 * (keeps the host's XSAVEOPT/XSAVEC/XGETBV1/XSAVES/XFD flags in EAX, sets the compacted size and
 * IA32_XSS bits) and one subleaf per enabled component >= 2; subleaves of disabled components are
 * removed. Subleaf 0 EBX is the size for XCR0 = x87|SSE (the reset value): KVM recomputes it from
 * the guest's XCR0 at run time.
 */
export function setXsave(table: CpuidTable, xcr0: bigint, xss = 0n): CpuidTable {
  // The processor's own placement of each component is kept: the guest's XSAVE runs on it.
  const offsets = xsaveOffsets(table);
  const sizes = xsaveSizes(xcr0, xss, offsets);
  const flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
  const sub1 = table.get(0xd, 1);
  table.delete(0xd);
  const lo = (m: bigint) => Number(m & 0xffffffffn);
  const hi = (m: bigint) => Number((m >> 32n) & 0xffffffffn);
  table.set(0xd, 0, { eax: lo(xcr0), ebx: LEGACY_AND_HEADER, ecx: sizes.standardSize, edx: hi(xcr0) }, { flags });
  table.set(0xd, 1, { eax: sub1?.eax ?? 0, ebx: sizes.compactedSize, ecx: lo(xss), edx: hi(xss) }, { flags });
  for (const comp of [...componentsOf(xcr0, false), ...componentsOf(xss, true)]) {
    if (comp.index < 2) continue;
    table.set(
      0xd,
      comp.index,
      {
        eax: comp.size,
        ebx: comp.supervisor ? 0 : (offsets.get(comp.index) ?? comp.offset ?? 0),
        ecx: (comp.supervisor ? 1 : 0) | (comp.align64 ? 2 : 0) | (comp.xfd ? 4 : 0),
        edx: 0,
      },
      { flags },
    );
  }
  return table;
}

/** The XCR0 and IA32_XSS masks a table's leaf 0xD advertises. */
export function xsaveMasks(table: CpuidTable): { xcr0: bigint; xss: bigint } {
  const s0 = table.get(0xd, 0);
  const s1 = table.get(0xd, 1);
  const join = (lo = 0, hi = 0) => (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
  return { xcr0: join(s0?.eax, s0?.edx), xss: join(s1?.ecx, s1?.edx) };
}
