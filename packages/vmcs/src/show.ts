/**
 * A value from an untrusted input, shown in an error message. JSON.stringify throws on a bigint
 * and a template literal throws on a symbol: an error message must never be the thing that fails.
 */
export function show(v: unknown): string {
  if (typeof v === "bigint") return `${v}n`;
  if (typeof v === "symbol" || typeof v === "function") return String(v.toString());
  if (v === undefined) return "undefined";
  try {
    const s = JSON.stringify(v, (_k, x: unknown) => (typeof x === "bigint" ? `${x}n` : typeof x === "symbol" ? x.toString() : x));
    if (s === undefined) return typeof v;
    return s.length > 80 ? `${s.slice(0, 77)}...` : s;
  } catch {
    return typeof v;
  }
}
