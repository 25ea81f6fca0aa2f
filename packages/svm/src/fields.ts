import { SvmError } from "./errors.js";
import { VMCB_SAVE_AREA_OFFSET, VmcbLayout } from "./layout.js";

/** One named VMCB field: its dotted path in VmcbLayout, byte offset in the page, and width. */
export interface VmcbField {
  /** `control.guestAsid`, `save.cr0`, `save.cs.attrib`, ... */
  readonly name: string;
  readonly offset: number;
  /** Width in bytes (1, 2, 4, 8; 15 for the instruction bytes, 32 for the host-reserved area). */
  readonly size: number;
  readonly area: "control" | "save";
}

interface LayoutNode {
  property?: string;
  span: number;
  fields?: LayoutNode[];
}

function walk(node: LayoutNode, base: number, prefix: string, out: VmcbField[]): void {
  let off = 0;
  for (const f of node.fields ?? []) {
    if (f.property !== undefined) {
      const name = prefix ? `${prefix}.${f.property}` : f.property;
      if (f.fields) walk(f, base + off, name, out);
      else out.push({ name, offset: base + off, size: f.span, area: base + off < VMCB_SAVE_AREA_OFFSET ? "control" : "save" });
    }
    off += f.span;
  }
}

function deriveFields(): readonly VmcbField[] {
  const out: VmcbField[] = [];
  walk(VmcbLayout.layout as unknown as LayoutNode, 0, "", out);
  return Object.freeze(out.map((f) => Object.freeze(f)));
}

/** Every named field of the VMCB in offset order, derived from VmcbLayout. */
export const VMCB_FIELDS: readonly VmcbField[] = deriveFields();

const BY_NAME = new Map<string, VmcbField>(VMCB_FIELDS.map((f) => [f.name, f]));

export type FieldRef = string | VmcbField;

/** The field of this name, or undefined. */
export function findField(name: string): VmcbField | undefined {
  return BY_NAME.get(name);
}

/** The field of this name; throws SVM_UNKNOWN_FIELD. */
export function field(ref: FieldRef): VmcbField {
  if (typeof ref !== "string") return ref;
  const f = BY_NAME.get(ref);
  if (f === undefined) throw new SvmError("SVM_UNKNOWN_FIELD", `unknown VMCB field ${JSON.stringify(ref)}`);
  return f;
}

/** Largest value a field holds. */
export function fieldMax(f: VmcbField): bigint {
  return (1n << BigInt(f.size * 8)) - 1n;
}
