import { SvmError } from "./errors.js";
import { type FieldRef, field, fieldMax, findField, VMCB_FIELDS, type VmcbField } from "./fields.js";
import { VMCB_SIZE, type Vmcb, VmcbLayout } from "./layout.js";

export type FieldValue = bigint | number;

/** JSON form: `{"fields": {"save.cr0": "0x80000011", ...}}` (fields that are zero are left out). */
export interface VmcbStateJson {
  fields: Record<string, string>;
}

// A registered symbol, not a class identity: two copies of this module (an ESM and a CJS build
// loaded side by side, or two bundled copies) still recognise each other's states.
const BRAND: unique symbol = Symbol.for("@tsvmm/svm.VmcbState") as never;

function readLe(page: Buffer, f: VmcbField): bigint {
  if (f.size === 8) return page.readBigUInt64LE(f.offset);
  if (f.size === 4) return BigInt(page.readUInt32LE(f.offset));
  if (f.size === 2) return BigInt(page.readUInt16LE(f.offset));
  if (f.size === 1) return BigInt(page[f.offset]!);
  let v = 0n;
  for (let i = f.size - 1; i >= 0; i--) v = (v << 8n) | BigInt(page[f.offset + i]!);
  return v;
}

function writeLe(page: Buffer, f: VmcbField, v: bigint): void {
  if (f.size === 8) page.writeBigUInt64LE(v, f.offset);
  else if (f.size === 4) page.writeUInt32LE(Number(v), f.offset);
  else if (f.size === 2) page.writeUInt16LE(Number(v), f.offset);
  else if (f.size === 1) page[f.offset] = Number(v);
  else for (let i = 0; i < f.size; i++) page[f.offset + i] = Number((v >> BigInt(8 * i)) & 0xffn);
}

function toBigInt(f: VmcbField, value: unknown): bigint {
  let v: bigint;
  if (typeof value === "bigint") v = value;
  else if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new SvmError("SVM_VALUE_OUT_OF_RANGE", `${f.name}: ${value} is not a safe integer (use a bigint)`);
    v = BigInt(value);
  } else {
    throw new SvmError("SVM_VALUE_OUT_OF_RANGE", `${f.name}: value must be a bigint or number, got ${typeof value}`);
  }
  if (v < 0n || v > fieldMax(f)) throw new SvmError("SVM_VALUE_OUT_OF_RANGE", `${f.name}: 0x${v.toString(16)} does not fit ${f.size} byte(s)`);
  return v;
}

/**
 * A VMCB held as the 4-KiB page the CPU reads: every field of appendix B by name, width-checked
 * writes, reserved bytes kept as they are. `toBuffer()` is the exact page image.
 */
export class VmcbState {
  readonly [BRAND] = true;
  private readonly page: Buffer;

  constructor(init?: Record<string, FieldValue>) {
    this.page = Buffer.alloc(VMCB_SIZE);
    if (init) for (const [k, v] of Object.entries(init)) this.set(k, v);
  }

  /** Whether `x` is a VmcbState from any copy of this package. */
  static isVmcbState(x: unknown): x is VmcbState {
    return typeof x === "object" && x !== null && (x as { [BRAND]?: unknown })[BRAND] === true;
  }

  /** A state over a copy of a 4096-byte VMCB page; throws SVM_INVALID_VMCB for another size. */
  static fromBuffer(page: Uint8Array): VmcbState {
    if (!(page instanceof Uint8Array) || page.length !== VMCB_SIZE) {
      throw new SvmError("SVM_INVALID_VMCB", `a VMCB is ${VMCB_SIZE} bytes, got ${page?.length}`);
    }
    const s = new VmcbState();
    s.page.set(page);
    return s;
  }

  /** Read a field (0n when never written). */
  get(ref: FieldRef): bigint {
    return readLe(this.page, field(ref));
  }

  /** Write a field; throws SVM_UNKNOWN_FIELD or SVM_VALUE_OUT_OF_RANGE. */
  set(ref: FieldRef, value: FieldValue): this {
    const f = field(ref);
    writeLe(this.page, f, toBigInt(f, value));
    return this;
  }

  /** The page image (a copy). */
  toBuffer(): Buffer {
    return Buffer.from(this.page);
  }

  /** The page decoded with VmcbLayout. */
  decode(): Vmcb {
    return VmcbLayout.decode(this.page);
  }

  clone(): VmcbState {
    return VmcbState.fromBuffer(this.page);
  }

  /** Non-zero fields in offset order. */
  *entries(): IterableIterator<[VmcbField, bigint]> {
    for (const f of VMCB_FIELDS) {
      const v = readLe(this.page, f);
      if (v !== 0n) yield [f, v];
    }
  }

  toJSON(): VmcbStateJson {
    const fields: Record<string, string> = {};
    for (const [f, v] of this.entries()) fields[f.name] = `0x${v.toString(16)}`;
    return { fields };
  }

  /**
   * Parse the JSON form (object or text). Keys are field names (`save.cr0`); values are "0x..."
   * strings, decimal strings or safe integers. Throws SVM_INVALID_JSON, SVM_UNKNOWN_FIELD or
   * SVM_VALUE_OUT_OF_RANGE.
   */
  static fromJSON(json: unknown): VmcbState {
    let obj: unknown = json;
    if (typeof json === "string") {
      try {
        obj = JSON.parse(json);
      } catch (e) {
        throw new SvmError("SVM_INVALID_JSON", `VMCB state is not valid JSON: ${(e as Error).message}`);
      }
    }
    if (typeof obj !== "object" || obj === null || Array.isArray(obj)) throw new SvmError("SVM_INVALID_JSON", `VMCB state must be an object {"fields": {...}}`);
    const fields = (obj as { fields?: unknown }).fields;
    if (typeof fields !== "object" || fields === null || Array.isArray(fields)) throw new SvmError("SVM_INVALID_JSON", `VMCB state needs a "fields" object`);
    const s = new VmcbState();
    for (const [k, raw] of Object.entries(fields)) {
      const f = findField(k);
      if (f === undefined) throw new SvmError("SVM_UNKNOWN_FIELD", `unknown VMCB field ${JSON.stringify(k)}`);
      let v: bigint;
      if (typeof raw === "number" && Number.isSafeInteger(raw) && raw >= 0) v = BigInt(raw);
      else if (typeof raw === "string" && /^(0x[0-9a-fA-F]+|[0-9]+)$/.test(raw.trim())) v = BigInt(raw.trim());
      else throw new SvmError("SVM_INVALID_JSON", `${k}: expected "0x..." hex, a decimal string or a number, got ${JSON.stringify(raw)}`);
      s.set(f, v);
    }
    return s;
  }
}
