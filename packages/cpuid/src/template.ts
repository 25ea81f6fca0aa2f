import minimalJson from "../templates/minimal.json";
import t2LikeJson from "../templates/t2-like.json";
import { type Signature, setBrand, setHypervisor, setSignature, setVendor } from "./builders.js";
import { CpuidError, type UnsupportedBit, UnsupportedFeatureError } from "./errors.js";
import { FEATURE_REGISTERS, feature, featureAt, featureMask, isFeatureName } from "./features/index.js";
import { CpuidTable, hex, REGISTERS, type Register, type Vendor } from "./table.js";
import { applyCacheTopology, applyTopology, applyVcpuIds, type Topology } from "./topology.js";
import { setXsave, XSAVE_COMPONENTS, xsaveMasks } from "./xsave.js";

export type BitSpec = 0 | 1 | "0" | "1" | "x";

/**
 * One leaf of a template: per register, 32 characters `0`/`1`/`x`, bit 31 first (`_`, spaces and
 * a leading `0b` are ignored). A register left out is all `x`.
 */
export interface CpuidTemplateLeaf {
  leaf: number | string;
  subleaf?: number;
  eax?: string;
  ebx?: string;
  ecx?: string;
  edx?: string;
}

/**
 * A CPU template. Precedence, lowest first: `others` (every bit of every feature register),
 * then `leaves`, then `features` (by name). `x` keeps the host bit, `0`/`1` force it. A feature
 * that contradicts a `0`/`1` of a leaf bitmap is refused as ambiguous.
 */
export interface CpuidTemplate {
  name: string;
  description?: string;
  others?: "0" | "x";
  leaves?: CpuidTemplateLeaf[];
  features?: Record<string, BitSpec>;
}

/** Force masks of one register: bits in `zeros` become 0, bits in `ones` become 1, the rest are kept. */
export interface RegisterMask {
  zeros: number;
  ones: number;
}

export interface CompiledLeaf {
  leaf: number;
  subleaf: number;
  masks: Record<Register, RegisterMask>;
}

function bad(template: string, msg: string): CpuidError {
  return new CpuidError("CPUID_INVALID_TEMPLATE", `template "${template}": ${msg}`);
}

function parseLeafNumber(name: string, v: unknown): number {
  const n = typeof v === "string" && /^(0x[0-9a-f]+|\d+)$/i.test(v) ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n > 0xffffffff) {
    throw bad(name, `leaf ${JSON.stringify(v)} is not a number or hex string`);
  }
  return n;
}

/** Parses a 32-character 0/1/x register bitmap. */
export function parseBitmap(bitmap: string, where = "bitmap"): RegisterMask {
  const s = bitmap.replace(/^0b/, "").replace(/[_\s]/g, "");
  if (!/^[01x]{32}$/.test(s)) {
    throw new CpuidError("CPUID_INVALID_TEMPLATE", `${where}: "${bitmap}" is not 32 characters of 0, 1 or x`);
  }
  let zeros = 0;
  let ones = 0;
  for (let i = 0; i < 32; i++) {
    const bit = 31 - i;
    if (s[i] === "0") zeros |= 1 << bit;
    else if (s[i] === "1") ones |= 1 << bit;
  }
  return { zeros: zeros >>> 0, ones: ones >>> 0 };
}

/** Renders force masks back as a bitmap (bit 31 first, bytes separated by `_`). */
export function formatBitmap(mask: RegisterMask): string {
  let s = "";
  for (let bit = 31; bit >= 0; bit--) {
    s += (mask.ones >>> bit) & 1 ? "1" : (mask.zeros >>> bit) & 1 ? "0" : "x";
    if (bit % 8 === 0 && bit !== 0) s += "_";
  }
  return s;
}

/** Checks the shape of a template read from JSON; throws CPUID_INVALID_TEMPLATE. */
export function parseTemplate(json: unknown): CpuidTemplate {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new CpuidError("CPUID_INVALID_TEMPLATE", "a template is a JSON object");
  }
  const o = json as Record<string, unknown>;
  if (typeof o.name !== "string" || o.name === "") throw new CpuidError("CPUID_INVALID_TEMPLATE", "template needs a name");
  const name = o.name;
  for (const k of Object.keys(o)) {
    if (!["name", "description", "others", "leaves", "features"].includes(k)) throw bad(name, `unknown key "${k}"`);
  }
  if (o.description !== undefined && typeof o.description !== "string") throw bad(name, "description must be a string");
  if (o.others !== undefined && o.others !== "0" && o.others !== "x") throw bad(name, `others must be "0" or "x"`);
  const t: CpuidTemplate = { name };
  if (typeof o.description === "string") t.description = o.description;
  if (o.others !== undefined) t.others = o.others;
  if (o.leaves !== undefined) {
    if (!Array.isArray(o.leaves)) throw bad(name, "leaves must be an array");
    t.leaves = o.leaves.map((l: unknown) => {
      if (typeof l !== "object" || l === null) throw bad(name, "each leaf is an object");
      const e = l as Record<string, unknown>;
      for (const k of Object.keys(e)) {
        if (!["leaf", "subleaf", ...REGISTERS].includes(k)) throw bad(name, `unknown key "${k}" in a leaf`);
      }
      const leaf = parseLeafNumber(name, e.leaf);
      const subleaf = e.subleaf ?? 0;
      if (typeof subleaf !== "number" || !Number.isInteger(subleaf) || subleaf < 0 || subleaf > 0xffffffff) {
        throw bad(name, `subleaf of leaf ${hex(leaf)} must be a u32`);
      }
      const out: CpuidTemplateLeaf = { leaf, subleaf };
      for (const r of REGISTERS) {
        const v = e[r];
        if (v === undefined) continue;
        if (typeof v !== "string") throw bad(name, `${r} of leaf ${hex(leaf)} must be a string`);
        parseBitmap(v, `template "${name}" leaf ${hex(leaf)}.${subleaf} ${r}`);
        out[r] = v;
      }
      return out;
    });
  }
  if (o.features !== undefined) {
    if (typeof o.features !== "object" || o.features === null || Array.isArray(o.features)) {
      throw bad(name, "features must be an object of name -> 0 | 1 | x");
    }
    const features: Record<string, BitSpec> = {};
    for (const [k, v] of Object.entries(o.features)) {
      if (!isFeatureName(k)) throw bad(name, `unknown feature "${k}"`);
      if (v !== 0 && v !== 1 && v !== "0" && v !== "1" && v !== "x") throw bad(name, `feature ${k}: ${JSON.stringify(v)} is not 0, 1 or "x"`);
      features[k] = v;
    }
    t.features = features;
  }
  return t;
}

const key = (leaf: number, subleaf: number) => `${leaf}:${subleaf}`;

/** Turns a template into per-(leaf, subleaf) force masks, resolving the precedence. */
export function compileTemplate(input: CpuidTemplate): CompiledLeaf[] {
  const template = parseTemplate(input);
  const out = new Map<string, CompiledLeaf>();
  const at = (leaf: number, subleaf: number) => {
    let c = out.get(key(leaf, subleaf));
    if (c === undefined) {
      c = {
        leaf,
        subleaf,
        masks: {
          eax: { zeros: 0, ones: 0 },
          ebx: { zeros: 0, ones: 0 },
          ecx: { zeros: 0, ones: 0 },
          edx: { zeros: 0, ones: 0 },
        },
      };
      out.set(key(leaf, subleaf), c);
    }
    return c;
  };
  if (template.others === "0") {
    for (const r of FEATURE_REGISTERS) at(r.leaf, r.subleaf).masks[r.register] = { zeros: 0xffffffff, ones: 0 };
  }
  const explicit = new Map<string, RegisterMask>();
  for (const l of template.leaves ?? []) {
    const leaf = l.leaf as number;
    const sub = l.subleaf ?? 0;
    for (const r of REGISTERS) {
      const bm = l[r];
      if (bm === undefined) continue;
      const m = parseBitmap(bm);
      at(leaf, sub).masks[r] = m;
      explicit.set(`${key(leaf, sub)}:${r}`, m);
    }
  }
  for (const [name, spec] of Object.entries(template.features ?? {})) {
    const f = feature(name);
    const bit = (1 << f.bit) >>> 0;
    const m = at(f.leaf, f.subleaf).masks[f.register];
    const ex = explicit.get(`${key(f.leaf, f.subleaf)}:${f.register}`);
    const want = String(spec);
    if (ex !== undefined) {
      const has = ex.ones & bit ? "1" : ex.zeros & bit ? "0" : "x";
      if (has !== "x" && has !== want) throw bad(template.name, `feature ${name} is ${want} but its leaf bitmap says ${has}`);
    }
    m.zeros = (m.zeros & ~bit) >>> 0;
    m.ones = (m.ones & ~bit) >>> 0;
    if (want === "0") m.zeros = (m.zeros | bit) >>> 0;
    if (want === "1") m.ones = (m.ones | bit) >>> 0;
  }
  return [...out.values()].sort((a, b) => a.leaf - b.leaf || a.subleaf - b.subleaf);
}

/**
 * The documented feature bits a template forces to 1 that `host` (KVM's supported CPUID) does not
 * have. Bits of value fields (family, sizes, counts) are not features and are never reported.
 */
export function unsupportedBits(host: CpuidTable, template: CpuidTemplate | CompiledLeaf[]): UnsupportedBit[] {
  const compiled = Array.isArray(template) ? template : compileTemplate(template);
  const out: UnsupportedBit[] = [];
  for (const c of compiled) {
    const h = host.get(c.leaf, c.subleaf);
    for (const r of REGISTERS) {
      const missing = (c.masks[r].ones & featureMask(c.leaf, c.subleaf, r) & ~(h?.[r] ?? 0)) >>> 0;
      for (let bit = 0; bit < 32; bit++) {
        if ((missing >>> bit) & 1) {
          out.push({ leaf: c.leaf, subleaf: c.subleaf, register: r, bit, feature: featureAt(c.leaf, c.subleaf, r, bit) });
        }
      }
    }
  }
  return out;
}

/**
 * Applies a template on top of a host table (normally KVM_GET_SUPPORTED_CPUID) and returns a new
 * table: each templated register becomes (host & ~(zeros | ones)) | ones. A leaf the host lacks is
 * created only when the template forces a 1 in it. Throws UnsupportedFeatureError
 * (CPUID_UNSUPPORTED_BIT) when a documented feature bit is forced to 1 but the host lacks it,
 * unless `force` is set.
 */
export function applyTemplate(host: CpuidTable, template: CpuidTemplate, options: { force?: boolean } = {}): CpuidTable {
  const compiled = compileTemplate(template);
  if (options.force !== true) {
    const missing = unsupportedBits(host, compiled);
    if (missing.length > 0) throw new UnsupportedFeatureError(missing);
  }
  const table = host.clone();
  for (const c of compiled) {
    const cur = table.get(c.leaf, c.subleaf);
    const anyOnes = REGISTERS.some((r) => c.masks[r].ones !== 0);
    if (cur === undefined && !anyOnes) continue;
    const base = cur ?? { eax: 0, ebx: 0, ecx: 0, edx: 0 };
    const next = { ...base };
    for (const r of REGISTERS) {
      const m = c.masks[r];
      next[r] = ((base[r] & ~(m.zeros | m.ones)) | m.ones) >>> 0;
    }
    if (cur === undefined && c.subleaf !== 0 && !table.isSignificant(c.leaf)) {
      throw new CpuidError("CPUID_SUBLEAF_NOT_SIGNIFICANT", `template sets subleaf ${c.subleaf} of leaf ${hex(c.leaf)}`);
    }
    table.set(c.leaf, table.isSignificant(c.leaf) ? c.subleaf : 0, next);
  }
  return table;
}

export interface NormalizeOptions {
  topology: Topology;
  /** Out-of-range and topology rules; defaults to what leaf 0's vendor string implies. */
  vendor?: Vendor;
  /** 12-byte vendor string to present (e.g. "GenuineIntel"); default keeps the host's. */
  vendorString?: string;
  brand?: string;
  signature?: Signature;
  /** Hypervisor signature for 0x40000000 (default "KVMKVMKVM\0\0\0"); false leaves the leaves alone. */
  hypervisor?: { signature?: string } | false;
  /** Recompute leaf 0xD from the XCR0/IA32_XSS bits it advertises (default true). */
  xsave?: boolean;
}

/**
 * The normalization applied after a template, in this fixed order:
 *  1. identity: vendor string, brand string, family/model/stepping (when given);
 *  2. hypervisor: CPUID.1:ECX[31] set, 0x40000000 = max leaf + signature, host 0x40000001 kept;
 *  3. XSAVE: leaf 0xD rebuilt from the components it advertises (unknown components dropped), so
 *     sizes always match the enabled set;
 *  4. topology: leaf 1 EBX[23:16] + HTT, leaves 0xB/0x1F, AMD 0x80000001.CmpLegacy / 0x80000008 ECX;
 *  5. cache leaves: leaf 4 and AMD 0x8000001D sharing fields;
 *  6. per-vCPU fields cleared (leaf 1 EBX[31:24], 0xB/0x1F EDX, 0x8000001E removed), so the
 *     result is the same for every vCPU and can be fingerprinted; `vcpuTable` fills them.
 */
export function normalize(input: CpuidTable, options: NormalizeOptions): CpuidTable {
  const table = input.clone();
  const vendor = options.vendor ?? table.vendor;
  if (options.vendorString !== undefined) setVendor(table, options.vendorString);
  if (options.brand !== undefined) setBrand(table, options.brand);
  if (options.signature !== undefined) setSignature(table, options.signature, vendor);
  if (options.hypervisor !== false) {
    const sig = options.hypervisor?.signature;
    setHypervisor(table, sig === undefined ? {} : { signature: sig });
  }
  if (options.xsave !== false && table.hasLeaf(0xd)) {
    const { xcr0, xss } = xsaveMasks(table);
    const known = XSAVE_COMPONENTS.reduce((m, c) => m | (1n << BigInt(c.index)), 0n);
    setXsave(table, xcr0 & known, xss & known);
  }
  applyTopology(table, options.topology, vendor);
  applyCacheTopology(table, options.topology, vendor);
  const l1 = table.get(1);
  if (l1 !== undefined) table.setRegister(1, 0, "ebx", (l1.ebx & 0x00ffffff) >>> 0);
  table.delete(0x8000001e);
  return table;
}

/** The table vCPU `index` sees: the normalized table plus its APIC ids (step 7 of the order). */
export function vcpuTable(normalized: CpuidTable, topology: Topology, index: number, vendor?: Vendor): CpuidTable {
  return applyVcpuIds(normalized.clone(), topology, index, vendor ?? normalized.vendor);
}

/**
 * A stable JSON rendering of a table: one entry per line, ordered by leaf then subleaf, registers
 * as fixed-width hex. Equal tables give byte-identical strings, so two hosts can be compared with
 * a plain diff or string equality.
 */
export function fingerprint(table: CpuidTable): string {
  const lines = table
    .entries()
    .map(
      (e) =>
        `    {"leaf":"${hex(e.leaf)}","subleaf":${e.subleaf},"flags":${e.flags},"eax":"${hex(e.eax)}","ebx":"${hex(e.ebx)}","ecx":"${hex(e.ecx)}","edx":"${hex(e.edx)}"}`,
    );
  return `{\n  "format": "tsvmm-cpuid-fingerprint/1",\n  "entries": [\n${lines.join(",\n")}\n  ]\n}\n`;
}

/** Rebuilds a table from `fingerprint` output. */
export function fromFingerprint(json: string): CpuidTable {
  let o: unknown;
  try {
    o = JSON.parse(json);
  } catch (cause) {
    throw new CpuidError("CPUID_INVALID_VALUE", "fingerprint is not JSON", { cause });
  }
  const entries = (o as { format?: unknown; entries?: unknown }).entries;
  if ((o as { format?: unknown }).format !== "tsvmm-cpuid-fingerprint/1" || !Array.isArray(entries)) {
    throw new CpuidError("CPUID_INVALID_VALUE", "not a tsvmm-cpuid-fingerprint/1 document");
  }
  return new CpuidTable(
    entries.map((e: Record<string, unknown>) => ({
      leaf: Number(e.leaf),
      subleaf: Number(e.subleaf),
      flags: Number(e.flags),
      eax: Number(e.eax),
      ebx: Number(e.ebx),
      ecx: Number(e.ecx),
      edx: Number(e.edx),
    })),
  );
}

/** One register that differs between two tables, with the feature bits gained and lost. */
export interface TableDifference {
  leaf: number;
  subleaf: number;
  register: Register;
  a: number | undefined;
  b: number | undefined;
  /** Named feature bits set in b but not in a. */
  added: string[];
  /** Named feature bits set in a but not in b. */
  removed: string[];
}

/** Every register whose value differs between two tables (missing entries count as absent). */
export function diffTables(a: CpuidTable, b: CpuidTable): TableDifference[] {
  const keys = new Map<string, [number, number]>();
  for (const e of [...a.entries(), ...b.entries()]) keys.set(key(e.leaf, e.subleaf), [e.leaf, e.subleaf]);
  const out: TableDifference[] = [];
  for (const [leaf, subleaf] of [...keys.values()].sort((x, y) => x[0] - y[0] || x[1] - y[1])) {
    const ea = a.get(leaf, subleaf);
    const eb = b.get(leaf, subleaf);
    for (const r of REGISTERS) {
      const va = ea?.[r];
      const vb = eb?.[r];
      if (va === vb) continue;
      const names = (x: number | undefined, y: number | undefined) => {
        const bits = ((x ?? 0) & ~(y ?? 0)) >>> 0;
        const list: string[] = [];
        for (let bit = 0; bit < 32; bit++) {
          const n = (bits >>> bit) & 1 ? featureAt(leaf, subleaf, r, bit) : undefined;
          if (n !== undefined) list.push(n);
        }
        return list;
      };
      out.push({ leaf, subleaf, register: r, a: va, b: vb, added: names(vb, va), removed: names(va, vb) });
    }
  }
  return out;
}

/** The templates shipped in templates/*.json. */
export const TEMPLATES: Readonly<Record<"t2-like" | "minimal", CpuidTemplate>> = Object.freeze({
  "t2-like": parseTemplate(t2LikeJson),
  minimal: parseTemplate(minimalJson),
});

export function loadTemplate(name: string): CpuidTemplate {
  const t = (TEMPLATES as Record<string, CpuidTemplate>)[name];
  if (t === undefined) {
    throw new CpuidError("CPUID_INVALID_TEMPLATE", `no shipped template "${name}" (have: ${Object.keys(TEMPLATES).join(", ")})`);
  }
  return t;
}

