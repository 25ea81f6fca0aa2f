import { GdbStubError } from "./errors.js";
import { fromHex, toHex } from "./hex.js";

/** The architectures whose register layouts this package describes to gdb. */
export type GdbArchitecture = "i386:x86-64" | "i386" | "i8086";

/** The 64-bit integer registers of an x86 vCPU, named as in the SDM (not as gdb names them). */
export type X86IntRegister =
  | "rax" | "rbx" | "rcx" | "rdx" | "rsi" | "rdi" | "rbp" | "rsp"
  | "r8" | "r9" | "r10" | "r11" | "r12" | "r13" | "r14" | "r15"
  | "rip" | "rflags"
  | "fsBase" | "gsBase" | "kernelGsBase"
  | "cr0" | "cr2" | "cr3" | "cr4" | "cr8" | "efer";

/** Segment selectors (16 bits each). */
export type X86SegmentRegister = "cs" | "ss" | "ds" | "es" | "fs" | "gs";

/**
 * x87 state in the form gdb wants. `st` holds ST(0)..ST(7) in stack order (as FXSAVE and
 * KVM's kvm_fpu.fpr store them), 10 bytes each. `ftag` is the full 16-bit tag word of FSTENV,
 * not FXSAVE's abridged 8-bit one: convert with {@link fullTagWord}.
 */
export interface X87State {
  readonly st: readonly Uint8Array[];
  readonly fctrl: number;
  readonly fstat: number;
  readonly ftag: number;
  readonly fiseg: number;
  readonly fioff: number;
  readonly foseg: number;
  readonly fooff: number;
  readonly fop: number;
}

/** SSE state: XMM0..XMM15 (16 bytes each, little-endian as in memory) and MXCSR. */
export interface SseState {
  readonly xmm: readonly Uint8Array[];
  readonly mxcsr: number;
}

/**
 * One vCPU's registers as a debug target reports them. Values are the architectural 64-bit
 * ones whatever the mode: a 32-bit layout sends the low halves and a write keeps the high
 * halves. `fpu` and `sse` are optional: when absent gdb shows them as `<unavailable>`.
 */
export type X86Registers = { readonly [K in X86IntRegister]: bigint } & {
  readonly [K in X86SegmentRegister]: number;
} & {
  readonly fpu?: X87State;
  readonly sse?: SseState;
};

type Access =
  | { readonly kind: "int"; readonly field: X86IntRegister }
  | { readonly kind: "segment"; readonly field: X86SegmentRegister }
  | { readonly kind: "st"; readonly index: number }
  | { readonly kind: "x87"; readonly field: Exclude<keyof X87State, "st"> }
  | { readonly kind: "xmm"; readonly index: number }
  | { readonly kind: "mxcsr" };

/** One register as gdb numbers it in this package's target description. */
export interface RegisterInfo {
  /** gdb's name (`rax`, `eip`, `fs_base`, `k_gs_base`, `cr3`, …). */
  readonly name: string;
  /** The number gdb uses in p/P packets; also the order in the g packet. */
  readonly regnum: number;
  readonly bits: number;
  /** Byte offset in the g packet's binary form. */
  readonly offset: number;
  /** The target-description feature holding it. */
  readonly feature: string;
  /** The target-description type name. */
  readonly type: string;
  readonly group?: string;
  readonly access: Access;
}

export interface RegisterLayout {
  readonly architecture: GdbArchitecture;
  readonly registers: readonly RegisterInfo[];
  /** Bytes of a full g packet (twice that in hex digits). */
  readonly gPacketBytes: number;
}

export const FEATURE_CORE = "org.gnu.gdb.i386.core";
export const FEATURE_SSE = "org.gnu.gdb.i386.sse";
export const FEATURE_SEGMENTS = "org.gnu.gdb.i386.segments";
/** Control registers and EFER: gdb defines no feature for them, so they carry this project's name. */
export const FEATURE_CONTROL = "org.tsvmm.x86.control";

type Spec = Omit<RegisterInfo, "regnum" | "offset">;

function int(name: string, bits: number, field: X86IntRegister, feature: string, type: string, group?: string): Spec {
  return { name, bits, feature, type, access: { kind: "int", field }, ...(group ? { group } : {}) };
}

function x87Specs(): Spec[] {
  const out: Spec[] = [];
  for (let i = 0; i < 8; i++) out.push({ name: `st${i}`, bits: 80, feature: FEATURE_CORE, type: "i387_ext", access: { kind: "st", index: i } });
  const ctl = ["fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop"] as const;
  for (const f of ctl) out.push({ name: f, bits: 32, feature: FEATURE_CORE, type: "int", group: "float", access: { kind: "x87", field: f } });
  return out;
}

function segmentSpecs(): Spec[] {
  return (["cs", "ss", "ds", "es", "fs", "gs"] as const).map((s) => ({ name: s, bits: 32, feature: FEATURE_CORE, type: "int32", access: { kind: "segment", field: s } }));
}

function sseSpecs(count: number): Spec[] {
  const out: Spec[] = [];
  for (let i = 0; i < count; i++) out.push({ name: `xmm${i}`, bits: 128, feature: FEATURE_SSE, type: "vec128", access: { kind: "xmm", index: i } });
  out.push({ name: "mxcsr", bits: 32, feature: FEATURE_SSE, type: "i386_mxcsr", group: "vector", access: { kind: "mxcsr" } });
  return out;
}

function number(specs: Spec[], architecture: GdbArchitecture): RegisterLayout {
  let offset = 0;
  const registers = specs.map((s, regnum) => {
    const r: RegisterInfo = { ...s, regnum, offset };
    offset += s.bits / 8;
    return r;
  });
  return { architecture, registers, gPacketBytes: offset };
}

// gdb's amd64 core feature orders the GPRs rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp (not the
// hardware encoding order); its i386 core feature uses the encoding order eax, ecx, edx, ebx, …
const LAYOUT_64 = number(
  [
    ...(["rax", "rbx", "rcx", "rdx", "rsi", "rdi"] as const).map((r) => int(r, 64, r, FEATURE_CORE, "int64")),
    int("rbp", 64, "rbp", FEATURE_CORE, "data_ptr"),
    int("rsp", 64, "rsp", FEATURE_CORE, "data_ptr"),
    ...(["r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"] as const).map((r) => int(r, 64, r, FEATURE_CORE, "int64")),
    int("rip", 64, "rip", FEATURE_CORE, "code_ptr"),
    int("eflags", 32, "rflags", FEATURE_CORE, "i386_eflags"),
    ...segmentSpecs(),
    ...x87Specs(),
    ...sseSpecs(16),
    int("fs_base", 64, "fsBase", FEATURE_SEGMENTS, "int"),
    int("gs_base", 64, "gsBase", FEATURE_SEGMENTS, "int"),
    int("k_gs_base", 64, "kernelGsBase", FEATURE_SEGMENTS, "int"),
    int("cr0", 64, "cr0", FEATURE_CONTROL, "x86_cr0", "system"),
    int("cr2", 64, "cr2", FEATURE_CONTROL, "int64", "system"),
    int("cr3", 64, "cr3", FEATURE_CONTROL, "int64", "system"),
    int("cr4", 64, "cr4", FEATURE_CONTROL, "x86_cr4", "system"),
    int("cr8", 64, "cr8", FEATURE_CONTROL, "int64", "system"),
    int("efer", 64, "efer", FEATURE_CONTROL, "x86_efer", "system"),
  ],
  "i386:x86-64",
);

function layout32(architecture: GdbArchitecture): RegisterLayout {
  const gpr: [string, X86IntRegister, string][] = [
    ["eax", "rax", "int32"],
    ["ecx", "rcx", "int32"],
    ["edx", "rdx", "int32"],
    ["ebx", "rbx", "int32"],
    ["esp", "rsp", "data_ptr"],
    ["ebp", "rbp", "data_ptr"],
    ["esi", "rsi", "int32"],
    ["edi", "rdi", "int32"],
  ];
  return number(
    [
      ...gpr.map(([n, f, t]) => int(n, 32, f, FEATURE_CORE, t)),
      int("eip", 32, "rip", FEATURE_CORE, "code_ptr"),
      int("eflags", 32, "rflags", FEATURE_CORE, "i386_eflags"),
      ...segmentSpecs(),
      ...x87Specs(),
      ...sseSpecs(8),
      // Not in org.gnu.gdb.i386.segments: gdb 13.1 fails an internal assertion
      // (tdesc_use_registers) on a 32-bit description holding that feature.
      int("fs_base", 32, "fsBase", FEATURE_CONTROL, "int", "system"),
      int("gs_base", 32, "gsBase", FEATURE_CONTROL, "int", "system"),
      int("cr0", 32, "cr0", FEATURE_CONTROL, "x86_cr0", "system"),
      int("cr2", 32, "cr2", FEATURE_CONTROL, "int32", "system"),
      int("cr3", 32, "cr3", FEATURE_CONTROL, "int32", "system"),
      int("cr4", 32, "cr4", FEATURE_CONTROL, "x86_cr4", "system"),
      int("efer", 64, "efer", FEATURE_CONTROL, "x86_efer", "system"),
    ],
    architecture,
  );
}

const LAYOUT_32 = layout32("i386");
const LAYOUT_16 = layout32("i8086");

/** The register numbering and g-packet layout gdb will use after reading our target description. */
export function registerLayout(architecture: GdbArchitecture): RegisterLayout {
  switch (architecture) {
    case "i386:x86-64":
      return LAYOUT_64;
    case "i386":
      return LAYOUT_32;
    case "i8086":
      return LAYOUT_16;
    default:
      throw new GdbStubError("GDBSTUB_INVALID_ARGUMENT", `unknown architecture ${String(architecture)}`);
  }
}

function intToBytes(v: bigint, bytes: number): Buffer {
  const out = Buffer.alloc(bytes);
  let x = BigInt.asUintN(bytes * 8, v);
  for (let i = 0; i < bytes; i++) {
    out[i] = Number(x & 0xffn);
    x >>= 8n;
  }
  return out;
}

function bytesToInt(b: Uint8Array): bigint {
  let v = 0n;
  for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
  return v;
}

/** One register's value in target byte order, or undefined when the target did not supply it. */
export function registerBytes(regs: X86Registers, reg: RegisterInfo): Buffer | undefined {
  const size = reg.bits / 8;
  const a = reg.access;
  switch (a.kind) {
    case "int":
      return intToBytes(regs[a.field], size);
    case "segment":
      return intToBytes(BigInt(regs[a.field] & 0xffff), size);
    case "st": {
      const st = regs.fpu?.st[a.index];
      return st && st.length >= 10 ? Buffer.from(st.subarray(0, 10)) : undefined;
    }
    case "x87":
      return regs.fpu ? intToBytes(BigInt(regs.fpu[a.field] >>> 0), size) : undefined;
    case "xmm": {
      const x = regs.sse?.xmm[a.index];
      return x && x.length >= 16 ? Buffer.from(x.subarray(0, 16)) : undefined;
    }
    case "mxcsr":
      return regs.sse ? intToBytes(BigInt(regs.sse.mxcsr >>> 0), size) : undefined;
  }
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

function withRegister(regs: X86Registers, reg: RegisterInfo, value: Uint8Array): X86Registers {
  const a = reg.access;
  switch (a.kind) {
    case "int": {
      // A narrower view (eax of rax, eflags of rflags) replaces only the low bits it covers.
      const bits = BigInt(reg.bits);
      const keep = regs[a.field] & ~((1n << bits) - 1n);
      return { ...regs, [a.field]: BigInt.asUintN(64, keep | bytesToInt(value)) };
    }
    case "segment":
      return { ...regs, [a.field]: Number(bytesToInt(value) & 0xffffn) };
    case "st":
    case "x87": {
      const fpu: Mutable<X87State> = regs.fpu
        ? { ...regs.fpu, st: [...regs.fpu.st] }
        : { st: Array.from({ length: 8 }, () => new Uint8Array(10)), fctrl: 0x37f, fstat: 0, ftag: 0xffff, fiseg: 0, fioff: 0, foseg: 0, fooff: 0, fop: 0 };
      if (a.kind === "st") (fpu.st as Uint8Array[])[a.index] = Uint8Array.from(value);
      else fpu[a.field] = Number(bytesToInt(value));
      return { ...regs, fpu };
    }
    case "xmm":
    case "mxcsr": {
      const sse: Mutable<SseState> = regs.sse
        ? { ...regs.sse, xmm: [...regs.sse.xmm] }
        : { xmm: Array.from({ length: 16 }, () => new Uint8Array(16)), mxcsr: 0x1f80 };
      if (a.kind === "xmm") (sse.xmm as Uint8Array[])[a.index] = Uint8Array.from(value);
      else sse.mxcsr = Number(bytesToInt(value));
      return { ...regs, sse };
    }
  }
}

/** The g-packet reply: every register in regnum order, `xx` for each byte of one not supplied. */
export function encodeGPacket(architecture: GdbArchitecture, regs: X86Registers): string {
  let out = "";
  for (const reg of registerLayout(architecture).registers) {
    const b = registerBytes(regs, reg);
    out += b ? toHex(b) : "xx".repeat(reg.bits / 8);
  }
  return out;
}

/**
 * Apply a G packet's hex to `base`. A G packet may be shorter than the full layout (gdb sends
 * whole registers): registers it does not reach keep their values. Bytes given as `xx` leave
 * that register unchanged. Throws GDBSTUB_MALFORMED_PACKET on a partial register or bad hex.
 */
export function decodeGPacket(architecture: GdbArchitecture, hex: string, base: X86Registers): X86Registers {
  const layout = registerLayout(architecture);
  if (hex.length % 2 !== 0 || hex.length / 2 > layout.gPacketBytes) {
    throw new GdbStubError("GDBSTUB_MALFORMED_PACKET", `G packet of ${hex.length} hex digits for a ${layout.gPacketBytes}-byte layout`);
  }
  let regs = base;
  for (const reg of layout.registers) {
    const start = reg.offset * 2;
    const end = start + reg.bits / 4;
    if (start >= hex.length) break;
    if (end > hex.length) throw new GdbStubError("GDBSTUB_MALFORMED_PACKET", `G packet ends inside ${reg.name}`);
    const digits = hex.slice(start, end);
    if (/^x+$/i.test(digits)) continue;
    regs = withRegister(regs, reg, fromHex(digits));
  }
  return regs;
}

/** The p-packet reply for one register, or undefined when regnum is not in the layout. */
export function encodeRegister(architecture: GdbArchitecture, regs: X86Registers, regnum: number): string | undefined {
  const reg = registerLayout(architecture).registers[regnum];
  if (!reg) return undefined;
  const b = registerBytes(regs, reg);
  return b ? toHex(b) : "xx".repeat(reg.bits / 8);
}

/** Apply a P packet: `hex` must be exactly the register's width. */
export function decodeRegister(architecture: GdbArchitecture, regs: X86Registers, regnum: number, hex: string): X86Registers {
  const reg = registerLayout(architecture).registers[regnum];
  if (!reg) throw new GdbStubError("GDBSTUB_INVALID_ARGUMENT", `no register ${regnum} in the ${architecture} layout`);
  if (hex.length !== reg.bits / 4) throw new GdbStubError("GDBSTUB_MALFORMED_PACKET", `${reg.name} takes ${reg.bits / 4} hex digits, got ${hex.length}`);
  return withRegister(regs, reg, fromHex(hex));
}

/** All-zero registers in the state x86 resets to (a convenient base for targets and tests). */
export function resetRegisters(): X86Registers {
  return {
    rax: 0n, rbx: 0n, rcx: 0n, rdx: 0n, rsi: 0n, rdi: 0n, rbp: 0n, rsp: 0n,
    r8: 0n, r9: 0n, r10: 0n, r11: 0n, r12: 0n, r13: 0n, r14: 0n, r15: 0n,
    rip: 0xfff0n, rflags: 2n,
    cs: 0xf000, ss: 0, ds: 0, es: 0, fs: 0, gs: 0,
    fsBase: 0n, gsBase: 0n, kernelGsBase: 0n,
    cr0: 0x60000010n, cr2: 0n, cr3: 0n, cr4: 0n, cr8: 0n, efer: 0n,
  };
}

/**
 * FXSAVE keeps an abridged tag (one bit per physical register: 1 = not empty); gdb and FSTENV
 * use two bits per register: 00 valid, 01 zero, 10 special (NaN, infinity, denormal,
 * unsupported), 11 empty. The full form is derived from the register contents (SDM Vol. 1,
 * 10.5.1.1). `st` is in stack order ST(0)..ST(7); tags are indexed by physical register, and
 * ST(i) is physical register (TOP + i) mod 8 with TOP = FSW bits 13:11.
 */
export function fullTagWord(abridged: number, fstat: number, st: readonly Uint8Array[]): number {
  const top = (fstat >> 11) & 7;
  let tag = 0;
  for (let phys = 0; phys < 8; phys++) {
    let t = 3;
    if (abridged & (1 << phys)) {
      const r = st[(phys - top + 8) & 7];
      t = r ? classifyExtended(r) : 2;
    }
    tag |= t << (2 * phys);
  }
  return tag;
}

/** FXSAVE's abridged tag from a full tag word: a register is present unless its tag is 11. */
export function abridgedTagWord(full: number): number {
  let out = 0;
  for (let phys = 0; phys < 8; phys++) if (((full >> (2 * phys)) & 3) !== 3) out |= 1 << phys;
  return out;
}

function classifyExtended(r: Uint8Array): number {
  const exponent = ((r[9]! & 0x7f) << 8) | r[8]!;
  const integerBit = (r[7]! & 0x80) !== 0;
  const mantissaZero = r.subarray(0, 8).every((b) => b === 0);
  if (exponent === 0x7fff) return 2;
  if (exponent === 0) return mantissaZero ? 1 : 2;
  // A non-zero exponent without the integer bit is an unnormal: special.
  return integerBit ? 0 : 2;
}
