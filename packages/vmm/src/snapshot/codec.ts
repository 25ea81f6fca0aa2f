import { SnapshotError } from "./errors.js";

/**
 * The state file is JSON; KVM's structs carry 64-bit values and byte arrays, which JSON has no
 * type for. They are written as one-key objects: `{"$u64":"0x…"}` for a bigint, `{"$hex":"…"}`
 * for bytes. Nothing else is tagged, so a reader sees plain field names and numbers.
 */
export type Encoded = null | boolean | number | string | Encoded[] | { [key: string]: Encoded };

export function encodeValue(v: unknown, path = "state"): Encoded {
  if (v === null || typeof v === "boolean" || typeof v === "string") return v;
  if (typeof v === "number") {
    if (!Number.isFinite(v)) throw new SnapshotError("SNAPSHOT_BAD_STATE", `${path}: ${v} cannot be saved`);
    return v;
  }
  if (typeof v === "bigint") return { $u64: `0x${BigInt.asUintN(64, v).toString(16)}`, ...(v < 0n ? { neg: true } : {}) };
  if (v instanceof Uint8Array) return { $hex: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("hex") };
  if (Array.isArray(v)) return v.map((x, i) => encodeValue(x, `${path}[${i}]`));
  if (typeof v === "object") {
    const out: { [key: string]: Encoded } = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      if (x === undefined) continue;
      if (typeof x === "function") throw new SnapshotError("SNAPSHOT_BAD_STATE", `${path}.${k}: a function cannot be saved`);
      out[k] = encodeValue(x, `${path}.${k}`);
    }
    return out;
  }
  throw new SnapshotError("SNAPSHOT_BAD_STATE", `${path}: a ${typeof v} cannot be saved`);
}

export function decodeValue(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(decodeValue);
  if (typeof v !== "object" || v === null) return v;
  const o = v as Record<string, unknown>;
  if (typeof o.$u64 === "string" && /^0x[0-9a-f]{1,16}$/.test(o.$u64)) {
    const u = BigInt(o.$u64);
    return o.neg === true ? BigInt.asIntN(64, u) : u;
  }
  if (typeof o.$hex === "string" && Object.keys(o).length === 1) return Buffer.from(o.$hex, "hex");
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(o)) out[k] = decodeValue(x);
  return out;
}

/** True when `v` holds only what encodeValue can write: no functions, class instances other than byte arrays. */
export function isPlainData(v: unknown, depth = 0): boolean {
  if (depth > 32) return false;
  if (v === null || v === undefined || typeof v === "boolean" || typeof v === "string" || typeof v === "bigint") return true;
  if (typeof v === "number") return Number.isFinite(v);
  if (v instanceof Uint8Array) return true;
  if (Array.isArray(v)) return v.every((x) => isPlainData(x, depth + 1));
  if (typeof v === "object") {
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) return false;
    return Object.values(v as Record<string, unknown>).every((x) => isPlainData(x, depth + 1));
  }
  return false;
}
