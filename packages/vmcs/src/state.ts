import { VmcsError } from "./errors.js";
import { type FieldRef, field, fieldMax, findField, VMCS_FIELDS, type VmcsField } from "./fields.js";
import { show } from "./show.js";

/** The full (non-high) fields: a state stores one value per full field. */
const FULL_FIELDS: readonly VmcsField[] = VMCS_FIELDS.filter((f) => f.access === "full");
const SLOT_BY_ENCODING = new Map<number, number>(FULL_FIELDS.map((f, i) => [f.encoding, i]));

/**
 * Identity of a VmcsState across copies of this module. A package loaded both as ESM and as CJS
 * (or twice through different paths) has two VmcsState classes; `instanceof` alone would reject
 * the other copy's objects. The brand is a global symbol whose value names the slot layout, so a
 * state from another copy is accepted exactly when its slots mean the same fields.
 */
const BRAND: unique symbol = Symbol.for("@tsvmm/vmcs.VmcsState") as never;

function layoutSignature(): string {
  // FNV-1a over the full-field encodings: equal iff both copies index their slots identically.
  let h = 0x811c9dc5;
  for (const f of FULL_FIELDS) {
    h ^= f.encoding;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  // Version 2: a state also keeps each value as two 32-bit words (slotWords), read by the checks.
  return `vmcs-state/2:${FULL_FIELDS.length}:${h.toString(16)}`;
}
const LAYOUT = layoutSignature();

/** Whether `x` is a VmcsState from this or any other copy of the package with the same slot layout. */
export function isVmcsState(x: unknown): x is VmcsState {
  return typeof x === "object" && x !== null && (x as { [BRAND]?: unknown })[BRAND] === LAYOUT;
}

/** Slot of a full field in a VmcsState (stable for the life of the process; used by the checks). */
export function fieldSlot(ref: FieldRef): number {
  const f = field(ref);
  return SLOT_BY_ENCODING.get(f.encoding & ~1)!;
}

export type FieldValue = bigint | number;

/** JSON form: `{"fields": {"GUEST_CR0": "0x80000031", ...}}`. */
export interface VmcsStateJson {
  fields: Record<string, string>;
}

function toBigInt(f: VmcsField, value: unknown): bigint {
  let v: bigint;
  if (typeof value === "bigint") v = value;
  else if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) {
      throw new VmcsError("VMCS_VALUE_OUT_OF_RANGE", `${f.name}: ${value} is not a safe integer (use a bigint)`);
    }
    v = BigInt(value);
  } else {
    throw new VmcsError("VMCS_VALUE_OUT_OF_RANGE", `${f.name}: value must be a bigint or number, got ${typeof value}`);
  }
  if (v < 0n || v > fieldMax(f)) {
    throw new VmcsError(
      "VMCS_VALUE_OUT_OF_RANGE",
      `${f.name}: 0x${v.toString(16)} does not fit a ${f.bits}-bit field`,
    );
  }
  return v;
}

function parseJsonValue(name: string, raw: unknown): bigint {
  // Not JSON, but an object built in code may carry bigints; the field width check follows in set().
  if (typeof raw === "bigint" && raw >= 0n) return raw;
  if (typeof raw === "number") {
    if (!Number.isSafeInteger(raw) || raw < 0) {
      throw new VmcsError("VMCS_INVALID_JSON", `${name}: ${show(raw)} is not a non-negative safe integer; write it as a "0x..." string`);
    }
    return BigInt(raw);
  }
  if (typeof raw === "string" && /^(0x[0-9a-fA-F]+|[0-9]+)$/.test(raw.trim())) return BigInt(raw.trim());
  throw new VmcsError("VMCS_INVALID_JSON", `${name}: expected "0x..." hex, a decimal string or a number, got ${show(raw)}`);
}

/**
 * A VMCS as a typed container: one value per field of Appendix B, zero when not set. Writes are
 * width-checked; a 64-bit field can also be read or written through its `_HIGH` half.
 */
export class VmcsState {
  /** See isVmcsState: `instanceof VmcsState` holds for a state made by any copy of this package. */
  static [Symbol.hasInstance](x: unknown): boolean {
    return isVmcsState(x);
  }

  private readonly values: bigint[];
  private readonly present: Uint8Array;
  /**
   * The same values as 32-bit words, low then high per slot: the checks run on these as plain
   * numbers, which costs V8 far less than BigInt arithmetic (each BigInt operation allocates).
   */
  private readonly words: Uint32Array;

  constructor(init?: Record<string, FieldValue>) {
    Object.defineProperty(this, BRAND, { value: LAYOUT });
    this.values = new Array<bigint>(FULL_FIELDS.length).fill(0n);
    this.present = new Uint8Array(FULL_FIELDS.length);
    this.words = new Uint32Array(2 * FULL_FIELDS.length);
    if (init) for (const [k, v] of Object.entries(init)) this.set(k, v);
  }

  /** Read a field (0n if never written). */
  get(ref: FieldRef): bigint {
    const f = field(ref);
    const v = this.values[SLOT_BY_ENCODING.get(f.encoding & ~1)!]!;
    return f.access === "high" ? v >> 32n : v;
  }

  /** Read a 16- or 32-bit field as a number. */
  getNumber(ref: FieldRef): number {
    const f = field(ref);
    if (f.bits === 64) throw new VmcsError("VMCS_VALUE_OUT_OF_RANGE", `${f.name} is 64 bits wide; use get()`);
    return Number(this.get(f.encoding));
  }

  /** Write a field; throws VMCS_VALUE_OUT_OF_RANGE if the value does not fit its width. */
  set(ref: FieldRef, value: FieldValue): this {
    const f = field(ref);
    const v = toBigInt(f, value);
    const slot = SLOT_BY_ENCODING.get(f.encoding & ~1)!;
    const full = f.access === "high" ? (this.values[slot]! & 0xffff_ffffn) | (v << 32n) : v;
    this.values[slot] = full;
    this.words[2 * slot] = Number(full & 0xffff_ffffn);
    this.words[2 * slot + 1] = Number(full >> 32n);
    this.present[slot] = 1;
    return this;
  }

  /** Whether a field was written (or imported). */
  has(ref: FieldRef): boolean {
    const f = field(ref);
    return this.present[SLOT_BY_ENCODING.get(f.encoding & ~1)!] === 1;
  }

  /** Forget a field (it reads as 0 again). */
  delete(ref: FieldRef): this {
    const slot = fieldSlot(ref);
    this.values[slot] = 0n;
    this.words[2 * slot] = 0;
    this.words[2 * slot + 1] = 0;
    this.present[slot] = 0;
    return this;
  }

  /** Fast read by slot (see fieldSlot); no validation. */
  getSlot(slot: number): bigint {
    return this.values[slot] ?? 0n;
  }

  /**
   * @internal The values as 32-bit words (slot s: low word at 2s, high word at 2s + 1), for the
   * checks. A view of the state's own storage: read it, never write it.
   */
  slotWords(): Uint32Array {
    return this.words;
  }

  /** Written fields in encoding order. */
  *entries(): IterableIterator<[VmcsField, bigint]> {
    for (let i = 0; i < FULL_FIELDS.length; i++) if (this.present[i]) yield [FULL_FIELDS[i]!, this.values[i]!];
  }

  clone(): VmcsState {
    const c = new VmcsState();
    for (let i = 0; i < FULL_FIELDS.length; i++) {
      c.values[i] = this.values[i]!;
      c.present[i] = this.present[i]!;
    }
    c.words.set(this.words);
    return c;
  }

  /** Written fields as `{"fields": {NAME: "0x..."}}`. */
  toJSON(): VmcsStateJson {
    const fields: Record<string, string> = {};
    for (const [f, v] of this.entries()) fields[f.name] = `0x${v.toString(16)}`;
    return { fields };
  }

  /**
   * Parse the JSON form (an object or its text). Keys are field names or encodings ("0x6800");
   * values are "0x..." strings, decimal strings or safe integers. Throws VMCS_INVALID_JSON,
   * VMCS_UNKNOWN_FIELD or VMCS_VALUE_OUT_OF_RANGE.
   */
  static fromJSON(json: unknown): VmcsState {
    let obj: unknown = json;
    if (typeof json === "string") {
      try {
        obj = JSON.parse(json);
      } catch (e) {
        throw new VmcsError("VMCS_INVALID_JSON", `VMCS state is not valid JSON: ${(e as Error).message}`);
      }
    }
    if (typeof obj !== "object" || obj === null || Array.isArray(obj)) {
      throw new VmcsError("VMCS_INVALID_JSON", `VMCS state must be an object {"fields": {...}}`);
    }
    for (const k of Object.keys(obj)) {
      if (k !== "fields") throw new VmcsError("VMCS_INVALID_JSON", `unknown key ${show(k)} in VMCS state (only "fields" is accepted)`, k);
    }
    const fields = (obj as { fields?: unknown }).fields;
    if (typeof fields !== "object" || fields === null || Array.isArray(fields)) {
      throw new VmcsError("VMCS_INVALID_JSON", `VMCS state needs a "fields" object`);
    }
    const s = new VmcsState();
    for (const [k, raw] of Object.entries(fields)) {
      const ref: FieldRef = /^0x[0-9a-f]+$/i.test(k) ? Number.parseInt(k, 16) : k;
      if (findField(ref) === undefined) throw new VmcsError("VMCS_UNKNOWN_FIELD", `unknown VMCS field ${show(k)}`, `fields.${k}`);
      s.set(ref, parseJsonValue(k, raw));
    }
    return s;
  }
}
