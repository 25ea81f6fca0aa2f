import type { ImmOperand, Instruction, MemOperand, Operand } from "./types.js";

const VECTOR_CLASSES = new Set(["xmm", "ymm"]);

function sizeWord(bits: number, vector: boolean): string {
  switch (bits) {
    case 8:
      return "BYTE PTR ";
    case 16:
      return "WORD PTR ";
    case 32:
      return "DWORD PTR ";
    case 48:
      return "FWORD PTR ";
    case 64:
      return "QWORD PTR ";
    case 80:
      return "TBYTE PTR ";
    case 128:
      return vector ? "XMMWORD PTR " : "OWORD PTR ";
    case 256:
      return "YMMWORD PTR ";
    default:
      return "";
  }
}

function hexSigned(v: bigint): string {
  return v < 0n ? `-0x${(-v).toString(16)}` : `+0x${v.toString(16)}`;
}

function formatMem(m: MemOperand, insn: Instruction, vector: boolean): string {
  const seg = m.segment;
  if (m.absolute) {
    const mask = (1n << BigInt(m.addressBits)) - 1n;
    return `${seg}:0x${(m.disp & mask).toString(16)}`;
  }
  const size = sizeWord(m.bits, vector);
  const sib = insn.sib;
  const regName = m.addressBits === 64 ? "riz" : "eiz";
  // A SIB whose index field says "none" still shows as riz/eiz in objdump unless it is the plain [rsp] form.
  const riz = sib !== undefined && m.index === undefined && sib.index === 4 && !insn.prefixes.rex?.x && !insn.prefixes.vex?.x && (sib.scale !== 0 || (m.base !== undefined && sib.base !== 4) || (m.base === undefined && insn.mode !== "long64"));
  if (m.base === undefined && m.index === undefined && !m.ripRelative && !riz) {
    const mask = (1n << BigInt(m.addressBits)) - 1n;
    return `${size}${seg}:0x${(m.disp & mask).toString(16)}`;
  }
  // objdump names the segment when a prefix overrides it, and always for string operands.
  const stringOp = insn.modrm === undefined && m.base !== undefined;
  const segText = insn.prefixes.segment !== undefined || stringOp ? `${seg}:` : "";
  let inner = m.ripRelative ? (m.addressBits === 32 ? "eip" : "rip") : (m.base?.name ?? "");
  if (m.index !== undefined) inner += `${inner === "" ? "" : "+"}${m.index.name}${m.addressBits === 16 ? "" : `*${m.scale}`}`;
  else if (riz) inner += `${inner === "" ? "" : "+"}${regName}*${1 << sib.scale}`;
  if (m.ripRelative) inner += `+0x${BigInt.asUintN(64, m.disp).toString(16)}`;
  else if (insn.dispSize > 0) inner += hexSigned(m.disp);
  return `${size}${segText}[${inner}]`;
}

function formatImm(o: ImmOperand, insn: Instruction): string {
  if (o.relative) {
    const next = BigInt(insn.length);
    const t = BigInt.asUintN(insn.mode === "long64" ? 64 : 32, next + o.value);
    return `0x${t.toString(16)}`;
  }
  return `0x${o.value.toString(16)}`;
}

/** One operand in the Intel syntax GNU objdump prints (`-M intel`). */
export function formatOperand(o: Operand, insn: Instruction): string {
  const vector = insn.operands.some((x) => x.kind === "reg" && VECTOR_CLASSES.has(x.reg.cls));
  switch (o.kind) {
    case "reg":
      return o.reg.name;
    case "mem":
      return formatMem(o, insn, vector);
    case "imm":
      if (o.value === 1n && !o.relative && insn.immSize === 0) return "1";
      return formatImm(o, insn);
    case "far":
      return `0x${o.selector.toString(16)}:0x${o.offset.toString(16)}`;
  }
}

/**
 * Intel-syntax text of an instruction, in the form GNU objdump prints it (`mnemonic op1,op2`),
 * for display and for comparing the decoder with objdump. Relative branch targets are shown as
 * offsets from the instruction's own start (address 0).
 */
export function formatIntel(insn: Instruction): string {
  const ops = insn.operands.map((o) => formatOperand(o, insn)).join(",");
  return ops === "" ? insn.mnemonic : `${insn.mnemonic} ${ops}`;
}
