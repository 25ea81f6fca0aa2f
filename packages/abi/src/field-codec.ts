import type { StructLayout } from "./layout.js";

// Why this exists: decoding kvm_sregs through buffer-layout cost ~60 us and kvm_regs ~10 us per
// call on this project's hosts, and an emulation exit reads both. The codec below reads the same
// layout tree and is checked leaf by leaf against the layout's own decode/encode before use.

/**
 * A struct layout read and written field by field through a DataView: the same values and bytes
 * as the layout's own decode/encode, at a fraction of the cost. Built from the layout's own tree
 * (fields, spans, offsets), never from a second list of offsets.
 */
export interface FieldCodec {
  decode(view: DataView, buf: Uint8Array, offset: number): unknown;
  /** False (having written part of `buf`) when `value` is not a complete, in-range value of the struct. */
  encode(value: unknown, view: DataView, buf: Uint8Array, offset: number): boolean;
}

/** The parts of a buffer-layout Layout the codec builder reads. */
interface LayoutNode {
  readonly span: number;
  readonly property?: string;
  readonly fields?: readonly LayoutNode[];
  readonly elementLayout?: LayoutNode;
  readonly count?: unknown;
  decode(b: Uint8Array, offset?: number): unknown;
  encode(src: unknown, b: Uint8Array, offset?: number): number;
}

const codecs = new WeakMap<StructLayout<unknown>, FieldCodec | null>();

/**
 * The field codec of `layout`, or undefined when it holds a field kind the codec does not know
 * (the layout is then used as it is). Every leaf is checked against the layout's own decode and
 * encode of a pattern before it is trusted: little-endian integers of 1, 2, 4 or 8 bytes (signed
 * or not) and byte arrays that decode to a copy.
 */
export function fieldCodec(layout: StructLayout<unknown>): FieldCodec | undefined {
  let c = codecs.get(layout);
  if (c === undefined) {
    c = nodeCodec(layout.layout as unknown as LayoutNode) ?? null;
    codecs.set(layout, c);
  }
  return c ?? undefined;
}

function nodeCodec(node: LayoutNode): FieldCodec | undefined {
  if (node.fields !== undefined) return structCodec(node.fields);
  if (node.elementLayout !== undefined) {
    const count = node.count;
    const elem = nodeCodec(node.elementLayout);
    const stride = node.elementLayout.span;
    if (elem === undefined || typeof count !== "number" || stride <= 0) return undefined;
    return {
      decode(view, buf, offset) {
        const out: unknown[] = new Array(count);
        for (let i = 0; i < count; i++) out[i] = elem.decode(view, buf, offset + i * stride);
        return out;
      },
      encode(value, view, buf, offset) {
        if (!Array.isArray(value) || value.length !== count) return false;
        for (let i = 0; i < count; i++) if (!elem.encode(value[i], view, buf, offset + i * stride)) return false;
        return true;
      },
    };
  }
  return leafCodec(node);
}

function structCodec(fields: readonly LayoutNode[]): FieldCodec | undefined {
  const names: string[] = [];
  const offsets: number[] = [];
  const parts: FieldCodec[] = [];
  let off = 0;
  for (const f of fields) {
    if (f.span < 0) return undefined;
    if (f.property !== undefined) {
      const c = nodeCodec(f);
      if (c === undefined) return undefined;
      names.push(f.property);
      offsets.push(off);
      parts.push(c);
    }
    off += f.span;
  }
  const n = names.length;
  return {
    decode(view, buf, offset) {
      const out: Record<string, unknown> = {};
      for (let i = 0; i < n; i++) out[names[i]!] = parts[i]!.decode(view, buf, offset + offsets[i]!);
      return out;
    },
    encode(value, view, buf, offset) {
      if (typeof value !== "object" || value === null) return false;
      const v = value as Record<string, unknown>;
      for (let i = 0; i < n; i++) if (!parts[i]!.encode(v[names[i]!], view, buf, offset + offsets[i]!)) return false;
      return true;
    },
  };
}

const U64_MAX = 0xffffffffffffffffn;
const S64_MIN = -(1n << 63n);
const S64_MAX = (1n << 63n) - 1n;

function leafCodec(node: LayoutNode): FieldCodec | undefined {
  const span = node.span;
  if (span <= 0) return undefined;
  // Distinct bytes, the top one with its sign bit set: a signed field reads negative.
  const pattern = Uint8Array.from({ length: span }, (_, i) => (0x81 + 0x13 * i) & 0x7f);
  pattern[span - 1]! |= 0x80;
  const view = new DataView(pattern.buffer);
  let probe: unknown;
  try {
    probe = node.decode(pattern, 0);
  } catch {
    return undefined;
  }
  let codec: FieldCodec | undefined;
  if (probe instanceof Uint8Array) {
    codec = {
      decode: (_view, buf, offset) => Buffer.from(buf.subarray(offset, offset + span)),
      encode(value, _view, buf, offset) {
        if (!(value instanceof Uint8Array) || value.length > span) return false;
        buf.set(value, offset);
        return true;
      },
    };
  } else if (span === 8 && typeof probe === "bigint") {
    const signed = probe < 0n;
    codec = signed
      ? {
          decode: (v, _b, o) => v.getBigInt64(o, true),
          encode(value, v, _b, o) {
            if (typeof value !== "bigint" || value < S64_MIN || value > S64_MAX) return false;
            v.setBigInt64(o, value, true);
            return true;
          },
        }
      : {
          decode: (v, _b, o) => v.getBigUint64(o, true),
          encode(value, v, _b, o) {
            if (typeof value !== "bigint" || value < 0n || value > U64_MAX) return false;
            v.setBigUint64(o, value, true);
            return true;
          },
        };
  } else if ((span === 1 || span === 2 || span === 4) && typeof probe === "number") {
    const signed = probe < 0;
    const bits = span * 8;
    const min = signed ? -(2 ** (bits - 1)) : 0;
    const max = signed ? 2 ** (bits - 1) - 1 : 2 ** bits - 1;
    const read =
      span === 1 ? (signed ? (v: DataView, o: number) => v.getInt8(o) : (v: DataView, o: number) => v.getUint8(o))
      : span === 2 ? (signed ? (v: DataView, o: number) => v.getInt16(o, true) : (v: DataView, o: number) => v.getUint16(o, true))
      : signed ? (v: DataView, o: number) => v.getInt32(o, true) : (v: DataView, o: number) => v.getUint32(o, true);
    const write =
      span === 1 ? (signed ? (v: DataView, o: number, x: number) => v.setInt8(o, x) : (v: DataView, o: number, x: number) => v.setUint8(o, x))
      : span === 2 ? (signed ? (v: DataView, o: number, x: number) => v.setInt16(o, x, true) : (v: DataView, o: number, x: number) => v.setUint16(o, x, true))
      : signed ? (v: DataView, o: number, x: number) => v.setInt32(o, x, true) : (v: DataView, o: number, x: number) => v.setUint32(o, x, true);
    codec = {
      decode: (v, _b, o) => read(v, o),
      encode(value, v, _b, o) {
        if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) return false;
        write(v, o, value);
        return true;
      },
    };
  }
  if (codec === undefined) return undefined;
  // Trust the leaf only if it reads the pattern as the layout does and writes it back the same.
  const mine = codec.decode(view, pattern, 0);
  const same = mine instanceof Uint8Array && probe instanceof Uint8Array ? Buffer.compare(mine, probe) === 0 : mine === probe;
  if (!same) return undefined;
  const a = new Uint8Array(span);
  const b = new Uint8Array(span);
  try {
    node.encode(probe, a, 0);
  } catch {
    return undefined;
  }
  if (!codec.encode(probe, new DataView(b.buffer), b, 0) || Buffer.compare(a, b) !== 0) return undefined;
  return codec;
}
