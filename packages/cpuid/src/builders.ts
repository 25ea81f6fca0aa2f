import { CpuidError } from "./errors.js";
import { feature, featureMask } from "./features/index.js";
import { type CpuidTable, checkU32, hex, type Register, regsToString, type Vendor } from "./table.js";

export const VENDOR_INTEL = "GenuineIntel";
export const VENDOR_AMD = "AuthenticAMD";
export const KVM_SIGNATURE = "KVMKVMKVM\0\0\0";

function ascii(s: string, max: number, what: string): number[] {
  const bytes: number[] = [];
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (c > 0x7e || (c < 0x20 && c !== 0)) {
      throw new CpuidError("CPUID_INVALID_STRING", `${what} must be printable ASCII, got ${JSON.stringify(s)}`);
    }
    bytes.push(c);
  }
  if (bytes.length > max) throw new CpuidError("CPUID_INVALID_STRING", `${what} is longer than ${max} bytes`);
  while (bytes.length < max) bytes.push(0);
  return bytes;
}

function words(bytes: readonly number[]): number[] {
  const out: number[] = [];
  for (let i = 0; i < bytes.length; i += 4) {
    out.push((bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24)) >>> 0);
  }
  return out;
}

/** Writes the 12-byte vendor string into CPUID.0 (EBX, EDX, ECX order), keeping EAX. */
export function setVendor(table: CpuidTable, vendor: string): CpuidTable {
  if (vendor.length !== 12) throw new CpuidError("CPUID_INVALID_STRING", `vendor string must be 12 bytes, got "${vendor}"`);
  const [b, d, c] = words(ascii(vendor, 12, "vendor string"));
  return table.set(0, 0, { eax: table.get(0)?.eax ?? 0, ebx: b!, ecx: c!, edx: d! });
}

export function getVendor(table: CpuidTable): string {
  const l = table.get(0);
  return l === undefined ? "" : regsToString([l.ebx, l.edx, l.ecx]);
}

/** Writes up to 47 ASCII characters (NUL-terminated) into 0x80000002..4 and raises 0x80000000 if needed. */
export function setBrand(table: CpuidTable, brand: string): CpuidTable {
  const bytes = ascii(brand, 48, "brand string");
  if (bytes[47] !== 0) throw new CpuidError("CPUID_INVALID_STRING", "brand string is at most 47 characters");
  const w = words(bytes);
  for (let i = 0; i < 3; i++) {
    table.set(0x80000002 + i, 0, { eax: w[4 * i]!, ebx: w[4 * i + 1]!, ecx: w[4 * i + 2]!, edx: w[4 * i + 3]! });
  }
  const ext = table.get(0x80000000);
  if (ext === undefined || ext.eax < 0x80000004) {
    table.set(0x80000000, 0, { ...(ext ?? { ebx: 0, ecx: 0, edx: 0 }), eax: 0x80000004 });
  }
  return table;
}

export function getBrand(table: CpuidTable): string {
  const regs: number[] = [];
  for (let l = 0x80000002; l <= 0x80000004; l++) {
    const e = table.get(l);
    if (e === undefined) break;
    regs.push(e.eax, e.ebx, e.ecx, e.edx);
  }
  return regsToString(regs);
}

/** Family/model/stepping as software sees them (the "display" values of the SDM). */
export interface Signature {
  family: number;
  model: number;
  stepping: number;
  /** Processor type, EAX[13:12]; 0 = original OEM processor. */
  type?: number;
}

/**
 * Encodes CPUID.1:EAX. Family >= 0xF goes into Family ID 0xF + Extended Family; a model above 15
 * needs the Extended Model field, which Intel honours for family 6 and 0xF and AMD only for
 * family 0xF, so other combinations are refused rather than silently mis-encoded.
 */
export function encodeSignature(sig: Signature, vendor: Vendor = "intel"): number {
  const { family, model, stepping } = sig;
  const type = sig.type ?? 0;
  const bad = (m: string) => new CpuidError("CPUID_INVALID_SIGNATURE", m);
  if (!Number.isInteger(family) || family < 0 || family > 0xf + 0xff) throw bad(`family ${family} out of range`);
  if (!Number.isInteger(model) || model < 0 || model > 0xff) throw bad(`model ${model} out of range`);
  if (!Number.isInteger(stepping) || stepping < 0 || stepping > 0xf) throw bad(`stepping ${stepping} out of range`);
  if (!Number.isInteger(type) || type < 0 || type > 3) throw bad(`type ${type} out of range`);
  const familyId = Math.min(family, 0xf);
  const extFamily = family - familyId;
  const usesExtModel = familyId === 0xf || (vendor === "intel" && familyId === 6);
  if (model > 0xf && !usesExtModel) {
    throw bad(`model ${hex(model)} needs the extended model field, which ${vendor} ignores for family ${family}`);
  }
  return (
    ((extFamily << 20) | ((model >> 4) << 16) | (type << 12) | (familyId << 8) | ((model & 0xf) << 4) | stepping) >>> 0
  );
}

export function decodeSignature(eax: number, vendor: Vendor = "intel"): Required<Signature> {
  const familyId = (eax >>> 8) & 0xf;
  const extFamily = (eax >>> 20) & 0xff;
  const baseModel = (eax >>> 4) & 0xf;
  const extModel = (eax >>> 16) & 0xf;
  const usesExtModel = familyId === 0xf || (vendor === "intel" && familyId === 6);
  return {
    family: familyId === 0xf ? familyId + extFamily : familyId,
    model: usesExtModel ? (extModel << 4) | baseModel : baseModel,
    stepping: eax & 0xf,
    type: (eax >>> 12) & 3,
  };
}

export function setSignature(table: CpuidTable, sig: Signature, vendor: Vendor = table.vendor): CpuidTable {
  return table.setRegister(1, 0, "eax", encodeSignature(sig, vendor));
}

/**
 * Hypervisor leaves: 0x40000000 = max hypervisor leaf + 12-byte signature (EBX, ECX, EDX), and
 * leaf 1 ECX[31] set. `features` fills 0x40000001 EAX (KVM_FEATURE_* bits) when given; otherwise an
 * existing 0x40000001 is kept.
 */
export function setHypervisor(
  table: CpuidTable,
  options: { signature?: string; maxLeaf?: number; features?: number; hints?: number; base?: number } = {},
): CpuidTable {
  const signature = options.signature ?? KVM_SIGNATURE;
  if (signature.length !== 12) {
    throw new CpuidError("CPUID_INVALID_STRING", `hypervisor signature must be 12 bytes, got ${JSON.stringify(signature)}`);
  }
  const base = options.base ?? 0x40000000;
  if (base < 0x40000000 || base > 0x4fffff00 || base % 0x100 !== 0) {
    throw new CpuidError("CPUID_INVALID_VALUE", `hypervisor base ${hex(base)} must be 0x400000x00`);
  }
  const [b, c, d] = words(ascii(signature, 12, "hypervisor signature"));
  const maxLeaf = checkU32(options.maxLeaf ?? Math.max(base + 1, table.get(base)?.eax ?? 0), "maxLeaf");
  table.set(base, 0, { eax: maxLeaf, ebx: b!, ecx: c!, edx: d! });
  if (options.features !== undefined || options.hints !== undefined) {
    const cur = table.get(base + 1) ?? { eax: 0, ebx: 0, ecx: 0, edx: 0 };
    table.set(base + 1, 0, {
      ...cur,
      eax: checkU32(options.features ?? cur.eax, "features"),
      edx: checkU32(options.hints ?? cur.edx, "hints"),
    });
  }
  const hv = feature("hypervisor");
  return table.setRegister(1, 0, hv.register, ((table.get(1)?.ecx ?? 0) | (1 << hv.bit)) >>> 0);
}

export function getHypervisorSignature(table: CpuidTable, base = 0x40000000): string | undefined {
  const e = table.get(base);
  if (e === undefined) return undefined;
  let s = "";
  for (const r of [e.ebx, e.ecx, e.edx]) for (let i = 0; i < 4; i++) s += String.fromCharCode((r >>> (8 * i)) & 0xff);
  return s;
}

/** AND one register with `and`, then OR with `or`. Missing entries are left missing. */
export function maskRegister(
  table: CpuidTable,
  leaf: number,
  subleaf: number,
  register: Register,
  mask: { and?: number; or?: number },
): CpuidTable {
  const cur = table.get(leaf, subleaf);
  if (cur === undefined) return table;
  const and = checkU32(mask.and ?? 0xffffffff, "and mask");
  const or = checkU32(mask.or ?? 0, "or mask");
  return table.setRegister(leaf, subleaf, register, ((cur[register] & and) | or) >>> 0);
}

/** Clears the named feature bits (those whose leaf exists). */
export function disableFeatures(table: CpuidTable, names: Iterable<string>): CpuidTable {
  for (const n of names) {
    const f = feature(n);
    maskRegister(table, f.leaf, f.subleaf, f.register, { and: ~(1 << f.bit) >>> 0 });
  }
  return table;
}

/**
 * Keeps only the documented feature bits that `supported` also has (e.g. KVM_GET_SUPPORTED_CPUID);
 * registers that hold no feature bits are untouched.
 */
export function intersectFeatures(table: CpuidTable, supported: CpuidTable): CpuidTable {
  for (const e of table.entries()) {
    const s = supported.get(e.leaf, e.subleaf);
    for (const reg of ["eax", "ebx", "ecx", "edx"] as const) {
      const m = featureMask(e.leaf, e.subleaf, reg);
      if (m === 0) continue;
      maskRegister(table, e.leaf, e.subleaf, reg, { and: (~m | (s?.[reg] ?? 0)) >>> 0 });
    }
  }
  return table;
}
