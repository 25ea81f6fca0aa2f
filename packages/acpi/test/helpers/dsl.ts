/** The `Label : value` lines of a data-table disassembly, in order (labels repeat per subtable). */
export function dslFields(dsl: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const line of dsl.split("\n")) {
    const m = /^(?:\[[0-9A-F]+h \d+ +\d+\])?\s+([^:[\]]+?)\s+:\s+(.*?)\s*$/.exec(line);
    if (m !== null && !line.startsWith(" *") && !/^\s+[0-9A-F]{4}: /.test(line)) out.push([m[1]!, m[2]!]);
  }
  return out;
}

/** Values of every line with this label. */
export function dslValues(dsl: string, label: string): string[] {
  return dslFields(dsl)
    .filter(([l]) => l === label)
    .map(([, v]) => v);
}

/** The single value of a label (throws when absent or repeated). */
export function dslValue(dsl: string, label: string): string {
  const v = dslValues(dsl, label);
  if (v.length !== 1) throw new Error(`${label}: ${v.length} lines in the disassembly`);
  return v[0]!;
}

/** The text of `Device (NAME) { ... }` in an ASL disassembly, braces balanced. */
export function aslBlock(asl: string, header: string): string {
  const start = asl.indexOf(header);
  if (start < 0) throw new Error(`${header} not in the disassembly`);
  let depth = 0;
  for (let i = asl.indexOf("{", start); i < asl.length; i++) {
    if (asl[i] === "{") depth++;
    else if (asl[i] === "}" && --depth === 0) return asl.slice(start, i + 1);
  }
  throw new Error(`${header}: unbalanced braces`);
}

/** Collapse whitespace so ASL can be compared regardless of the disassembler's layout. */
export function squash(s: string): string {
  return s
    .replace(/\/\/[^\n]*/g, "")
    .replace(/\/\*.*?\*\//g, "")
    .replace(/\s+/g, " ")
    .replace(/ ([),])/g, "$1")
    .trim();
}
