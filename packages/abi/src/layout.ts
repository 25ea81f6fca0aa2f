import { struct as bl_struct, blob, Layout, type Structure, seq, uint8ArrayToBuffer } from "@solana/buffer-layout";
import { LayoutError } from "./errors.js";

/**
 * A thin typed layer over buffer-layout. Field names are camelCase; the C name of each field is
 * derived mechanically (camelCase -> snake_case) so the header test can ask the C compiler for
 * every offset without a second hand-kept list.
 */

/**
 * The Buffer over `b`: `b` itself when it is one. buffer-layout's own integers make a new Buffer
 * view of the bytes for every field they read or write, which a struct decode pays per field (the
 * garbage of a start-up's ioctls and CPUID tables).
 */
const asBuffer = (b: Uint8Array): Buffer => (b instanceof Buffer ? b : uint8ArrayToBuffer(b));

/** Whether `span` bytes at `offset` are inside `b` (else Buffer's own method says why not). */
const fits = (b: Uint8Array, offset: number, span: number): boolean => b instanceof Uint8Array && Number.isInteger(offset) && offset >= 0 && offset + span <= b.length;

// The leaves read and write 1, 2 and 4 bytes themselves when the offset is in bounds and the value
// an in-range integer, with the arithmetic of Node's own readUInt32LE & co.; anything else goes to
// those Buffer methods, so values, bytes and errors are buffer-layout's in every case.

/** Unsigned little-endian integer of 1..6 bytes, as buffer-layout's UInt (and named so: tests derive arbitraries from the class). */
class UInt extends Layout<number> {
  override decode(b: Uint8Array, offset = 0): number {
    const span = this.span;
    if (fits(b, offset, span)) {
      if (span === 1) return b[offset]!;
      if (span === 2) return b[offset]! + b[offset + 1]! * 2 ** 8;
      if (span === 4) return b[offset]! + b[offset + 1]! * 2 ** 8 + b[offset + 2]! * 2 ** 16 + b[offset + 3]! * 2 ** 24;
    }
    return asBuffer(b).readUIntLE(offset, span);
  }
  override encode(src: number, b: Uint8Array, offset = 0): number {
    const span = this.span;
    if ((span === 1 || span === 2 || span === 4) && Number.isInteger(src) && src >= 0 && src < 2 ** (8 * span) && fits(b, offset, span)) {
      for (let i = 0, v = src; i < span; i++, v = Math.floor(v / 256)) b[offset + i] = v & 0xff;
      return span;
    }
    asBuffer(b).writeUIntLE(src, offset, span);
    return span;
  }
}

/** Signed little-endian integer of 1..6 bytes, as buffer-layout's Int. */
class Int extends Layout<number> {
  override decode(b: Uint8Array, offset = 0): number {
    const span = this.span;
    if (fits(b, offset, span)) {
      if (span === 1) return b[offset]! | ((b[offset]! & 0x80) * 0x1fffffe);
      if (span === 2) {
        const v = b[offset]! + b[offset + 1]! * 2 ** 8;
        return v | ((v & 0x8000) * 0x1fffe);
      }
      if (span === 4) return b[offset]! + b[offset + 1]! * 2 ** 8 + b[offset + 2]! * 2 ** 16 + (b[offset + 3]! << 24);
    }
    return asBuffer(b).readIntLE(offset, span);
  }
  override encode(src: number, b: Uint8Array, offset = 0): number {
    const span = this.span;
    const half = 2 ** (8 * span - 1);
    if ((span === 1 || span === 2 || span === 4) && Number.isInteger(src) && src >= -half && src < half && fits(b, offset, span)) {
      // Two's complement in `span` bytes: the low bytes of the value as an unsigned 32-bit integer.
      for (let i = 0, v = src >>> 0; i < span; i++, v >>>= 8) b[offset + i] = v & 0xff;
      return span;
    }
    asBuffer(b).writeIntLE(src, offset, span);
    return span;
  }
}

/** 64-bit integers are bigint: the kernel's u64 values do not fit a double. */
class U64 extends Layout<bigint> {
  constructor(property?: string) {
    super(8, property);
  }
  override decode(b: Uint8Array, offset = 0): bigint {
    return asBuffer(b).readBigUInt64LE(offset);
  }
  override encode(src: bigint, b: Uint8Array, offset = 0): number {
    if (typeof src !== "bigint" || src < 0n || src > 0xffffffffffffffffn) {
      throw new LayoutError("LAYOUT_VALUE_OUT_OF_RANGE", `${this.property || "u64"}: ${String(src)} is not a u64 bigint`);
    }
    asBuffer(b).writeBigUInt64LE(src, offset);
    return 8;
  }
}

class S64 extends Layout<bigint> {
  constructor(property?: string) {
    super(8, property);
  }
  override decode(b: Uint8Array, offset = 0): bigint {
    return asBuffer(b).readBigInt64LE(offset);
  }
  override encode(src: bigint, b: Uint8Array, offset = 0): number {
    if (typeof src !== "bigint" || src < -(2n ** 63n) || src >= 2n ** 63n) {
      throw new LayoutError("LAYOUT_VALUE_OUT_OF_RANGE", `${this.property || "s64"}: ${String(src)} is not an s64 bigint`);
    }
    asBuffer(b).writeBigInt64LE(src, offset);
    return 8;
  }
}

/** Fixed-length byte array that decodes to a copy (buffer-layout's Blob returns a view). */
class Bytes extends Layout<Buffer> {
  override decode(b: Uint8Array, offset = 0): Buffer {
    return Buffer.from(b.subarray(offset, offset + this.span));
  }
  override encode(src: Uint8Array, b: Uint8Array, offset = 0): number {
    if (!(src instanceof Uint8Array) || src.length > this.span) {
      throw new LayoutError("LAYOUT_VALUE_OUT_OF_RANGE", `${this.property || "bytes"}: expected at most ${this.span} bytes`);
    }
    b.set(src, offset);
    b.fill(0, offset + src.length, offset + this.span);
    return this.span;
  }
}

/** A field layout of any value type, as the struct builders take them. */
export type AnyLayout = Layout<unknown>;
const any = <T>(l: Layout<T>): AnyLayout => l as unknown as AnyLayout;

export const u8 = (p: string): AnyLayout => any(new UInt(1, p));
export const u16 = (p: string): AnyLayout => any(new UInt(2, p));
export const u32 = (p: string): AnyLayout => any(new UInt(4, p));
export const s32 = (p: string): AnyLayout => any(new Int(4, p));
export const u64 = (p: string): AnyLayout => any(new U64(p));
export const s64 = (p: string): AnyLayout => any(new S64(p));
export const bytes = (n: number, p: string): AnyLayout => any(new Bytes(n, p));
export const array = (l: AnyLayout, n: number, p: string): AnyLayout => any(seq(l, n, p));
/** Unnamed bytes: neither decoded nor written (a fresh encode buffer is zeroed). */
export const pad = (n: number): AnyLayout => any(blob(n));
export const arrayOf = <T>(s: StructLayout<T>, n: number, p: string): AnyLayout => any(seq(s.layout, n, p));
export const nested = <T>(s: StructLayout<T>, p: string): AnyLayout => any(s.layout.replicate(p));

/** A C struct described once: size, offsets, decode and encode. */
export interface StructLayout<T> {
  /** The C type, e.g. `struct kvm_regs`. */
  readonly cType: string;
  readonly size: number;
  readonly layout: Layout<T>;
  /** Byte offset of a field; nested fields by dotted path (`cs.selector`). */
  offsetOf(path: string): number;
  decode(b: Uint8Array, offset?: number): T;
  /** Encode into `b` at `offset`, or into a fresh zeroed Buffer of `size` bytes. */
  encode(value: T, b?: Uint8Array, offset?: number): Buffer;
  /** Every leaf field as [dotted camelCase path, C member designator, offset]. */
  fields(): Array<{ path: string; c: string; offset: number }>;
}

export function camelToSnake(s: string): string {
  return s.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase();
}

export function defineStruct<T>(cType: string, members: AnyLayout[], cNames: Record<string, string> = {}): StructLayout<T> {
  const layout = bl_struct(members as unknown as Layout<never>[]) as unknown as Structure<T>;
  const size = layout.span;
  const cName = (p: string): string => cNames[p] ?? camelToSnake(p);
  const self: StructLayout<T> = {
    cType,
    size,
    layout: layout as unknown as Layout<T>,
    offsetOf(path: string): number {
      let off = 0;
      let cur: Structure<unknown> | undefined = layout as unknown as Structure<unknown>;
      for (const part of path.split(".")) {
        if (cur === undefined) throw new LayoutError("LAYOUT_VALUE_OUT_OF_RANGE", `${cType}: no field ${path}`);
        const o = cur.offsetOf(part);
        if (o === undefined) throw new LayoutError("LAYOUT_VALUE_OUT_OF_RANGE", `${cType}: no field ${path}`);
        off += o;
        const f: Layout<unknown> | undefined = (cur.fields as Layout<unknown>[]).find((x) => x.property === part);
        cur = f !== undefined && "fields" in f ? (f as unknown as Structure<unknown>) : undefined;
      }
      return off;
    },
    decode(b: Uint8Array, offset = 0): T {
      if (offset < 0 || b.length - offset < size) {
        throw new LayoutError("LAYOUT_BUFFER_TOO_SMALL", `${cType} needs ${size} bytes at offset ${offset}, buffer has ${b.length}`);
      }
      return layout.decode(b, offset);
    },
    encode(value: T, b?: Uint8Array, offset = 0): Buffer {
      const out = b ?? Buffer.alloc(size + offset);
      if (offset < 0 || out.length - offset < size) {
        throw new LayoutError("LAYOUT_BUFFER_TOO_SMALL", `${cType} needs ${size} bytes at offset ${offset}, buffer has ${out.length}`);
      }
      try {
        layout.encode(value, out, offset);
      } catch (e) {
        if (e instanceof LayoutError) throw e;
        throw new LayoutError("LAYOUT_VALUE_OUT_OF_RANGE", `${cType}: ${(e as Error).message}`, { cause: e });
      }
      return asBuffer(out);
    },
    fields() {
      const out: Array<{ path: string; c: string; offset: number }> = [];
      const walk = (s: Structure<unknown>, base: number, path: string, c: string): void => {
        let off = 0;
        for (const f of s.fields) {
          if (f.property !== undefined) {
            const p = path ? `${path}.${f.property}` : f.property;
            const cn = c ? `${c}.${cName(f.property)}` : cName(f.property);
            if ("fields" in f) walk(f as unknown as Structure<unknown>, base + off, p, cn);
            else out.push({ path: p, c: cn, offset: base + off });
          }
          off += f.span;
        }
      };
      walk(layout as unknown as Structure<unknown>, 0, "", "");
      return out;
    },
  };
  return self;
}

/** One fact a C compiler can confirm about a layout: `expr` evaluates to `value` in C. */
export interface CLayoutCheck {
  readonly key: string;
  readonly expr: string;
  readonly value: number;
}

/**
 * The size and every leaf field offset of a layout as C expressions (`sizeof`, `offsetof`), for a
 * test that compiles them against the real header. Derived from the layout itself, so a field added
 * to a declaration is checked without anyone listing it again.
 */
export function cLayoutChecks(s: StructLayout<unknown>): CLayoutCheck[] {
  const out: CLayoutCheck[] = [{ key: `sizeof ${s.cType}`, expr: `sizeof(${s.cType})`, value: s.size }];
  for (const f of s.fields()) out.push({ key: `${s.cType}.${f.path}`, expr: `offsetof(${s.cType}, ${f.c})`, value: f.offset });
  return out;
}

/**
 * C sources that print `key<TAB>value` for each check, for a test to build with `cc -o prog values.c main.c`
 * and run. The checks are evaluated in their own translation unit (`values`), which includes only
 * `<stddef.h>` and `includes`, so a header that clashes with `<stdio.h>` (a guest library's own
 * `printf`) can still be checked; `main` prints them.
 */
export function cCheckSources(includes: readonly string[], checks: readonly CLayoutCheck[]): { values: string; main: string } {
  const values = `#include <stddef.h>\n${includes.map((i) => `#include ${i}\n`).join("")}const long long tsvmm_check_values[] = {\n${checks.map((c) => `  (long long)(${c.expr}),`).join("\n")}\n  0\n};\n`;
  const main = `#include <stdio.h>\nextern const long long tsvmm_check_values[];\nstatic const char *const keys[] = {\n${checks.map((c) => `  ${JSON.stringify(c.key)},`).join("\n")}\n};\nint main(void) {\n  for (unsigned i = 0; i < sizeof keys / sizeof keys[0]; i++) printf("%s\\t%lld\\n", keys[i], tsvmm_check_values[i]);\n  return 0;\n}\n`;
  return { values, main };
}
