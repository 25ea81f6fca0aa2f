import { ctrlReg, gpr, mmxReg, type Reg, SEGMENTS, type SegmentName, segReg, vecReg } from "./registers.js";
import {
  D64, F64, I64, LK, MAP_0F, MAP_0F3A, MAP_0F38, MAP1_IMM8, MEMONLY, MMX, MODIGN, O64, type OpDef, op, PRIMARY, REGONLY, 
  type Slot, STR,VEX_MAP2_BMI, VEX_MAP2_EXTRA, VEX_MAP3_EXTRA, W64NAME,
} from "./tables.js";
import type {
  CpuMode, DecodeFailure, DecodeFailureReason, DecodeResult, Encoding, EvexPrefix, Instruction, MemOperand, ModRM, OpcodeMap,
  Operand, Prefixes, RexPrefix, Sib, VexPrefix,
} from "./types.js";

/** The architectural limit: an instruction longer than this raises #GP(0). */
export const MAX_INSN_LENGTH = 15;

class Stop extends Error {
  constructor(
    readonly reason: DecodeFailureReason,
    readonly at: number,
    readonly detail: string,
  ) {
    super(detail);
  }
}

const ADDR16: readonly [number | undefined, number | undefined][] = [
  [3, 6], // bx+si
  [3, 7], // bx+di
  [5, 6], // bp+si
  [5, 7], // bp+di
  [6, undefined], // si
  [7, undefined], // di
  [5, undefined], // bp (disp16 alone when mod=0)
  [3, undefined], // bx
];

const VEX_VVVV_OPS = new Set(["Hx"]);

/** Decoder state for one instruction. */
class Cursor {
  i = 0;
  constructor(
    readonly b: Uint8Array,
    readonly mode: CpuMode,
  ) {}
  need(n: number): void {
    if (this.i + n > MAX_INSN_LENGTH) throw new Stop("too-long", this.i, "instruction longer than 15 bytes");
    if (this.i + n > this.b.length) throw new Stop("truncated", this.i, `needs more than ${this.b.length} bytes`);
  }
  u8(): number {
    this.need(1);
    return this.b[this.i++]!;
  }
  le(n: number): bigint {
    this.need(n);
    let v = 0n;
    for (let k = n - 1; k >= 0; k--) v = (v << 8n) | BigInt(this.b[this.i + k]!);
    this.i += n;
    return v;
  }
}

function signExtend(v: bigint, fromBits: number): bigint {
  return BigInt.asIntN(fromBits, v);
}

function invalid(at: number, detail: string): Stop {
  return new Stop("invalid", at, detail);
}

/**
 * Decode one instruction from `bytes` (at most the first 15 are looked at) in `mode`.
 * Never throws: an encoding no CPU executes gives `{ ok: false, reason: "invalid" }` (#UD), one
 * longer than 15 bytes `too-long` (#GP), and a buffer that ends early `truncated`.
 */
export function decode(bytes: Uint8Array, mode: CpuMode): DecodeResult {
  const c = new Cursor(bytes, mode);
  try {
    return { ok: true, insn: decodeAt(c) };
  } catch (e) {
    if (e instanceof Stop) {
      const f: DecodeFailure = {
        ok: false,
        reason: e.reason,
        vector: e.reason === "invalid" ? 6 : e.reason === "too-long" ? 13 : undefined,
        length: e.at,
        detail: e.detail,
      };
      return f;
    }
    throw e;
  }
}

function defaultBits(mode: CpuMode): 16 | 32 | 64 {
  return mode === "long64" ? 64 : mode === "protected32" ? 32 : 16;
}

function decodeAt(c: Cursor): Instruction {
  const mode = c.mode;
  const is64 = mode === "long64";
  const def = defaultBits(mode);
  const pbytes: number[] = [];
  let lock = false;
  let rep: "rep" | "repne" | undefined;
  let segment: SegmentName | undefined;
  let opsz = false;
  let adsz = false;
  let rexByte: number | undefined;
  for (;;) {
    const b = c.u8();
    let legacy = true;
    switch (b) {
      case 0xf0:
        lock = true;
        break;
      case 0xf2:
        rep = "repne";
        break;
      case 0xf3:
        rep = "rep";
        break;
      case 0x26:
      case 0x2e:
      case 0x36:
      case 0x3e:
        // 64-bit mode ignores ES/CS/SS/DS overrides (AMD calls them null prefixes): an earlier FS/GS stays.
        if (!is64) segment = SEGMENTS[(b >> 3) & 3];
        break;
      case 0x64:
        segment = "fs";
        break;
      case 0x65:
        segment = "gs";
        break;
      case 0x66:
        opsz = true;
        break;
      case 0x67:
        adsz = true;
        break;
      default:
        legacy = false;
    }
    if (legacy) {
      pbytes.push(b);
      // REX only counts when it immediately precedes the opcode.
      rexByte = undefined;
      continue;
    }
    if (is64 && (b & 0xf0) === 0x40) {
      pbytes.push(b);
      rexByte = b;
      continue;
    }
    c.i--;
    break;
  }
  const rex: RexPrefix | undefined =
    rexByte === undefined ? undefined : { w: (rexByte & 8) !== 0, r: (rexByte & 4) !== 0, x: (rexByte & 2) !== 0, b: (rexByte & 1) !== 0 };

  let encoding: Encoding = "legacy";
  let map: OpcodeMap = "primary";
  let vex: VexPrefix | undefined;
  let evex: EvexPrefix | undefined;
  let rW = rex?.w ?? false;
  let rR = rex?.r ?? false;
  let rX = rex?.x ?? false;
  let rB = rex?.b ?? false;
  let mandatory = rep === "rep" ? 2 : rep === "repne" ? 3 : opsz ? 1 : 0;

  let opcode = c.u8();
  const protectedMode = mode === "protected16" || mode === "protected32";
  const nextIsReg = (): boolean => {
    c.need(1);
    return (c.b[c.i]! & 0xc0) === 0xc0;
  };
  if (opcode === 0x0f) {
    const b2 = c.u8();
    if (b2 === 0x38) {
      map = "0f38";
      opcode = c.u8();
    } else if (b2 === 0x3a) {
      map = "0f3a";
      opcode = c.u8();
    } else if (b2 === 0x0f) {
      map = "3dnow";
      opcode = 0x0f;
    } else {
      map = "0f";
      opcode = b2;
    }
  } else if ((opcode === 0xc4 || opcode === 0xc5) && (is64 || ((protectedMode || mode === "real" || mode === "v86") && nextIsReg()))) {
    encoding = "vex";
    const p1 = c.u8();
    let w = false;
    let mmmmm = 1;
    let p2 = p1;
    if (opcode === 0xc4) {
      rX = (p1 & 0x40) === 0;
      rB = (p1 & 0x20) === 0;
      mmmmm = p1 & 0x1f;
      p2 = c.u8();
      w = (p2 & 0x80) !== 0;
    } else {
      rX = false;
      rB = false;
    }
    rR = (p1 & 0x80) === 0;
    if (!is64) {
      rR = false;
      rX = false;
      rB = false;
    }
    rW = w;
    vex = { size: opcode === 0xc4 ? 3 : 2, r: rR, x: rX, b: rB, w, vvvv: (~p2 >> 3) & 15, l: (p2 >> 2) & 1, pp: p2 & 3, mmmmm };
    mandatory = vex.pp;
    opcode = c.u8();
    map = mmmmm === 1 ? "0f" : mmmmm === 2 ? "0f38" : mmmmm === 3 ? "0f3a" : "primary";
    if (map === "primary") {
      // Unknown VEX map: the length past the opcode is unknowable, the CPU raises #UD.
      throw invalid(c.i, `VEX map ${mmmmm} is reserved`);
    }
    if (opsz || rep !== undefined || lock || rex !== undefined) throw invalid(c.i, "VEX after 66/F2/F3/F0/REX");
    if (mode === "real" || mode === "v86") throw invalid(c.i, "VEX in real or virtual-8086 mode");
  } else if (opcode === 0x62 && (is64 || (protectedMode && nextIsReg()))) {
    return decodeEvex(c, mode, pbytes, { lock, rep, segment, opsz, adsz, rex });
  } else if (opcode === 0x8f && mode !== "real" && mode !== "v86") {
    c.need(1);
    if ((c.b[c.i]! & 0x1f) >= 8) return decodeXop(c, mode, pbytes, { lock, rep, segment, opsz, adsz, rex });
  }

  // Resolve the table slot; ModRM is read when a group or an operand needs it.
  let modrm: ModRM | undefined;
  const readModrm = (): ModRM => {
    if (modrm === undefined) {
      const m = c.u8();
      modrm = { mod: m >> 6, reg: (m >> 3) & 7, rm: m & 7 };
    }
    return modrm;
  };
  let slot: Slot;
  if (encoding === "vex") slot = vexSlot(map, opcode, mandatory, rW, vex!.l, readModrm);
  else if (map === "primary") slot = PRIMARY[opcode];
  else if (map === "0f") slot = MAP_0F[opcode];
  else if (map === "0f38") slot = MAP_0F38[opcode];
  else if (map === "0f3a") slot = MAP_0F3A[opcode];
  else slot = MAP_0F[0x0f];
  if (is64 && map === "primary" && (opcode & 0xfc) === 0xa0 && !adsz) slot = { ...(slot as OpDef), mn: "movabs" };
  if (is64 && map === "primary" && opcode === 0x63) slot = op("movsxd", "Gv,Ez");
  if (map === "primary" && opcode === 0x90 && rB) slot = op("xchg", "Zv,rAX");

  let def2: OpDef | undefined;
  let usedMandatory = false;
  for (let guard = 0; guard < 8 && slot !== undefined; guard++) {
    if (slot.kind === "op") {
      def2 = slot;
      break;
    }
    if (slot.kind === "pfx") {
      // A 66 that selects the same definition as no prefix is an operand-size prefix, not a mandatory one.
      usedMandatory = mandatory !== 0 && !(mandatory === 1 && slot.v[1] === slot.v[0]);
      slot = slot.v[mandatory];
    } else if (slot.kind === "w") {
      slot = slot.v[rW ? 1 : 0];
    } else {
      const m = readModrm();
      if (m.mod === 3) {
        const byRm = slot.rm?.[m.reg];
        slot = byRm !== undefined ? byRm[m.rm] : (slot.reg ?? slot.mem)[m.reg];
      } else {
        slot = slot.mem[m.reg];
      }
    }
  }
  if (def2 === undefined) {
    // Still consume the ModRM of maps where every opcode has one, so `length` is as far as known.
    if (map === "0f38" || map === "0f3a" || encoding === "vex") readModrm();
    throw invalid(c.i, `no instruction ${map} ${opcode.toString(16)} here`);
  }
  const d = def2;
  if (encoding === "vex" && d.f & MMX) throw invalid(c.i, "MMX form has no VEX encoding");
  if (is64 && d.f & I64) throw invalid(c.i, `${d.mn} is invalid in 64-bit mode`);
  if (!is64 && d.f & O64) throw invalid(c.i, `${d.mn} is only valid in 64-bit mode`);

  // Operand and address size.
  const opszApplies = !(usedMandatory && mandatory === 1);
  let operandSize: 16 | 32 | 64;
  if (is64) {
    if (rW && encoding !== "vex") operandSize = 64;
    else if (d.f & F64) operandSize = 64;
    else if (d.f & D64) operandSize = opsz && opszApplies ? 16 : 64;
    else operandSize = opsz && opszApplies ? 16 : 32;
  } else {
    operandSize = opsz && opszApplies ? (def === 16 ? 32 : 16) : (def as 16 | 32);
  }
  if (encoding === "vex" && is64 && rW) operandSize = 64;
  const addressSize: 16 | 32 | 64 = is64 ? (adsz ? 32 : 64) : adsz ? (def === 16 ? 32 : 16) : (def as 16 | 32);

  const needsModrm = d.ops.some((s) => "EGMRSCDVWUPQN".includes(s[0]!) && !/^(DX|DS|CS|SS|ES|GS|CL|AL)$/.test(s)) || d.mn === "x87";
  if (needsModrm || modrm !== undefined) readModrm();
  if (modrm !== undefined) {
    if (d.f & MEMONLY && modrm.mod === 3) throw invalid(c.i, `${d.mn} needs a memory operand`);
    if (d.f & REGONLY && modrm.mod !== 3) throw invalid(c.i, `${d.mn} needs a register operand`);
  }

  // SIB and displacement.
  let sib: Sib | undefined;
  let dispOffset = 0;
  let dispSize = 0;
  let mem: MemOperand | undefined;
  const vvvv = vex?.vvvv ?? 0;
  if (modrm !== undefined && modrm.mod !== 3 && !(d.f & MODIGN)) {
    let base: Reg | undefined;
    let index: Reg | undefined;
    let scale: 1 | 2 | 4 | 8 = 1;
    let disp = 0n;
    let rip = false;
    let defSeg: SegmentName = "ds";
    if (addressSize === 16) {
      const [bi, ii] = ADDR16[modrm.rm]!;
      if (modrm.mod === 0 && modrm.rm === 6) {
        dispOffset = c.i;
        dispSize = 2;
        disp = signExtend(c.le(2), 16);
      } else {
        base = gpr(bi!, 16);
        index = ii === undefined ? undefined : gpr(ii, 16);
        if (bi === 5) defSeg = "ss";
        if (modrm.mod === 1) {
          dispOffset = c.i;
          dispSize = 1;
          disp = signExtend(c.le(1), 8);
        } else if (modrm.mod === 2) {
          dispOffset = c.i;
          dispSize = 2;
          disp = signExtend(c.le(2), 16);
        }
      }
    } else {
      const aBits = addressSize;
      let baseNum: number | undefined = modrm.rm | (rB ? 8 : 0);
      if (modrm.rm === 4) {
        const s = c.u8();
        sib = { scale: s >> 6, index: (s >> 3) & 7, base: s & 7 };
        const idx = sib.index | (rX ? 8 : 0);
        if (idx !== 4) {
          index = gpr(idx, aBits);
          scale = (1 << sib.scale) as 1 | 2 | 4 | 8;
        }
        baseNum = sib.base | (rB ? 8 : 0);
        if (sib.base === 5 && modrm.mod === 0) baseNum = undefined;
      } else if (modrm.rm === 5 && modrm.mod === 0) {
        baseNum = undefined;
        if (is64) rip = true;
      }
      if (baseNum !== undefined) {
        base = gpr(baseNum, aBits);
        if (baseNum === 4 || baseNum === 5) defSeg = "ss";
      }
      const dsz = modrm.mod === 1 ? 1 : modrm.mod === 2 || baseNum === undefined ? 4 : 0;
      if (dsz > 0) {
        dispOffset = c.i;
        dispSize = dsz;
        disp = signExtend(c.le(dsz), dsz * 8);
      }
    }
    mem = {
      kind: "mem",
      bits: 0,
      segment: segment ?? defSeg,
      base,
      index,
      scale,
      disp,
      ripRelative: rip,
      addressBits: addressSize,
      absolute: false,
    };
  }

  // Operands and immediates, in operand order.
  const operands: Operand[] = [];
  let immOffset = 0;
  let immSize = 0;
  const rexAny = rex !== undefined;
  const vecBits = (): 128 | 256 => (vex !== undefined && vex.l === 1 ? 256 : 128);
  const size = (s: string): number => {
    switch (s) {
      case "b":
        return 8;
      case "w":
        return 16;
      case "d":
        return 32;
      case "q":
        return 64;
      case "dq":
        return 128;
      case "v":
        return operandSize;
      case "z":
        return operandSize === 16 ? 16 : 32;
      case "y":
        return is64 && (rW || d.f & F64) ? 64 : 32;
      case "x":
        return vecBits();
      case "p":
        return operandSize + 16;
      case "s":
        return is64 ? 80 : 48;
      default:
        return 0;
    }
  };
  const imm = (bytesN: number, bits: number, signed: boolean, relative = false): void => {
    if (immSize === 0) {
      immOffset = c.i;
      immSize = bytesN;
    }
    let v = c.le(bytesN);
    if (signed) v = BigInt.asUintN(bits, signExtend(v, bytesN * 8));
    operands.push({ kind: "imm", value: relative ? signExtend(v, bytesN * 8) : v, bits, relative });
  };
  const m = modrm;
  const regField = m === undefined ? 0 : m.reg | (rR ? 8 : 0);
  const rmField = m === undefined ? 0 : m.rm | (rB ? 8 : 0);
  const memOrReg = (bits: number, asReg: () => Reg): Operand => {
    if (m !== undefined && (m.mod === 3 || d.f & MODIGN)) return { kind: "reg", reg: asReg() };
    return { ...(mem as MemOperand), bits };
  };
  for (const s of d.ops) {
    const k = s[0]!;
    const sz = s.slice(1);
    switch (s) {
      case "AL":
        operands.push({ kind: "reg", reg: gpr(0, 8) });
        continue;
      case "CL":
        operands.push({ kind: "reg", reg: gpr(1, 8) });
        continue;
      case "DX":
        operands.push({ kind: "reg", reg: gpr(2, 16) });
        continue;
      case "rAX":
        operands.push({ kind: "reg", reg: gpr(0, operandSize) });
        continue;
      case "eAX":
        operands.push({ kind: "reg", reg: gpr(0, operandSize === 16 ? 16 : 32) });
        continue;
      case "I1":
        operands.push({ kind: "imm", value: 1n, bits: 8, relative: false });
        continue;
      case "ES":
      case "CS":
      case "SS":
      case "DS":
      case "FS":
      case "GS":
        operands.push({ kind: "reg", reg: segReg(SEGMENTS.indexOf(s.toLowerCase() as SegmentName)) });
        continue;
      case "Ibs":
        imm(1, operandSize, true);
        continue;
    }
    switch (k) {
      case "E":
        if (sz === "vw") operands.push(memOrReg(16, () => gpr(rmField, operandSize, rexAny)));
        else operands.push(memOrReg(size(sz), () => gpr(rmField, size(sz), rexAny)));
        break;
      case "M":
        operands.push(memOrReg(size(sz), () => ({ name: `st(${m!.rm})`, cls: "st", index: m!.rm, bits: 80 })));
        break;
      case "R":
        operands.push({ kind: "reg", reg: gpr(rmField, size(sz), rexAny) });
        break;
      case "G":
        operands.push({ kind: "reg", reg: gpr(regField, size(sz), rexAny) });
        break;
      case "S":
        // Only six segment registers exist; MOV to CS is #UD.
        if (m!.reg > 5 || (opcode === 0x8e && m!.reg === 1)) throw invalid(c.i, "no such segment register destination");
        operands.push({ kind: "reg", reg: segReg(m!.reg) });
        break;
      case "C":
        operands.push({ kind: "reg", reg: ctrlReg("cr", regField, size(sz)) });
        break;
      case "D":
        operands.push({ kind: "reg", reg: ctrlReg("dr", regField, size(sz)) });
        break;
      case "V":
        operands.push({ kind: "reg", reg: vecReg(regField, vecBits()) });
        break;
      case "H":
        if (vex !== undefined && VEX_VVVV_OPS.has(s)) operands.push({ kind: "reg", reg: vecReg(vvvv, vecBits()) });
        break;
      case "W":
        operands.push(memOrReg(size(sz), () => vecReg(rmField, vecBits())));
        break;
      case "U":
        operands.push({ kind: "reg", reg: vecReg(rmField, vecBits()) });
        break;
      case "P":
        operands.push({ kind: "reg", reg: mmxReg(m!.reg) });
        break;
      case "Q":
        operands.push(memOrReg(64, () => mmxReg(m!.rm)));
        break;
      case "N":
        operands.push({ kind: "reg", reg: mmxReg(m!.rm) });
        break;
      case "Z":
        operands.push({ kind: "reg", reg: gpr((opcode & 7) | (rB ? 8 : 0), size(sz), rexAny) });
        break;
      case "I":
        if (sz === "b") imm(1, 8, false);
        else if (sz === "w") imm(2, 16, false);
        else if (sz === "z") imm(operandSize === 16 ? 2 : 4, operandSize, true);
        else imm(operandSize / 8, operandSize, false);
        break;
      case "J":
        if (sz === "b") imm(1, 8, false, true);
        // F64 branches are 64-bit in long mode whatever 66 says, so a 16-bit operand size means rel16.
        else imm(operandSize === 16 ? 2 : 4, 32, false, true);
        break;
      case "O": {
        const n = addressSize / 8;
        dispOffset = c.i;
        dispSize = n;
        const off = c.le(n);
        operands.push({
          kind: "mem",
          bits: size(sz),
          segment: segment ?? "ds",
          base: undefined,
          index: undefined,
          scale: 1,
          disp: off,
          ripRelative: false,
          addressBits: addressSize,
          absolute: true,
        });
        break;
      }
      case "A": {
        const offBytes = operandSize === 16 ? 2 : 4;
        immOffset = c.i;
        immSize = offBytes + 2;
        const offset = Number(c.le(offBytes));
        const selector = Number(c.le(2));
        operands.push({ kind: "far", selector, offset });
        break;
      }
      case "X":
      case "Y": {
        const bits = size(sz);
        const idx = k === "X" ? 6 : 7;
        operands.push({
          kind: "mem",
          bits,
          segment: k === "X" ? (segment ?? "ds") : "es",
          base: gpr(idx, addressSize),
          index: undefined,
          scale: 1,
          disp: 0n,
          ripRelative: false,
          addressBits: addressSize,
          absolute: false,
        });
        break;
      }
      default:
        throw new Error(`x86 tables: unknown operand spec ${s}`);
    }
  }
  if (map === "3dnow") {
    // 3DNow!: the opcode byte comes after the ModRM/SIB/displacement, in the place of an immediate.
    const suffix = operands.pop();
    opcode = suffix?.kind === "imm" ? Number(suffix.value) : 0;
  }
  // VEX map 0F3A rows from VEX_MAP3_EXTRA and rorx carry no Ib in their operand list; every map 0F row
  // in MAP1_IMM8 (pshufd, the shift groups, cmpps, pinsrw, pextrw, shufps) has its Ib already.
  if (encoding === "vex" && map === "0f3a" && immSize === 0) imm(1, 8, false);

  if (lock && (!(d.f & LK) || modrm === undefined || modrm.mod === 3)) throw invalid(c.i, `LOCK is not allowed on ${d.mn} with these operands`);

  let mnemonic = d.mn;
  if (d.f & W64NAME && rW) mnemonic += "64";
  if (d.f & STR && !mnemonic.endsWith("b")) mnemonic += operandSize === 16 ? "w" : operandSize === 32 ? "d" : "q";
  if (map === "primary") {
    if (opcode === 0x98) mnemonic = operandSize === 16 ? "cbw" : operandSize === 32 ? "cwde" : "cdqe";
    else if (opcode === 0x99) mnemonic = operandSize === 16 ? "cwd" : operandSize === 32 ? "cdq" : "cqo";
  }
  // The BMI opcodes of map 0F38 keep their names; map 0F's F2-F7 (vpslld, vpsllq, ...) do not.
  if (encoding === "vex") mnemonic = mnemonic.startsWith("v") || (map === "0f38" && VEX_MAP2_BMI[opcode] !== undefined) || mnemonic === "rorx" ? mnemonic : `v${mnemonic}`;

  const prefixes: Prefixes = { bytes: pbytes, lock, rep, segment, operandSize: opsz, addressSize: adsz, rex, vex, evex };
  return {
    mode,
    length: c.i,
    bytes: c.b.slice(0, c.i),
    prefixes,
    encoding,
    map,
    opcode,
    modrm,
    sib,
    mnemonic,
    operands,
    operandSize,
    addressSize,
    dispOffset,
    dispSize,
    immOffset,
    immSize,
  };
}

const KMASK_MAP1 = new Set([0x41, 0x42, 0x44, 0x45, 0x46, 0x47, 0x4a, 0x4b, 0x90, 0x91, 0x92, 0x93, 0x98, 0x99]);

/** The table slot of a VEX-encoded opcode (pp is the mandatory prefix), or undefined (#UD). */
function vexSlot(map: OpcodeMap, opcode: number, pp: number, w: boolean, l: number, readModrm: () => ModRM): Slot {
  if (map === "0f") {
    if (opcode === 0x77) return pp === 0 ? op(l === 1 ? "vzeroall" : "vzeroupper") : undefined;
    if (opcode === 0xae) {
      const m = readModrm();
      if (pp !== 0 || m.mod === 3) return undefined;
      return m.reg === 2 ? op("vldmxcsr", "Md") : m.reg === 3 ? op("vstmxcsr", "Md") : undefined;
    }
    if (KMASK_MAP1.has(opcode)) return op("kmask", "Gd,Ed");
    const o = opcode;
    const ok =
      (o >= 0x10 && o <= 0x17) || (o >= 0x28 && o <= 0x2f) || (o >= 0x50 && o <= 0x7f && o !== 0x78 && o !== 0x79) || o === 0xc2 || (o >= 0xc4 && o <= 0xc6) || o >= 0xd0;
    if (!ok) return undefined;
    const base = MAP_0F[o];
    return base;
  }
  if (map === "0f38") {
    const bmi = VEX_MAP2_BMI[opcode];
    if (bmi !== undefined) {
      if (opcode === 0xf3) {
        const m = readModrm();
        if (pp !== 0) return undefined;
        const n = [undefined, "blsr", "blsmsk", "blsi"][m.reg];
        // Group 17: ModRM.reg is the opcode extension, not an operand; the destination is VEX.vvvv (not modelled).
        return n === undefined ? undefined : op(n, "Ey");
      }
      const n = bmi[pp];
      return n === "" || n === undefined ? undefined : op(n, "Gy,Ey");
    }
    // AMX tile instructions (ldtilecfg/sttilecfg/tilerelease/tilezero, tileloadd, tdp*): every pp has one.
    if ([0x49, 0x4b, 0x5c, 0x5d, 0x5e, 0x5f, 0x6c].includes(opcode)) return op("amx", "Vx,Wx");
    if (pp !== 1) return undefined;
    const extra = VEX_MAP2_EXTRA[opcode];
    if (extra !== undefined) return op(w && opcode >= 0x96 ? extra.replace(/ps$/, "pd").replace(/ss$/, "sd") : extra, "Vx,Wx");
    const base = MAP_0F38[opcode];
    if (opcode >= 0x80 && opcode <= 0x82) return undefined;
    if (opcode >= 0xf0) return undefined;
    return base;
  }
  if (map === "0f3a") {
    if (opcode === 0xf0) return pp === 3 ? op("rorx", "Gy,Ey") : undefined;
    if (pp !== 1) return undefined;
    const extra = VEX_MAP3_EXTRA[opcode];
    if (extra !== undefined) return op(extra, "Vx,Wx");
    return MAP_0F3A[opcode];
  }
  return undefined;
}

interface LegacyState {
  lock: boolean;
  rep: "rep" | "repne" | undefined;
  segment: SegmentName | undefined;
  opsz: boolean;
  adsz: boolean;
  rex: RexPrefix | undefined;
}

/** Skip ModRM/SIB/displacement for the VEX-like encodings whose operands are not modelled. */
function skipModrm(c: Cursor, addressSize: 16 | 32 | 64): { modrm: ModRM; sib: Sib | undefined; dispOffset: number; dispSize: number } {
  const b = c.u8();
  const modrm = { mod: b >> 6, reg: (b >> 3) & 7, rm: b & 7 };
  let sib: Sib | undefined;
  let dispSize = 0;
  if (modrm.mod !== 3) {
    if (addressSize === 16) {
      dispSize = modrm.mod === 1 ? 1 : modrm.mod === 2 || (modrm.mod === 0 && modrm.rm === 6) ? 2 : 0;
    } else {
      let noBase = modrm.mod === 0 && modrm.rm === 5;
      if (modrm.rm === 4) {
        const s = c.u8();
        sib = { scale: s >> 6, index: (s >> 3) & 7, base: s & 7 };
        noBase = modrm.mod === 0 && sib.base === 5;
      }
      dispSize = modrm.mod === 1 ? 1 : modrm.mod === 2 || noBase ? 4 : 0;
    }
  }
  const dispOffset = c.i;
  c.le(dispSize);
  return { modrm, sib, dispOffset: dispSize ? dispOffset : 0, dispSize };
}

function addrSize(mode: CpuMode, adsz: boolean): 16 | 32 | 64 {
  const def = defaultBits(mode);
  return def === 64 ? (adsz ? 32 : 64) : adsz ? (def === 16 ? 32 : 16) : def;
}

function decodeEvex(c: Cursor, mode: CpuMode, pbytes: number[], s: LegacyState): Instruction {
  const p0 = c.u8();
  const p1 = c.u8();
  const p2 = c.u8();
  const map = p0 & 7;
  const evex: EvexPrefix = {
    map,
    w: (p1 & 0x80) !== 0,
    vvvv: (~p1 >> 3) & 15,
    pp: p1 & 3,
    ll: (p2 >> 5) & 3,
    z: (p2 & 0x80) !== 0,
    b: (p2 & 0x10) !== 0,
    aaa: p2 & 7,
  };
  const opcode = c.u8();
  if ((p1 & 4) === 0) throw invalid(c.i, "EVEX P1 bit 2 must be 1");
  if (![1, 2, 3, 5, 6].includes(map)) throw invalid(c.i, `EVEX map ${map} is reserved`);
  if (s.opsz || s.rep !== undefined || s.lock || s.rex !== undefined) throw invalid(c.i, "EVEX after 66/F2/F3/F0/REX");
  const addressSize = addrSize(mode, s.adsz);
  const { modrm, sib, dispOffset, dispSize } = skipModrm(c, addressSize);
  let immOffset = 0;
  let immSize = 0;
  if (map === 3 || (map === 1 && MAP1_IMM8.has(opcode))) {
    immOffset = c.i;
    immSize = 1;
    c.le(1);
  }
  const mapName: OpcodeMap = map === 1 ? "0f" : map === 2 ? "0f38" : map === 3 ? "0f3a" : map === 5 ? "map5" : "map6";
  return {
    mode,
    length: c.i,
    bytes: c.b.slice(0, c.i),
    prefixes: { bytes: pbytes, lock: s.lock, rep: s.rep, segment: s.segment, operandSize: s.opsz, addressSize: s.adsz, rex: s.rex, vex: undefined, evex },
    encoding: "evex",
    map: mapName,
    opcode,
    modrm,
    sib,
    mnemonic: "evex",
    operands: [],
    operandSize: 32,
    addressSize,
    dispOffset,
    dispSize,
    immOffset,
    immSize,
  };
}

function decodeXop(c: Cursor, mode: CpuMode, pbytes: number[], s: LegacyState): Instruction {
  const p1 = c.u8();
  const p2 = c.u8();
  const mmmmm = p1 & 0x1f;
  const opcode = c.u8();
  if (mmmmm < 8 || mmmmm > 10) throw invalid(c.i, `XOP map ${mmmmm} is reserved`);
  if (s.opsz || s.rep !== undefined || s.lock || s.rex !== undefined) throw invalid(c.i, "XOP after 66/F2/F3/F0/REX");
  const addressSize = addrSize(mode, s.adsz);
  const { modrm, sib, dispOffset, dispSize } = skipModrm(c, addressSize);
  const immSize = mmmmm === 8 ? 1 : mmmmm === 10 ? 4 : 0;
  const immOffset = immSize ? c.i : 0;
  c.le(immSize);
  const is64 = mode === "long64";
  const vex: VexPrefix = {
    size: 3,
    r: is64 && (p1 & 0x80) === 0,
    x: is64 && (p1 & 0x40) === 0,
    b: is64 && (p1 & 0x20) === 0,
    w: (p2 & 0x80) !== 0,
    vvvv: (~p2 >> 3) & 15,
    l: (p2 >> 2) & 1,
    pp: p2 & 3,
    mmmmm,
  };
  return {
    mode,
    length: c.i,
    bytes: c.b.slice(0, c.i),
    prefixes: { bytes: pbytes, lock: s.lock, rep: s.rep, segment: s.segment, operandSize: s.opsz, addressSize: s.adsz, rex: s.rex, vex, evex: undefined },
    encoding: "xop",
    map: mmmmm === 8 ? "xop8" : mmmmm === 9 ? "xop9" : "xopa",
    opcode,
    modrm,
    sib,
    mnemonic: "xop",
    operands: [],
    operandSize: 32,
    addressSize,
    dispOffset,
    dispSize,
    immOffset,
    immSize,
  };
}
