/**
 * Opcode tables in the SDM's operand notation (vol. 2 appendix A). One table drives both the
 * length (ModRM presence and immediates follow from the operand specs) and the operands, so the
 * two cannot disagree.
 *
 * Operand specs: E/G/M/R (ModRM rm/reg as GPR or memory), V/W/U/H (XMM/YMM reg/rm/rm-register/VEX.vvvv),
 * P/Q/N (MMX), S (segment in reg), C/D (control/debug register in reg), I (immediate), J (relative),
 * O (moffs), A (far pointer), X/Y (string source DS:rSI / destination ES:rDI), Z (register in the
 * opcode's low 3 bits), fixed registers (AL, CL, DX, rAX, eAX), I1 (the constant 1).
 * Size suffixes: b w d q dq; v (operand size), z (16 or 32), y (32, or 64 with REX.W), x (128 or 256 by VEX.L),
 * p (far pointer), s (descriptor-table pseudo descriptor), none (no size).
 */

/** Invalid in 64-bit mode. */
export const I64 = 1;
/** Only valid in 64-bit mode. */
export const O64 = 2;
/** Operand size defaults to 64 in 64-bit mode (66 selects 16). */
export const D64 = 4;
/** Operand size is 64 in 64-bit mode whatever the prefixes (Intel 64 semantics). */
export const F64 = 8;
/** LOCK allowed (with a memory destination). */
export const LK = 16;
/** MMX form: has no VEX encoding. */
export const MMX = 32;
/** ModRM must select memory (mod != 3), else #UD. */
export const MEMONLY = 64;
/** ModRM must select a register (mod == 3), else #UD. */
export const REGONLY = 128;
/** REP/REPNE select a string repeat (string instructions). */
export const STR = 256;
/** REX.W renames the instruction: mnemonic gets "64" (fxsave64, xsave64, ...). */
export const W64NAME = 512;
/** MOV to/from CR/DR: ModRM.mod is ignored and always means a register. */
export const MODIGN = 1024;

export interface OpDef {
  readonly kind: "op";
  readonly mn: string;
  readonly ops: readonly string[];
  readonly f: number;
}

export interface GroupDef {
  readonly kind: "group";
  /** By ModRM.reg when mod != 3. */
  readonly mem: readonly Slot[];
  /** By ModRM.reg when mod == 3 (defaults to `mem`). */
  readonly reg: readonly Slot[] | undefined;
  /** By ModRM.reg then ModRM.rm when mod == 3, overriding `reg` where given. */
  readonly rm: Readonly<Record<number, readonly Slot[]>> | undefined;
}

/** Selects by the mandatory prefix: none, 66, F3, F2 (F2/F3 win over 66; the last of F2/F3 wins). */
export interface PrefixDef {
  readonly kind: "pfx";
  readonly v: readonly [Slot, Slot, Slot, Slot];
}

/** Selects by REX.W / VEX.W (0 or 1). */
export interface WDef {
  readonly kind: "w";
  readonly v: readonly [Slot, Slot];
}

export type Slot = OpDef | GroupDef | PrefixDef | WDef | undefined;

export function op(mn: string, ops = "", f = 0): OpDef {
  return { kind: "op", mn, ops: ops === "" ? [] : ops.split(","), f };
}
function grp(mem: readonly Slot[], reg?: readonly Slot[], rm?: Record<number, readonly Slot[]>): GroupDef {
  return { kind: "group", mem, reg, rm };
}
function pfx(n: Slot, p66: Slot, f3: Slot, f2: Slot): PrefixDef {
  return { kind: "pfx", v: [n, p66, f3, f2] };
}
function wsel(w0: Slot, w1: Slot): WDef {
  return { kind: "w", v: [w0, w1] };
}
/** An SSE opcode row: "mmxOrPs|pd|ss|sd" names; MMX-form names start with "m:". */
function sse(names: string, ops: string, f = 0, mmxOps?: string): PrefixDef {
  const parts = names.split("|");
  const slots = parts.map((n): Slot => {
    if (n === "") return undefined;
    if (n.startsWith("m:")) return op(n.slice(2), mmxOps ?? ops, f | MMX);
    return op(n, ops, f);
  });
  return pfx(slots[0], slots[1], slots[2], slots[3]);
}

const ALU = ["add", "or", "adc", "sbb", "and", "sub", "xor", "cmp"];
const CC = ["o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g"];

function x87(): Slot {
  // Length is ModRM-determined for every x87 opcode; the emulator does not execute them.
  return op("x87", "M");
}

export const PRIMARY: Slot[] = new Array<Slot>(256).fill(undefined);
{
  const P = PRIMARY;
  for (let i = 0; i < 8; i++) {
    const b = i * 8;
    const lk = i === 7 ? 0 : LK;
    P[b] = op(ALU[i]!, "Eb,Gb", lk);
    P[b + 1] = op(ALU[i]!, "Ev,Gv", lk);
    P[b + 2] = op(ALU[i]!, "Gb,Eb");
    P[b + 3] = op(ALU[i]!, "Gv,Ev");
    P[b + 4] = op(ALU[i]!, "AL,Ib");
    P[b + 5] = op(ALU[i]!, "rAX,Iz");
  }
  P[0x06] = op("push", "ES", I64);
  P[0x07] = op("pop", "ES", I64);
  P[0x0e] = op("push", "CS", I64);
  P[0x16] = op("push", "SS", I64);
  P[0x17] = op("pop", "SS", I64);
  P[0x1e] = op("push", "DS", I64);
  P[0x1f] = op("pop", "DS", I64);
  P[0x27] = op("daa", "", I64);
  P[0x2f] = op("das", "", I64);
  P[0x37] = op("aaa", "", I64);
  P[0x3f] = op("aas", "", I64);
  for (let r = 0; r < 8; r++) {
    P[0x40 + r] = op("inc", "Zv", I64);
    P[0x48 + r] = op("dec", "Zv", I64);
    P[0x50 + r] = op("push", "Zv", D64);
    P[0x58 + r] = op("pop", "Zv", D64);
    P[0xb0 + r] = op("mov", "Zb,Ib");
    P[0xb8 + r] = op("mov", "Zv,Iv");
  }
  for (let r = 1; r < 8; r++) P[0x90 + r] = op("xchg", "Zv,rAX");
  const nop = op("nop");
  P[0x90] = pfx(nop, nop, op("pause"), nop);
  P[0x60] = op("pusha", "", I64);
  P[0x61] = op("popa", "", I64);
  P[0x62] = op("bound", "Gv,Mq", I64 | MEMONLY);
  P[0x63] = op("arpl", "Ew,Gw", I64); // 64-bit mode: MOVSXD, chosen in the decoder
  P[0x68] = op("push", "Iz", D64);
  P[0x69] = op("imul", "Gv,Ev,Iz");
  P[0x6a] = op("push", "Ibs", D64);
  P[0x6b] = op("imul", "Gv,Ev,Ibs");
  P[0x6c] = op("insb", "Yb,DX", STR);
  P[0x6d] = op("ins", "Yz,DX", STR);
  P[0x6e] = op("outsb", "DX,Xb", STR);
  P[0x6f] = op("outs", "DX,Xz", STR);
  for (let c = 0; c < 16; c++) P[0x70 + c] = op(`j${CC[c]}`, "Jb", F64);
  P[0x80] = grp(ALU.map((m, i) => op(m, "Eb,Ib", i === 7 ? 0 : LK)));
  P[0x81] = grp(ALU.map((m, i) => op(m, "Ev,Iz", i === 7 ? 0 : LK)));
  P[0x82] = grp(ALU.map((m, i) => op(m, "Eb,Ib", I64 | (i === 7 ? 0 : LK))));
  P[0x83] = grp(ALU.map((m, i) => op(m, "Ev,Ibs", i === 7 ? 0 : LK)));
  P[0x84] = op("test", "Eb,Gb");
  P[0x85] = op("test", "Ev,Gv");
  P[0x86] = op("xchg", "Eb,Gb", LK);
  P[0x87] = op("xchg", "Ev,Gv", LK);
  P[0x88] = op("mov", "Eb,Gb");
  P[0x89] = op("mov", "Ev,Gv");
  P[0x8a] = op("mov", "Gb,Eb");
  P[0x8b] = op("mov", "Gv,Ev");
  P[0x8c] = op("mov", "Evw,Sw");
  P[0x8d] = op("lea", "Gv,M", MEMONLY);
  P[0x8e] = op("mov", "Sw,Evw");
  P[0x8f] = grp([op("pop", "Ev", D64)]);
  P[0x98] = op("cwde");
  P[0x99] = op("cdq");
  P[0x9a] = op("callf", "Ap", I64);
  P[0x9b] = op("fwait");
  P[0x9c] = op("pushf", "", D64);
  P[0x9d] = op("popf", "", D64);
  P[0x9e] = op("sahf");
  P[0x9f] = op("lahf");
  P[0xa0] = op("mov", "AL,Ob");
  P[0xa1] = op("mov", "rAX,Ov");
  P[0xa2] = op("mov", "Ob,AL");
  P[0xa3] = op("mov", "Ov,rAX");
  P[0xa4] = op("movsb", "Yb,Xb", STR);
  P[0xa5] = op("movs", "Yv,Xv", STR);
  P[0xa6] = op("cmpsb", "Xb,Yb", STR);
  P[0xa7] = op("cmps", "Xv,Yv", STR);
  P[0xa8] = op("test", "AL,Ib");
  P[0xa9] = op("test", "rAX,Iz");
  P[0xaa] = op("stosb", "Yb,AL", STR);
  P[0xab] = op("stos", "Yv,rAX", STR);
  P[0xac] = op("lodsb", "AL,Xb", STR);
  P[0xad] = op("lods", "rAX,Xv", STR);
  P[0xae] = op("scasb", "AL,Yb", STR);
  P[0xaf] = op("scas", "rAX,Yv", STR);
  const SHIFTS = ["rol", "ror", "rcl", "rcr", "shl", "shr", "sal", "sar"];
  P[0xc0] = grp(SHIFTS.map((m) => op(m, "Eb,Ib")));
  P[0xc1] = grp(SHIFTS.map((m) => op(m, "Ev,Ib")));
  P[0xc2] = op("ret", "Iw", F64);
  P[0xc3] = op("ret", "", F64);
  P[0xc4] = op("les", "Gz,Mp", I64 | MEMONLY);
  P[0xc5] = op("lds", "Gz,Mp", I64 | MEMONLY);
  P[0xc6] = grp([op("mov", "Eb,Ib")], [op("mov", "Eb,Ib")], { 7: [op("xabort", "Ib")] });
  P[0xc7] = grp([op("mov", "Ev,Iz")], [op("mov", "Ev,Iz")], { 7: [op("xbegin", "Jz", F64)] });
  P[0xc8] = op("enter", "Iw,Ib", D64);
  P[0xc9] = op("leave", "", D64);
  P[0xca] = op("retf", "Iw");
  P[0xcb] = op("retf");
  P[0xcc] = op("int3");
  P[0xcd] = op("int", "Ib");
  P[0xce] = op("into", "", I64);
  P[0xcf] = op("iret");
  P[0xd0] = grp(SHIFTS.map((m) => op(m, "Eb,I1")));
  P[0xd1] = grp(SHIFTS.map((m) => op(m, "Ev,I1")));
  P[0xd2] = grp(SHIFTS.map((m) => op(m, "Eb,CL")));
  P[0xd3] = grp(SHIFTS.map((m) => op(m, "Ev,CL")));
  P[0xd4] = op("aam", "Ib", I64);
  P[0xd5] = op("aad", "Ib", I64);
  P[0xd7] = op("xlat");
  for (let i = 0xd8; i <= 0xdf; i++) P[i] = x87();
  P[0xe0] = op("loopne", "Jb", F64);
  P[0xe1] = op("loope", "Jb", F64);
  P[0xe2] = op("loop", "Jb", F64);
  P[0xe3] = op("jrcxz", "Jb", F64);
  P[0xe4] = op("in", "AL,Ib");
  P[0xe5] = op("in", "eAX,Ib");
  P[0xe6] = op("out", "Ib,AL");
  P[0xe7] = op("out", "Ib,eAX");
  P[0xe8] = op("call", "Jz", F64);
  P[0xe9] = op("jmp", "Jz", F64);
  P[0xea] = op("jmpf", "Ap", I64);
  P[0xeb] = op("jmp", "Jb", F64);
  P[0xec] = op("in", "AL,DX");
  P[0xed] = op("in", "eAX,DX");
  P[0xee] = op("out", "DX,AL");
  P[0xef] = op("out", "DX,eAX");
  P[0xf1] = op("int1");
  P[0xf4] = op("hlt");
  P[0xf5] = op("cmc");
  P[0xf6] = grp([op("test", "Eb,Ib"), op("test", "Eb,Ib"), op("not", "Eb", LK), op("neg", "Eb", LK), op("mul", "Eb"), op("imul", "Eb"), op("div", "Eb"), op("idiv", "Eb")]);
  P[0xf7] = grp([op("test", "Ev,Iz"), op("test", "Ev,Iz"), op("not", "Ev", LK), op("neg", "Ev", LK), op("mul", "Ev"), op("imul", "Ev"), op("div", "Ev"), op("idiv", "Ev")]);
  P[0xf8] = op("clc");
  P[0xf9] = op("stc");
  P[0xfa] = op("cli");
  P[0xfb] = op("sti");
  P[0xfc] = op("cld");
  P[0xfd] = op("std");
  P[0xfe] = grp([op("inc", "Eb", LK), op("dec", "Eb", LK)]);
  P[0xff] = grp([
    op("inc", "Ev", LK),
    op("dec", "Ev", LK),
    op("call", "Ev", F64),
    op("callf", "Mp", MEMONLY),
    op("jmp", "Ev", F64),
    op("jmpf", "Mp", MEMONLY),
    op("push", "Ev", D64),
  ]);
}

/** Two-byte map (0F xx). */
export const MAP_0F: Slot[] = new Array<Slot>(256).fill(undefined);
{
  const T = MAP_0F;
  T[0x00] = grp([op("sldt", "Mw"), op("str", "Mw"), op("lldt", "Ew"), op("ltr", "Ew"), op("verr", "Ew"), op("verw", "Ew")], [
    op("sldt", "Rv"),
    op("str", "Rv"),
    op("lldt", "Ew"),
    op("ltr", "Ew"),
    op("verr", "Ew"),
    op("verw", "Ew"),
  ]);
  const g7rm: Record<number, Slot[]> = {
    0: [undefined, op("vmcall"), op("vmlaunch"), op("vmresume"), op("vmxoff"), op("pconfig")],
    1: [op("monitor"), op("mwait"), op("clac"), op("stac"), undefined, undefined, undefined, op("encls")],
    2: [op("xgetbv"), op("xsetbv"), undefined, undefined, op("vmfunc"), op("xend"), op("xtest"), op("enclu")],
    3: [op("vmrun"), op("vmmcall"), op("vmload"), op("vmsave"), op("stgi"), op("clgi"), op("skinit"), op("invlpga")],
    5: [pfx(op("serialize"), undefined, undefined, undefined), undefined, undefined, undefined, undefined, undefined, op("rdpkru"), op("wrpkru")],
    7: [
      op("swapgs", "", O64),
      op("rdtscp"),
      op("monitorx"),
      op("mwaitx"),
      op("clzero"),
      op("rdpru"),
      pfx(op("invlpgb"), undefined, op("rmpadjust"), op("rmpupdate")),
      pfx(op("tlbsync"), undefined, op("psmash"), op("pvalidate")),
    ],
  };
  T[0x01] = grp(
    [op("sgdt", "Ms"), op("sidt", "Ms"), op("lgdt", "Ms"), op("lidt", "Ms"), op("smsw", "Mw"), undefined, op("lmsw", "Ew"), op("invlpg", "Mb")],
    [undefined, undefined, undefined, undefined, op("smsw", "Rv"), undefined, op("lmsw", "Ew"), undefined],
    g7rm,
  );
  T[0x02] = op("lar", "Gv,Ew");
  T[0x03] = op("lsl", "Gv,Ew");
  T[0x05] = op("syscall");
  T[0x06] = op("clts");
  T[0x07] = op("sysret");
  T[0x08] = op("invd");
  T[0x09] = op("wbinvd");
  T[0x0b] = op("ud2");
  T[0x0d] = op("prefetch", "Mb", MEMONLY);
  T[0x0e] = op("femms");
  T[0x0f] = op("3dnow", "Pq,Qq,Ib");
  T[0x10] = sse("movups|movupd|movss|movsd", "Vx,Wx");
  T[0x11] = sse("movups|movupd|movss|movsd", "Wx,Vx");
  T[0x12] = sse("movlps|movlpd|movsldup|movddup", "Vx,Wx");
  T[0x13] = sse("movlps|movlpd||", "Mq,Vx", MEMONLY);
  T[0x14] = sse("unpcklps|unpcklpd||", "Vx,Wx");
  T[0x15] = sse("unpckhps|unpckhpd||", "Vx,Wx");
  T[0x16] = sse("movhps|movhpd|movshdup|", "Vx,Wx");
  T[0x17] = sse("movhps|movhpd||", "Mq,Vx", MEMONLY);
  T[0x18] = op("nop", "Ev");
  for (let i = 0x19; i <= 0x1f; i++) T[i] = op("nop", "Ev");
  T[0x20] = op("mov", "Ry,Cy", MODIGN | F64);
  T[0x21] = op("mov", "Ry,Dy", MODIGN | F64);
  T[0x22] = op("mov", "Cy,Ry", MODIGN | F64);
  T[0x23] = op("mov", "Dy,Ry", MODIGN | F64);
  T[0x28] = sse("movaps|movapd||", "Vx,Wx");
  T[0x29] = sse("movaps|movapd||", "Wx,Vx");
  T[0x2a] = sse("m:cvtpi2ps|m:cvtpi2pd|cvtsi2ss|cvtsi2sd", "Vx,Ey", 0, "Vx,Qq");
  T[0x2b] = sse("movntps|movntpd||", "Mx,Vx", MEMONLY);
  T[0x2c] = sse("m:cvttps2pi|m:cvttpd2pi|cvttss2si|cvttsd2si", "Gy,Wx", 0, "Pq,Wx");
  T[0x2d] = sse("m:cvtps2pi|m:cvtpd2pi|cvtss2si|cvtsd2si", "Gy,Wx", 0, "Pq,Wx");
  T[0x2e] = sse("ucomiss|ucomisd||", "Vx,Wx");
  T[0x2f] = sse("comiss|comisd||", "Vx,Wx");
  T[0x30] = op("wrmsr");
  T[0x31] = op("rdtsc");
  T[0x32] = op("rdmsr");
  T[0x33] = op("rdpmc");
  T[0x34] = op("sysenter");
  T[0x35] = op("sysexit");
  T[0x37] = op("getsec");
  for (let c = 0; c < 16; c++) {
    T[0x40 + c] = op(`cmov${CC[c]}`, "Gv,Ev");
    T[0x80 + c] = op(`j${CC[c]}`, "Jz", F64);
    T[0x90 + c] = op(`set${CC[c]}`, "Eb");
  }
  T[0x50] = sse("movmskps|movmskpd||", "Gy,Ux", REGONLY);
  T[0x51] = sse("sqrtps|sqrtpd|sqrtss|sqrtsd", "Vx,Wx");
  T[0x52] = sse("rsqrtps||rsqrtss|", "Vx,Wx");
  T[0x53] = sse("rcpps||rcpss|", "Vx,Wx");
  T[0x54] = sse("andps|andpd||", "Vx,Wx");
  T[0x55] = sse("andnps|andnpd||", "Vx,Wx");
  T[0x56] = sse("orps|orpd||", "Vx,Wx");
  T[0x57] = sse("xorps|xorpd||", "Vx,Wx");
  T[0x58] = sse("addps|addpd|addss|addsd", "Vx,Wx");
  T[0x59] = sse("mulps|mulpd|mulss|mulsd", "Vx,Wx");
  T[0x5a] = sse("cvtps2pd|cvtpd2ps|cvtss2sd|cvtsd2ss", "Vx,Wx");
  T[0x5b] = sse("cvtdq2ps|cvtps2dq|cvttps2dq|", "Vx,Wx");
  T[0x5c] = sse("subps|subpd|subss|subsd", "Vx,Wx");
  T[0x5d] = sse("minps|minpd|minss|minsd", "Vx,Wx");
  T[0x5e] = sse("divps|divpd|divss|divsd", "Vx,Wx");
  T[0x5f] = sse("maxps|maxpd|maxss|maxsd", "Vx,Wx");
  const intOps: Record<number, string> = {
    96: "punpcklbw", 97: "punpcklwd", 98: "punpckldq", 99: "packsswb", 100: "pcmpgtb", 101: "pcmpgtw",
    102: "pcmpgtd", 103: "packuswb", 104: "punpckhbw", 105: "punpckhwd", 106: "punpckhdq", 107: "packssdw",
    116: "pcmpeqb", 117: "pcmpeqw", 118: "pcmpeqd", 209: "psrlw", 210: "psrld", 211: "psrlq", 212: "paddq",
    213: "pmullw", 216: "psubusb", 217: "psubusw", 218: "pminub", 219: "pand", 220: "paddusb", 221: "paddusw",
    222: "pmaxub", 223: "pandn", 224: "pavgb", 225: "psraw", 226: "psrad", 227: "pavgw", 228: "pmulhuw",
    229: "pmulhw", 232: "psubsb", 233: "psubsw", 234: "pminsw", 235: "por", 236: "paddsb", 237: "paddsw",
    238: "pmaxsw", 239: "pxor", 241: "psllw", 242: "pslld", 243: "psllq", 244: "pmuludq", 245: "pmaddwd",
    246: "psadbw", 248: "psubb", 249: "psubw", 250: "psubd", 251: "psubq", 252: "paddb", 253: "paddw", 254: "paddd",
  };
  for (const [k, m] of Object.entries(intOps)) T[Number(k)] = sse(`m:${m}|${m}||`, "Vx,Wx", 0, "Pq,Qq");
  T[0x6c] = sse("|punpcklqdq||", "Vx,Wx");
  T[0x6d] = sse("|punpckhqdq||", "Vx,Wx");
  T[0x6e] = pfx(op("movd", "Pq,Ey", MMX), op("movd", "Vx,Ey"), undefined, undefined);
  T[0x6f] = pfx(op("movq", "Pq,Qq", MMX), op("movdqa", "Vx,Wx"), op("movdqu", "Vx,Wx"), undefined);
  T[0x70] = pfx(op("pshufw", "Pq,Qq,Ib", MMX), op("pshufd", "Vx,Wx,Ib"), op("pshufhw", "Vx,Wx,Ib"), op("pshuflw", "Vx,Wx,Ib"));
  const shiftGroup = (names: (string | undefined)[]): Slot =>
    grp(
      [],
      names.map((n) => (n === undefined ? undefined : n.startsWith("x:") ? sse(`|${n.slice(2)}||`, "Hx,Ux,Ib") : sse(`m:${n}|${n}||`, "Hx,Ux,Ib", 0, "Nq,Ib"))),
    );
  T[0x71] = shiftGroup([undefined, undefined, "psrlw", undefined, "psraw", undefined, "psllw", undefined]);
  T[0x72] = shiftGroup([undefined, undefined, "psrld", undefined, "psrad", undefined, "pslld", undefined]);
  T[0x73] = shiftGroup([undefined, undefined, "psrlq", "x:psrldq", undefined, undefined, "psllq", "x:pslldq"]);
  T[0x77] = pfx(op("emms"), undefined, undefined, undefined);
  T[0x78] = pfx(op("vmread", "Ey,Gy", F64), grp([], [op("extrq", "Ux,Ib,Ib")]), undefined, op("insertq", "Vx,Ux,Ib,Ib", REGONLY));
  T[0x79] = pfx(op("vmwrite", "Gy,Ey", F64), op("extrq", "Vx,Ux", REGONLY), undefined, op("insertq", "Vx,Ux", REGONLY));
  T[0x7c] = sse("|haddpd||haddps", "Vx,Wx");
  T[0x7d] = sse("|hsubpd||hsubps", "Vx,Wx");
  T[0x7e] = pfx(op("movd", "Ey,Pq", MMX), op("movd", "Ey,Vx"), op("movq", "Vx,Wq"), undefined);
  T[0x7f] = pfx(op("movq", "Qq,Pq", MMX), op("movdqa", "Wx,Vx"), op("movdqu", "Wx,Vx"), undefined);
  T[0xa0] = op("push", "FS", D64);
  T[0xa1] = op("pop", "FS", D64);
  T[0xa2] = op("cpuid");
  T[0xa3] = op("bt", "Ev,Gv");
  T[0xa4] = op("shld", "Ev,Gv,Ib");
  T[0xa5] = op("shld", "Ev,Gv,CL");
  T[0xa8] = op("push", "GS", D64);
  T[0xa9] = op("pop", "GS", D64);
  T[0xaa] = op("rsm");
  T[0xab] = op("bts", "Ev,Gv", LK);
  T[0xac] = op("shrd", "Ev,Gv,Ib");
  T[0xad] = op("shrd", "Ev,Gv,CL");
  T[0xae] = grp(
    [
      pfx(op("fxsave", "M", W64NAME), undefined, undefined, undefined),
      pfx(op("fxrstor", "M", W64NAME), undefined, undefined, undefined),
      pfx(op("ldmxcsr", "Md"), undefined, undefined, undefined),
      pfx(op("stmxcsr", "Md"), undefined, undefined, undefined),
      pfx(op("xsave", "M", W64NAME), undefined, op("ptwrite", "Ey"), undefined),
      pfx(op("xrstor", "M", W64NAME), undefined, undefined, undefined),
      pfx(op("xsaveopt", "M", W64NAME), op("clwb", "Mb"), undefined, undefined),
      pfx(op("clflush", "Mb"), op("clflushopt", "Mb"), undefined, undefined),
    ],
    [
      pfx(undefined, undefined, op("rdfsbase", "Ry", O64), undefined),
      pfx(undefined, undefined, op("rdgsbase", "Ry", O64), undefined),
      pfx(undefined, undefined, op("wrfsbase", "Ry", O64), undefined),
      pfx(undefined, undefined, op("wrgsbase", "Ry", O64), undefined),
      pfx(undefined, undefined, op("ptwrite", "Ey"), undefined),
      pfx(op("lfence"), undefined, op("incsspd", "Ry"), undefined),
      pfx(op("mfence"), op("tpause", "Ry"), op("umonitor", "Ry"), op("umwait", "Ry")),
      pfx(op("sfence"), undefined, undefined, undefined),
    ],
  );
  T[0xaf] = op("imul", "Gv,Ev");
  T[0xb0] = op("cmpxchg", "Eb,Gb", LK);
  T[0xb1] = op("cmpxchg", "Ev,Gv", LK);
  T[0xb2] = op("lss", "Gv,Mp", MEMONLY);
  T[0xb3] = op("btr", "Ev,Gv", LK);
  T[0xb4] = op("lfs", "Gv,Mp", MEMONLY);
  T[0xb5] = op("lgs", "Gv,Mp", MEMONLY);
  T[0xb6] = op("movzx", "Gv,Eb");
  T[0xb7] = op("movzx", "Gv,Ew");
  T[0xb8] = pfx(undefined, undefined, op("popcnt", "Gv,Ev"), undefined);
  T[0xb9] = op("ud1", "Gv,Ev");
  T[0xba] = grp([undefined, undefined, undefined, undefined, op("bt", "Ev,Ib"), op("bts", "Ev,Ib", LK), op("btr", "Ev,Ib", LK), op("btc", "Ev,Ib", LK)]);
  T[0xbb] = op("btc", "Ev,Gv", LK);
  const bsf = op("bsf", "Gv,Ev");
  T[0xbc] = pfx(bsf, bsf, op("tzcnt", "Gv,Ev"), bsf);
  const bsr = op("bsr", "Gv,Ev");
  T[0xbd] = pfx(bsr, bsr, op("lzcnt", "Gv,Ev"), bsr);
  T[0xbe] = op("movsx", "Gv,Eb");
  T[0xbf] = op("movsx", "Gv,Ew");
  T[0xc0] = op("xadd", "Eb,Gb", LK);
  T[0xc1] = op("xadd", "Ev,Gv", LK);
  T[0xc2] = sse("cmpps|cmppd|cmpss|cmpsd", "Vx,Wx,Ib");
  T[0xc3] = pfx(op("movnti", "My,Gy", MEMONLY), undefined, undefined, undefined);
  T[0xc4] = sse("m:pinsrw|pinsrw||", "Vx,Ey,Ib", 0, "Pq,Ey,Ib");
  T[0xc5] = sse("m:pextrw|pextrw||", "Gy,Ux,Ib", REGONLY, "Gy,Nq,Ib");
  T[0xc6] = sse("shufps|shufpd||", "Vx,Wx,Ib");
  // Where the none and 66 slots hold the same definition, 66 is the operand-size prefix.
  const rdrand = op("rdrand", "Rv");
  const rdseed = op("rdseed", "Rv");
  T[0xc7] = grp(
    [
      undefined,
      wsel(op("cmpxchg8b", "Mq", LK), op("cmpxchg16b", "Mdq", LK)),
      undefined,
      pfx(op("xrstors", "M", W64NAME), undefined, undefined, undefined),
      pfx(op("xsavec", "M", W64NAME), undefined, undefined, undefined),
      pfx(op("xsaves", "M", W64NAME), undefined, undefined, undefined),
      pfx(op("vmptrld", "Mq"), op("vmclear", "Mq"), op("vmxon", "Mq"), undefined),
      pfx(op("vmptrst", "Mq"), undefined, undefined, undefined),
    ],
    [
      undefined,
      undefined,
      undefined,
      undefined,
      undefined,
      undefined,
      pfx(rdrand, rdrand, undefined, undefined),
      pfx(rdseed, rdseed, op("rdpid", "Ry", F64), undefined),
    ],
  );
  for (let r = 0; r < 8; r++) T[0xc8 + r] = op("bswap", "Zy");
  T[0xd0] = sse("|addsubpd||addsubps", "Vx,Wx");
  T[0xd6] = pfx(undefined, op("movq", "Wq,Vx"), op("movq2dq", "Vx,Nq", REGONLY), op("movdq2q", "Pq,Ux", REGONLY));
  T[0xd7] = sse("m:pmovmskb|pmovmskb||", "Gd,Ux", REGONLY, "Gd,Nq");
  T[0xe6] = sse("|cvttpd2dq|cvtdq2pd|cvtpd2dq", "Vx,Wx");
  T[0xe7] = sse("m:movntq|movntdq||", "Mx,Vx", MEMONLY, "Mq,Pq");
  T[0xf0] = sse("|||lddqu", "Vx,Mx", MEMONLY);
  T[0xf7] = sse("m:maskmovq|maskmovdqu||", "Vx,Ux", REGONLY, "Pq,Nq");
  T[0xff] = op("ud0", "Gv,Ev");
}

/** 0F 38 (three-byte) map, legacy encodings: every one has a ModRM and no immediate. */
export const MAP_0F38: Slot[] = new Array<Slot>(256).fill(undefined);
{
  const T = MAP_0F38;
  const ssse3 = ["pshufb", "phaddw", "phaddd", "phaddsw", "pmaddubsw", "phsubw", "phsubd", "phsubsw", "psignb", "psignw", "psignd", "pmulhrsw"];
  ssse3.forEach((m, i) => {
    T[i] = sse(`m:${m}|${m}||`, "Vx,Wx", 0, "Pq,Qq");
  });
  T[0x1c] = sse("m:pabsb|pabsb||", "Vx,Wx", 0, "Pq,Qq");
  T[0x1d] = sse("m:pabsw|pabsw||", "Vx,Wx", 0, "Pq,Qq");
  T[0x1e] = sse("m:pabsd|pabsd||", "Vx,Wx", 0, "Pq,Qq");
  const only66: Record<number, string> = {
    16: "pblendvb", 20: "blendvps", 21: "blendvpd", 23: "ptest", 32: "pmovsxbw", 33: "pmovsxbd",
    34: "pmovsxbq", 35: "pmovsxwd", 36: "pmovsxwq", 37: "pmovsxdq", 40: "pmuldq", 41: "pcmpeqq",
    43: "packusdw", 48: "pmovzxbw", 49: "pmovzxbd", 50: "pmovzxbq", 51: "pmovzxwd", 52: "pmovzxwq",
    53: "pmovzxdq", 55: "pcmpgtq", 56: "pminsb", 57: "pminsd", 58: "pminuw", 59: "pminud", 60: "pmaxsb",
    61: "pmaxsd", 62: "pmaxuw", 63: "pmaxud", 64: "pmulld", 65: "phminposuw", 207: "gf2p8mulb",
    219: "aesimc", 220: "aesenc", 221: "aesenclast", 222: "aesdec", 223: "aesdeclast",
  };
  for (const [k, m] of Object.entries(only66)) T[Number(k)] = sse(`|${m}||`, "Vx,Wx");
  T[0x2a] = sse("|movntdqa||", "Vx,Mx", MEMONLY);
  T[0x80] = pfx(undefined, op("invept", "Gy,Mdq", MEMONLY | F64), undefined, undefined);
  T[0x81] = pfx(undefined, op("invvpid", "Gy,Mdq", MEMONLY | F64), undefined, undefined);
  T[0x82] = pfx(undefined, op("invpcid", "Gy,Mdq", MEMONLY | F64), undefined, undefined);
  const sha = ["sha1nexte", "sha1msg1", "sha1msg2", "sha256rnds2", "sha256msg1", "sha256msg2"];
  sha.forEach((m, i) => {
    T[0xc8 + i] = sse(`${m}|||`, "Vx,Wx");
  });
  const movbeLoad = op("movbe", "Gv,Mv", MEMONLY);
  const movbeStore = op("movbe", "Mv,Gv", MEMONLY);
  T[0xf0] = pfx(movbeLoad, movbeLoad, undefined, op("crc32", "Gy,Eb"));
  T[0xf1] = pfx(movbeStore, movbeStore, undefined, op("crc32", "Gy,Ev"));
  T[0xf5] = pfx(undefined, op("wrussd", "My,Gy", MEMONLY), undefined, undefined);
  T[0xf6] = pfx(op("wrssd", "My,Gy", MEMONLY), op("adcx", "Gy,Ey"), op("adox", "Gy,Ey"), undefined);
  T[0xf8] = pfx(undefined, op("movdir64b", "Gv,M", MEMONLY), op("enqcmds", "Gv,M", MEMONLY), op("enqcmd", "Gv,M", MEMONLY));
  T[0xf9] = pfx(op("movdiri", "My,Gy", MEMONLY), undefined, undefined, undefined);
}

/** 0F 3A map, legacy encodings: ModRM and an 8-bit immediate. */
export const MAP_0F3A: Slot[] = new Array<Slot>(256).fill(undefined);
{
  const T = MAP_0F3A;
  const only66: Record<number, string> = {
    8: "roundps", 9: "roundpd", 10: "roundss", 11: "roundsd", 12: "blendps", 13: "blendpd",
    14: "pblendw", 20: "pextrb", 21: "pextrw", 22: "pextrd", 23: "extractps", 32: "pinsrb",
    33: "insertps", 34: "pinsrd", 64: "dpps", 65: "dppd", 66: "mpsadbw", 68: "pclmulqdq",
    96: "pcmpestrm", 97: "pcmpestri", 98: "pcmpistrm", 99: "pcmpistri", 206: "gf2p8affineqb",
    207: "gf2p8affineinvqb", 223: "aeskeygenassist",
  };
  for (const [k, m] of Object.entries(only66)) T[Number(k)] = sse(`|${m}||`, "Vx,Wx,Ib");
  for (const k of [0x14, 0x15, 0x16, 0x17]) T[k] = sse(`|${(only66[k] as string)}||`, "Ey,Vx,Ib");
  T[0x20] = sse("|pinsrb||", "Vx,Ey,Ib");
  T[0x22] = sse("|pinsrd||", "Vx,Ey,Ib");
  T[0x0f] = sse("m:palignr|palignr||", "Vx,Wx,Ib", 0, "Pq,Qq,Ib");
  T[0xcc] = sse("sha1rnds4|||", "Vx,Wx,Ib");
}

/**
 * VEX-only opcodes of maps 2 (0F38) and 3 (0F3A) beyond the legacy SSE ones, by opcode. Only their
 * validity matters to the decoder (length is fixed per map); names are for display.
 */
export const VEX_MAP2_EXTRA: Readonly<Record<number, string>> = {
  12: "vpermilps", 13: "vpermilpd", 14: "vtestps", 15: "vtestpd", 19: "vcvtph2ps", 22: "vpermps",
  24: "vbroadcastss", 25: "vbroadcastsd", 26: "vbroadcastf128", 44: "vmaskmovps", 45: "vmaskmovpd",
  46: "vmaskmovps", 47: "vmaskmovpd", 54: "vpermd", 69: "vpsrlvd", 70: "vpsravd", 71: "vpsllvd",
  88: "vpbroadcastd", 89: "vpbroadcastq", 90: "vbroadcasti128", 120: "vpbroadcastb", 121: "vpbroadcastw",
  140: "vpmaskmovd", 142: "vpmaskmovd", 144: "vpgatherdd", 145: "vpgatherqd", 146: "vgatherdps", 147: "vgatherqps",
  150: "vfmaddsub132ps", 151: "vfmsubadd132ps", 152: "vfmadd132ps", 153: "vfmadd132ss", 154: "vfmsub132ps",
  155: "vfmsub132ss", 156: "vfnmadd132ps", 157: "vfnmadd132ss", 158: "vfnmsub132ps", 159: "vfnmsub132ss",
  166: "vfmaddsub213ps", 167: "vfmsubadd213ps", 168: "vfmadd213ps", 169: "vfmadd213ss", 170: "vfmsub213ps",
  171: "vfmsub213ss", 172: "vfnmadd213ps", 173: "vfnmadd213ss", 174: "vfnmsub213ps", 175: "vfnmsub213ss",
  182: "vfmaddsub231ps", 183: "vfmsubadd231ps", 184: "vfmadd231ps", 185: "vfmadd231ss", 186: "vfmsub231ps",
  187: "vfmsub231ss", 188: "vfnmadd231ps", 189: "vfnmadd231ss", 190: "vfnmsub231ps", 191: "vfnmsub231ss",
};

/** VEX map 2 general-register (BMI) opcodes: names by pp (none, 66, F3, F2). */
export const VEX_MAP2_BMI: Readonly<Record<number, readonly [string, string, string, string]>> = {
  242: ["andn", "", "", ""],
  243: ["blsr", "", "", ""],
  245: ["bzhi", "", "pext", "pdep"],
  246: ["", "", "", "mulx"],
  247: ["bextr", "shlx", "sarx", "shrx"],
};

export const VEX_MAP3_EXTRA: Readonly<Record<number, string>> = {
  0: "vpermq", 1: "vpermpd", 2: "vpblendd", 4: "vpermilps", 5: "vpermilpd", 6: "vperm2f128",
  24: "vinsertf128", 25: "vextractf128", 29: "vcvtps2ph", 56: "vinserti128", 57: "vextracti128",
  70: "vperm2i128", 74: "vblendvps", 75: "vblendvpd", 76: "vpblendvb",
  // AMD FMA4 and XOP-era permutes (4-operand; the fourth register is in imm8[7:4]).
  72: "vpermil2ps", 73: "vpermil2pd", 92: "vfmaddsubps", 93: "vfmaddsubpd", 94: "vfmsubaddps",
  95: "vfmsubaddpd", 104: "vfmaddps", 105: "vfmaddpd", 106: "vfmaddss", 107: "vfmaddsd", 108: "vfmsubps",
  109: "vfmsubpd", 110: "vfmsubss", 111: "vfmsubsd", 120: "vfnmaddps", 121: "vfnmaddpd", 122: "vfnmaddss",
  123: "vfnmaddsd", 124: "vfnmsubps", 125: "vfnmsubpd", 126: "vfnmsubss", 127: "vfnmsubsd",
};

/** Map-1 opcodes whose VEX and EVEX forms carry an 8-bit immediate. */
export const MAP1_IMM8 = new Set([0x70, 0x71, 0x72, 0x73, 0xc2, 0xc4, 0xc5, 0xc6]);
