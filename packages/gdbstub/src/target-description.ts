import { FEATURE_CONTROL, FEATURE_CORE, FEATURE_SEGMENTS, FEATURE_SSE, type GdbArchitecture, registerLayout } from "./registers.js";

type Field = readonly [name: string, bit: number];

// Bit positions from the SDM (EFLAGS: Vol. 1 3.4.3; MXCSR: Vol. 1 10.2.3; CR0/CR4: Vol. 3A 2.5;
// EFER: Vol. 3A 2.2.1). gdb prints a flags-typed register as [ ZF PF ... ].
const EFLAGS: Field[] = [
  ["CF", 0], ["PF", 2], ["AF", 4], ["ZF", 6], ["SF", 7], ["TF", 8], ["IF", 9], ["DF", 10], ["OF", 11],
  ["NT", 14], ["RF", 16], ["VM", 17], ["AC", 18], ["VIF", 19], ["VIP", 20], ["ID", 21],
];
const MXCSR: Field[] = [
  ["IE", 0], ["DE", 1], ["ZE", 2], ["OE", 3], ["UE", 4], ["PE", 5], ["DAZ", 6], ["IM", 7], ["DM", 8],
  ["ZM", 9], ["OM", 10], ["UM", 11], ["PM", 12], ["FZ", 15],
];
const CR0: Field[] = [["PE", 0], ["MP", 1], ["EM", 2], ["TS", 3], ["ET", 4], ["NE", 5], ["WP", 16], ["AM", 18], ["NW", 29], ["CD", 30], ["PG", 31]];
const CR4: Field[] = [
  ["VME", 0], ["PVI", 1], ["TSD", 2], ["DE", 3], ["PSE", 4], ["PAE", 5], ["MCE", 6], ["PGE", 7], ["PCE", 8],
  ["OSFXSR", 9], ["OSXMMEXCPT", 10], ["UMIP", 11], ["LA57", 12], ["VMXE", 13], ["SMXE", 14], ["FSGSBASE", 16],
  ["PCIDE", 17], ["OSXSAVE", 18], ["SMEP", 20], ["SMAP", 21], ["PKE", 22],
];
const EFER: Field[] = [["SCE", 0], ["LME", 8], ["LMA", 10], ["NXE", 11], ["SVME", 12], ["LMSLE", 13], ["FFXSR", 14], ["TCE", 15]];

function flags(id: string, size: number, fields: readonly Field[]): string {
  const f = fields.map(([n, b]) => `    <field name="${n}" start="${b}" end="${b}"/>`).join("\n");
  return `  <flags id="${id}" size="${size}">\n${f}\n  </flags>\n`;
}

const VEC128 = `  <vector id="v8bf16" type="bfloat16" count="8"/>
  <vector id="v4f" type="ieee_single" count="4"/>
  <vector id="v2d" type="ieee_double" count="2"/>
  <vector id="v16i8" type="int8" count="16"/>
  <vector id="v8i16" type="int16" count="8"/>
  <vector id="v4i32" type="int32" count="4"/>
  <vector id="v2i64" type="int64" count="2"/>
  <union id="vec128">
    <field name="v8_bfloat16" type="v8bf16"/>
    <field name="v4_float" type="v4f"/>
    <field name="v2_double" type="v2d"/>
    <field name="v16_int8" type="v16i8"/>
    <field name="v8_int16" type="v8i16"/>
    <field name="v4_int32" type="v4i32"/>
    <field name="v2_int64" type="v2i64"/>
    <field name="uint128" type="uint128"/>
  </union>
`;

/**
 * The target description gdb reads with qXfer:features:read:target.xml. One self-contained
 * document (no xi:include) so gdb needs one transfer. Registers carry explicit regnums from
 * {@link registerLayout}, so the XML and the g-packet encoder cannot disagree.
 */
export function targetDescriptionXml(architecture: GdbArchitecture): string {
  const layout = registerLayout(architecture);
  const wide = architecture === "i386:x86-64";
  const types: Record<string, string> = {
    [FEATURE_CORE]: flags("i386_eflags", 4, EFLAGS),
    [FEATURE_SSE]: VEC128 + flags("i386_mxcsr", 4, MXCSR),
    [FEATURE_SEGMENTS]: "",
    [FEATURE_CONTROL]: flags("x86_cr0", wide ? 8 : 4, CR0) + flags("x86_cr4", wide ? 8 : 4, CR4) + flags("x86_efer", 8, EFER),
  };
  let xml = `<?xml version="1.0"?>\n<!DOCTYPE target SYSTEM "gdb-target.dtd">\n<target version="1.0">\n<architecture>${architecture}</architecture>\n`;
  for (const feature of [FEATURE_CORE, FEATURE_SSE, FEATURE_SEGMENTS, FEATURE_CONTROL]) {
    const regs = layout.registers.filter((x) => x.feature === feature);
    if (regs.length === 0) continue;
    xml += `<feature name="${feature}">\n${types[feature]}`;
    for (const r of regs) {
      const group = r.group ? ` group="${r.group}"` : "";
      xml += `  <reg name="${r.name}" bitsize="${r.bits}" type="${r.type}" regnum="${r.regnum}"${group}/>\n`;
    }
    xml += "</feature>\n";
  }
  return `${xml}</target>\n`;
}
