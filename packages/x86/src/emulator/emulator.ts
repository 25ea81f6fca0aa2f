import { CR0, CR4, EFER, EXCEPTION_VECTOR, MSR } from "@tsvmm/abi";
import { decode, MAX_INSN_LENGTH } from "../decoder/decode.js";
import type { Reg, SegmentName } from "../decoder/registers.js";
import type { CpuMode, ImmOperand, Instruction, MemOperand, Operand } from "../decoder/types.js";
import type { AccessKind, X86Cpu } from "./cpu.js";
import { AC, type AluResult, add, CF, DF, incDec, logic, maskOf, neg, type ShiftOp, STATUS, shift, sub, VM, ZF } from "./flags.js";
import { executeSse, isSseMnemonic } from "./sse.js";
import { areaSize, readMxcsr, restoreAreaSize, writeMxcsr, XSAVE_HEADER, type XsaveKind, xrstorLoad, xsaveStore, xstateBv } from "./xsave.js";

/** Exception vectors (SDM vol. 3 table 6-1), abi's architectural set; the emulator raises #DE, #DB, #BP, #OF, #UD, #NM, #SS, #GP, #PF, #MF and #AC. */
export const VECTOR = EXCEPTION_VECTOR;

export type EmulationOutcome =
  | { readonly kind: "executed"; readonly mnemonic: string; readonly length: number; readonly rip: bigint }
  | {
      readonly kind: "exception";
      readonly mnemonic: string | undefined;
      readonly vector: number;
      readonly errorCode: number | undefined;
      readonly cr2: bigint | undefined;
      readonly reason: string;
    }
  | { readonly kind: "unsupported"; readonly mnemonic: string | undefined; readonly bytes: Uint8Array; readonly reason: string };

export interface EmulatorOptions {
  /** MXCSR_MASK of the processor (reserved MXCSR bits are its zeros); default 0xffff. */
  readonly mxcsrMask?: number;
  /** REP string iterations per step; the rest runs on the next step (RIP stays on the instruction). Default 4096. */
  readonly maxRepIterations?: number;
  /**
   * Whose processors to follow where Intel's and AMD's differ (give the guest's CPUID vendor):
   * with "intel", a REP string instruction with 32-bit addressing in 64-bit mode writes ECX,
   * zero-extended, even when ECX is 0 and it does nothing else, so RCX[63:32] read 0 after it; AMD's
   * leave RCX as it was (both measured against the CPUs, test/string.native.test.ts). Default "amd".
   */
  readonly vendor?: "intel" | "amd";
}

/** Raised inside a step: becomes an injected exception. */
class Fault {
  constructor(
    readonly vector: number,
    readonly errorCode: number | undefined,
    readonly reason: string,
    readonly cr2?: bigint,
  ) {}
}
// System descriptor types LAR and LSL accept, as bit sets over the 4-bit type (SDM vol. 2A, LAR
// table 3-57 / LSL table 3-60 in the older numbering). Legacy protected mode: LAR takes the 16/32-bit
// TSSs, the LDT, call and task gates; LSL the TSSs and the LDT. IA-32e mode: LAR takes only the
// 64-bit TSSs and call gate; LSL the LDT, the 64-bit TSSs and type 0 ("upper 8 bytes of a 16-byte
// descriptor": Intel's table; AMD's APM does not list it).
const bits = (...types: number[]) => types.reduce((m, t) => m | (1 << t), 0);
const LAR_SYSTEM_LEGACY = bits(1, 2, 3, 4, 5, 9, 0xb, 0xc);
const LAR_SYSTEM_IA32E = bits(9, 0xb, 0xc);
const LSL_SYSTEM_LEGACY = bits(1, 2, 3, 9, 0xb);
const LSL_SYSTEM_IA32E = bits(0, 2, 9, 0xb);

/** Compare-exchange attempts of one LOCK update before the emulator gives up (another vCPU won every race). */
const MAX_CAS_ATTEMPTS = 100_000;

class Unsupported {
  constructor(readonly reason: string) {}
}


type Loc = { read(): bigint; write(v: bigint): void; bits: number };

/** The state one step works on. */
interface Step {
  insn: Instruction;
  mode: CpuMode;
  cpl: number;
  rip: bigint;
  next: bigint;
  ipMask: bigint;
}

/**
 * Executes one guest instruction at a time over an {@link X86Cpu}: fetch (or take the bytes KVM
 * reported), decode, check mode and privilege, execute, advance RIP — or inject the exception the
 * CPU would raise. Guest faults never escape as JavaScript exceptions; only a failing host interface
 * (a GuestMemoryError from readPhys, say) does.
 */
export class Emulator {
  /** Executed instructions by mnemonic. */
  readonly counts = new Map<string, number>();
  /** Exceptions raised by emulated instructions, by `mnemonic #vector`. */
  readonly faults = new Map<string, number>();
  private readonly mxcsrMask: number;
  private readonly maxRep: number;
  private readonly vendor: "intel" | "amd";

  constructor(
    readonly cpu: X86Cpu,
    options: EmulatorOptions = {},
  ) {
    this.mxcsrMask = options.mxcsrMask ?? 0xffff;
    this.maxRep = options.maxRepIterations ?? 4096;
    this.vendor = options.vendor ?? "amd";
  }

  /** The decoding mode from CR0, EFER.LMA, CS.L/D and RFLAGS.VM. */
  mode(): CpuMode {
    const cr0 = this.cpu.readCr(0);
    if (!(cr0 & CR0.PE)) return "real";
    if (this.cpu.readRflags() & VM) return "v86";
    const cs = this.cpu.readSegment("cs");
    if (this.cpu.readEfer() & EFER.LMA && cs.l) return "long64";
    return cs.db ? "protected32" : "protected16";
  }

  /** Current privilege level: SS.DPL in protected mode (as KVM reports it), 0 in real mode, 3 in v86. */
  cpl(): number {
    const m = this.mode();
    if (m === "real") return 0;
    if (m === "v86") return 3;
    return this.cpu.readSegment("ss").dpl;
  }

  /** Counts by mnemonic as a plain object (for stats lines and traces). */
  stats(): Record<string, number> {
    return Object.fromEntries([...this.counts].sort((a, b) => b[1] - a[1]));
  }

  /**
   * Execute the instruction at RIP. `bytes`, when given, are the instruction bytes KVM reported
   * (kvm_run.emulation_failure.insn_bytes); missing bytes are fetched through the guest's page tables.
   */
  step(bytes?: Uint8Array): EmulationOutcome {
    const mode = this.mode();
    const cpl = this.cpl();
    const rip = this.cpu.readRip();
    let mnemonic: string | undefined;
    try {
      const insn = this.fetchDecode(mode, cpl, rip, bytes);
      mnemonic = insn.mnemonic;
      const ipMask = mode === "long64" ? maskOf(64) : insn.operandSize === 16 && !this.cpu.readSegment("cs").db ? maskOf(16) : maskOf(32);
      const st: Step = { insn, mode, cpl, rip, next: (rip + BigInt(insn.length)) & ipMask, ipMask };
      const newRip = this.execute(st);
      this.cpu.writeRip(newRip);
      this.counts.set(insn.mnemonic, (this.counts.get(insn.mnemonic) ?? 0) + 1);
      return { kind: "executed", mnemonic: insn.mnemonic, length: insn.length, rip: newRip };
    } catch (e) {
      if (e instanceof Fault) {
        const key = `${mnemonic ?? "?"} #${e.vector}`;
        this.faults.set(key, (this.faults.get(key) ?? 0) + 1);
        this.cpu.inject({ kind: "exception", vector: e.vector, errorCode: e.errorCode, cr2: e.cr2, instructionLength: 0 });
        return { kind: "exception", mnemonic, vector: e.vector, errorCode: e.errorCode, cr2: e.cr2, reason: e.reason };
      }
      if (e instanceof Unsupported) return { kind: "unsupported", mnemonic, bytes: bytes ?? new Uint8Array(0), reason: e.reason };
      throw e;
    }
  }

  // ---- fetch and decode -------------------------------------------------------------------

  private fetchDecode(mode: CpuMode, cpl: number, rip: bigint, given: Uint8Array | undefined): Instruction {
    let buf = given !== undefined && given.length > 0 ? Uint8Array.from(given.subarray(0, MAX_INSN_LENGTH)) : new Uint8Array(0);
    for (let attempt = 0; attempt < 3; attempt++) {
      const r = decode(buf, mode);
      if (r.ok) return r.insn;
      if (r.reason === "invalid") throw new Fault(VECTOR.UD, undefined, r.detail);
      if (r.reason === "too-long") throw new Fault(VECTOR.GP, 0, r.detail);
      // Truncated: fetch up to the end of the page holding the next byte (never past 15 bytes).
      const off = (rip + BigInt(buf.length)) & (mode === "long64" ? maskOf(64) : maskOf(32));
      const lin = this.linear("cs", off, 1, "fetch", mode, cpl);
      const toPageEnd = 4096 - Number(lin & 0xfffn);
      const n = Math.min(MAX_INSN_LENGTH - buf.length, toPageEnd);
      const more = this.readLinear(lin, n, "fetch", cpl);
      const next = new Uint8Array(buf.length + n);
      next.set(buf);
      next.set(more, buf.length);
      buf = next;
    }
    throw new Fault(VECTOR.GP, 0, "instruction does not decode within 15 bytes");
  }

  // ---- registers ----------------------------------------------------------------------------

  private getReg(r: Reg): bigint {
    if (r.cls !== "gpr") throw new Unsupported(`register ${r.name}`);
    const v = this.cpu.readGpr(r.index);
    if (r.high8) return (v >> 8n) & 0xffn;
    return v & maskOf(r.bits);
  }

  private setReg(r: Reg, value: bigint): void {
    if (r.cls !== "gpr") throw new Unsupported(`register ${r.name}`);
    const v = value & maskOf(r.bits);
    if (r.bits === 64 || r.bits === 32) {
      this.cpu.writeGpr(r.index, v);
      return;
    }
    const old = this.cpu.readGpr(r.index);
    if (r.high8) this.cpu.writeGpr(r.index, (old & ~0xff00n) | (v << 8n));
    else this.cpu.writeGpr(r.index, (old & ~maskOf(r.bits)) | v);
  }

  private gprN(index: number, bits: number): bigint {
    return this.cpu.readGpr(index) & maskOf(bits);
  }

  private setFlags(mask: bigint, values: bigint): void {
    const f = this.cpu.readRflags();
    this.cpu.writeRflags((f & ~mask) | (values & mask));
  }

  // ---- memory -------------------------------------------------------------------------------

  private effectiveOffset(m: MemOperand, st: Step): bigint {
    const am = maskOf(m.addressBits);
    if (m.absolute) return m.disp & am;
    let v = m.disp;
    if (m.ripRelative) v += st.next;
    if (m.base !== undefined) v += this.gprN(m.base.index, m.addressBits);
    if (m.index !== undefined) v += this.gprN(m.index.index, m.addressBits) * BigInt(m.scale);
    return v & am;
  }

  /** Segment base + offset with the segmentation checks of the mode; #GP(0)/#SS(0) on violation. */
  private linear(segName: SegmentName, offset: bigint, size: number, access: AccessKind, mode: CpuMode, _cpl: number): bigint {
    const vec = segName === "ss" ? VECTOR.SS : VECTOR.GP;
    if (mode === "long64") {
      const base = segName === "fs" || segName === "gs" ? this.cpu.readSegment(segName).base : 0n;
      const lin = BigInt.asUintN(64, base + offset);
      const la57 = (this.cpu.readCr(4) & CR4.LA57) !== 0n;
      const bits = la57 ? 57n : 48n;
      const last = BigInt.asUintN(64, lin + BigInt(size - 1));
      for (const a of [lin, last]) {
        const top = BigInt.asIntN(64, a) >> (bits - 1n);
        if (top !== 0n && top !== -1n) throw new Fault(vec, 0, `non-canonical address 0x${a.toString(16)}`);
      }
      return lin;
    }
    const seg = this.cpu.readSegment(segName);
    if (mode !== "real" && mode !== "v86") {
      if (seg.unusable === true) throw new Fault(vec, 0, `${segName} is unusable`);
      const code = (seg.type & 8) !== 0;
      if (access === "write" && (code || (seg.type & 2) === 0)) throw new Fault(vec, 0, `${segName} is not writable`);
      if (access === "read" && code && (seg.type & 2) === 0) throw new Fault(vec, 0, `${segName} is execute-only`);
      const end = offset + BigInt(size - 1);
      if (!code && (seg.type & 4) !== 0) {
        const upper = seg.db ? 0xffffffffn : 0xffffn;
        if (offset <= BigInt(seg.limit) || end > upper) throw new Fault(vec, 0, `${segName} expand-down limit`);
      } else if (end > BigInt(seg.limit)) {
        throw new Fault(vec, 0, `${segName} limit 0x${seg.limit.toString(16)} exceeded`);
      }
    }
    return BigInt.asUintN(32, seg.base + offset);
  }

  /** Guest-physical pieces [gpa, length] of a linear range, page by page. */
  private pieces(lin: bigint, size: number, access: AccessKind, cpl: number): [bigint, number][] {
    const paging = (this.cpu.readCr(0) & CR0.PG) !== 0n;
    const out: [bigint, number][] = [];
    let a = lin;
    let left = size;
    while (left > 0) {
      const n = Math.min(left, 4096 - Number(a & 0xfffn));
      if (!paging) out.push([a & maskOf(32), n]);
      else {
        const t = this.cpu.translate(a, access, cpl);
        if (typeof t !== "bigint") throw new Fault(VECTOR.PF, t.errorCode, `page fault at 0x${t.cr2.toString(16)}`, t.cr2);
        out.push([t, n]);
      }
      a = BigInt.asUintN(64, a + BigInt(n));
      left -= n;
    }
    return out;
  }

  private readPieces(p: [bigint, number][]): Uint8Array {
    if (p.length === 1) return this.cpu.readPhys(p[0]![0], p[0]![1]);
    const total = p.reduce((s, x) => s + x[1], 0);
    const out = new Uint8Array(total);
    let o = 0;
    for (const [g, n] of p) {
      out.set(this.cpu.readPhys(g, n), o);
      o += n;
    }
    return out;
  }

  private writePieces(p: [bigint, number][], data: Uint8Array): void {
    let o = 0;
    for (const [g, n] of p) {
      this.cpu.writePhys(g, data.subarray(o, o + n));
      o += n;
    }
  }

  private readLinear(lin: bigint, size: number, access: AccessKind, cpl: number): Uint8Array {
    return this.readPieces(this.pieces(lin, size, access, cpl));
  }

  /** Resolve a memory operand (segmentation and paging) for `access`; the returned pieces serve reads and writes. */
  private resolve(m: MemOperand, bytes: number, access: AccessKind, st: Step, offset?: bigint): [bigint, number][] {
    const off = offset ?? this.effectiveOffset(m, st);
    const lin = this.linear(m.segment, off, bytes, access, st.mode, st.cpl);
    return this.pieces(lin, bytes, access, st.cpl);
  }

  /**
   * Replace the bytes of `p` by `f(old)` and return `old`. On guest RAM with a CPU that offers
   * compareExchangePhys this is a compare-exchange loop on the aligned 8 or 16 bytes holding the
   * operand, so a vCPU running natively at the same time neither loses its update nor sees a torn
   * one. `guess` is the first expected value (EDX:EAX for CMPXCHG8B/16B); with none the first
   * attempt expects zeros, so nothing is read before the CPU says whether the address is RAM (an
   * MMIO read can have side effects). A split-lock operand (across a page boundary, or not within
   * one aligned 16 bytes), MMIO, or a CPU without compareExchangePhys take a plain read and write:
   * correct only while the other vCPUs are stopped, which is all the emulator can do there (the
   * processor itself takes a bus lock for a split lock).
   */
  private atomicUpdate(p: [bigint, number][], f: (old: Uint8Array) => Uint8Array, guess?: Uint8Array): Uint8Array {
    const cas = this.cpu.compareExchangePhys?.bind(this.cpu);
    if (p.length === 1 && cas !== undefined) {
      const [gpa, size] = p[0]!;
      const win = BigInt.asUintN(64, gpa + BigInt(size) - 1n) >> 3n === gpa >> 3n ? 8 : BigInt.asUintN(64, gpa + BigInt(size) - 1n) >> 4n === gpa >> 4n ? 16 : 0;
      if (win !== 0) {
        const base = gpa & ~BigInt(win - 1);
        const at = Number(gpa - base);
        let cur = new Uint8Array(win);
        if (guess !== undefined) cur.set(guess, at);
        for (let attempt = 0; ; attempt++) {
          const old = cur.slice(at, at + size);
          const next = Uint8Array.from(cur);
          next.set(f(old), at);
          const seen = cas(base, cur, next);
          if (seen === undefined) break; // not RAM: the plain path below
          if (equalBytes(seen, cur)) return old;
          // Another vCPU won every race: stop the VM rather than spin the VMM's thread for ever.
          if (attempt >= MAX_CAS_ATTEMPTS) throw new Unsupported(`LOCK operand at 0x${gpa.toString(16)} changed under ${MAX_CAS_ATTEMPTS} compare-exchange attempts`);
          cur = Uint8Array.from(seen);
        }
      }
    }
    const old = this.readPieces(p);
    this.writePieces(p, f(old));
    return old;
  }

  /**
   * Read-modify-write of a destination operand. With LOCK on a memory operand the update is
   * atomic (see {@link atomicUpdate}); `source` is read once before the update, so a retry does not
   * read it again.
   */
  private rmw(o: Operand, st: Step, f: (a: bigint, source: () => bigint) => bigint, source?: () => bigint): void {
    if (o.kind === "mem") {
      const bytes = o.bits / 8;
      const p = this.resolve(o, bytes, "write", st);
      const b = source?.();
      const src = () => b ?? 0n;
      if (st.insn.prefixes.lock) {
        this.atomicUpdate(p, (old) => bigToBytes(f(bytesToBig(old), src), bytes));
        return;
      }
      this.writePieces(p, bigToBytes(f(bytesToBig(this.readPieces(p)), src), bytes));
      return;
    }
    const dst = this.loc(o, st, "rmw");
    const b = source?.();
    dst.write(f(dst.read(), () => b ?? 0n));
  }

  // ---- operands -----------------------------------------------------------------------------

  private loc(o: Operand, st: Step, access: "read" | "write" | "rmw"): Loc {
    if (o.kind === "reg") {
      const r = o.reg;
      return { bits: r.bits, read: () => this.getReg(r), write: (v) => this.setReg(r, v) };
    }
    if (o.kind === "mem") {
      const bytes = o.bits / 8;
      const p = this.resolve(o, bytes, access === "read" ? "read" : "write", st);
      return {
        bits: o.bits,
        read: () => bytesToBig(this.readPieces(p)),
        write: (v) => this.writePieces(p, bigToBytes(v, bytes)),
      };
    }
    if (o.kind === "imm") {
      const v = o.value;
      return {
        bits: o.bits,
        read: () => v,
        write: () => {
          throw new Unsupported("write to an immediate");
        },
      };
    }
    throw new Unsupported("far pointer operand");
  }

  // ---- execution ----------------------------------------------------------------------------

  private requireCpl0(st: Step, what: string): void {
    if (st.cpl !== 0) throw new Fault(VECTOR.GP, 0, `${what} at CPL${st.cpl}`);
  }

  private requireOsxsave(): void {
    if (!(this.cpu.readCr(4) & CR4.OSXSAVE)) throw new Fault(VECTOR.UD, undefined, "CR4.OSXSAVE = 0");
  }

  /** Execute; returns the new RIP. */
  private execute(st: Step): bigint {
    const i = st.insn;
    const ops = i.operands;
    switch (i.mnemonic) {
      case "mov":
      case "movabs": {
        if (ops.some((o) => o.kind === "reg" && o.reg.cls !== "gpr")) throw new Unsupported("MOV with a segment, control or debug register");
        const v = this.loc(ops[1]!, st, "read").read();
        this.loc(ops[0]!, st, "write").write(v);
        return st.next;
      }
      case "movzx":
      case "movsx":
      case "movsxd": {
        const src = this.loc(ops[1]!, st, "read");
        const dst = ops[0]!;
        let v = src.read();
        if (i.mnemonic !== "movzx") v = BigInt.asUintN(64, BigInt.asIntN(src.bits, v));
        this.loc(dst, st, "write").write(v);
        return st.next;
      }
      case "add":
      case "or":
      case "adc":
      case "sbb":
      case "and":
      case "sub":
      case "xor":
      case "cmp":
      case "test": {
        const write = i.mnemonic !== "cmp" && i.mnemonic !== "test";
        const bits = operandBits(ops[0]!);
        const cf = (this.cpu.readRflags() & CF) !== 0n ? 1n : 0n;
        let r: AluResult | undefined;
        const compute = (a: bigint, b: bigint): bigint => {
          r =
            i.mnemonic === "add" ? add(a, b, 0n, bits)
            : i.mnemonic === "adc" ? add(a, b, cf, bits)
            : i.mnemonic === "sub" || i.mnemonic === "cmp" ? sub(a, b, 0n, bits)
            : i.mnemonic === "sbb" ? sub(a, b, cf, bits)
            : logic(i.mnemonic === "or" ? a | b : i.mnemonic === "xor" ? a ^ b : a & b, bits);
          return r.value;
        };
        if (write) {
          this.rmw(ops[0]!, st, (a, srcRead) => compute(a, srcRead()), () => this.loc(ops[1]!, st, "read").read() & maskOf(bits));
        } else {
          const a = this.loc(ops[0]!, st, "read").read();
          compute(a, this.loc(ops[1]!, st, "read").read() & maskOf(bits));
        }
        this.setFlags(r!.mask, r!.flags);
        return st.next;
      }
      case "inc":
      case "dec":
      case "neg":
      case "not": {
        const bits = operandBits(ops[0]!);
        if (i.mnemonic === "not") {
          this.rmw(ops[0]!, st, (a) => ~a & maskOf(bits));
          return st.next;
        }
        let r: AluResult | undefined;
        this.rmw(ops[0]!, st, (a) => {
          r = i.mnemonic === "neg" ? neg(a, bits) : incDec(a, i.mnemonic === "dec", bits);
          return r.value;
        });
        this.setFlags(r!.mask, r!.flags);
        return st.next;
      }
      case "rol":
      case "ror":
      case "rcl":
      case "rcr":
      case "shl":
      case "sal":
      case "shr":
      case "sar": {
        const dst = this.loc(ops[0]!, st, "rmw");
        const count = this.loc(ops[1]!, st, "read").read();
        const cf = (this.cpu.readRflags() & CF) !== 0n;
        const r = shift(i.mnemonic as ShiftOp, dst.read(), count, cf, dst.bits);
        // A zero count still writes a register destination (a 32-bit one is zero-extended, as the CPU does).
        if (r.mask === 0n) {
          if (ops[0]!.kind === "reg") dst.write(r.value);
          return st.next;
        }
        dst.write(r.value);
        // AF is undefined after a shift by a non-zero count; cleared here (documented in flags.ts).
        this.setFlags(r.mask, r.flags);
        return st.next;
      }
      case "movsb":
      case "movsw":
      case "movsd":
      case "movsq":
      case "stosb":
      case "stosw":
      case "stosd":
      case "stosq":
        if (i.map !== "primary") return this.sse(st);
        return this.stringOp(st);
      case "cmpxchg8b":
      case "cmpxchg16b":
        return this.cmpxchgWide(st);
      case "lar":
      case "lsl":
        return this.larLsl(st);
      case "popcnt": {
        const src = this.loc(ops[1]!, st, "read").read();
        let n = 0n;
        for (let v = src; v !== 0n; v &= v - 1n) n++;
        this.loc(ops[0]!, st, "write").write(n);
        this.setFlags(STATUS, src === 0n ? ZF : 0n);
        return st.next;
      }
      case "int3":
        this.cpu.inject({ kind: "software-exception", vector: VECTOR.BP, errorCode: undefined, cr2: undefined, instructionLength: i.length });
        return st.next;
      case "int": {
        const imm = ops[0] as ImmOperand;
        if (st.mode === "v86" && ((this.cpu.readRflags() >> 12n) & 3n) !== 3n) throw new Fault(VECTOR.GP, 0, "INT n in v86 mode with IOPL < 3");
        this.cpu.inject({ kind: "software-interrupt", vector: Number(imm.value), errorCode: undefined, cr2: undefined, instructionLength: i.length });
        return st.next;
      }
      case "clac":
      case "stac":
        if (st.cpl > 0 || st.mode === "real" || st.mode === "v86") throw new Fault(VECTOR.UD, undefined, `${i.mnemonic} outside CPL0`);
        this.setFlags(AC, i.mnemonic === "stac" ? AC : 0n);
        return st.next;
      case "fwait": {
        const cr0 = this.cpu.readCr(0);
        if (cr0 & CR0.TS && cr0 & CR0.MP) throw new Fault(VECTOR.NM, undefined, "FWAIT with CR0.TS and CR0.MP");
        // A pending unmasked x87 exception (FSW.ES) would raise #MF here: the state image says.
        const img = this.cpu.readXsaveState();
        const fsw = img[2]! | (img[3]! << 8);
        const fcw = img[0]! | (img[1]! << 8);
        if ((xstateBv(img) & 1n) !== 0n && fsw & 0x3f & ~fcw) throw new Fault(VECTOR.MF, undefined, "pending x87 exception");
        return st.next;
      }
      case "ldmxcsr":
      case "stmxcsr":
      case "vldmxcsr":
      case "vstmxcsr":
        return this.mxcsrOp(st);
      case "xgetbv": {
        this.requireOsxsave();
        const ecx = this.gprN(1, 32);
        let v: bigint;
        if (ecx === 0n) v = this.cpu.readXcr0();
        else if (ecx === 1n) v = this.cpu.readXcr0() & (xstateBv(this.cpu.readXsaveState()) | 1n);
        else throw new Fault(VECTOR.GP, 0, `XGETBV ECX=${ecx}`);
        this.cpu.writeGpr(0, v & 0xffffffffn);
        this.cpu.writeGpr(2, v >> 32n);
        return st.next;
      }
      case "xsetbv": {
        this.requireOsxsave();
        this.requireCpl0(st, "XSETBV");
        const ecx = this.gprN(1, 32);
        const v = (this.gprN(2, 32) << 32n) | this.gprN(0, 32);
        const supported = this.cpu.xsaveLayout().supportedXcr0;
        if (ecx !== 0n) throw new Fault(VECTOR.GP, 0, `XSETBV ECX=${ecx}`);
        // SDM vol. 1 13.3: x87 always on; AVX needs SSE; AVX-512 state comes as a set with AVX; BNDREG with BNDCSR.
        if (!(v & 1n) || v & ~supported || (v & 4n && !(v & 2n)) || (v & 0xe0n && (v & 0xe0n) !== 0xe0n) || (v & 0xe0n && !(v & 4n)) || ((v >> 3n) & 1n) !== ((v >> 4n) & 1n)) {
          throw new Fault(VECTOR.GP, 0, `XSETBV value 0x${v.toString(16)}`);
        }
        this.cpu.writeXcr0(v);
        return st.next;
      }
      case "xsave":
      case "xsave64":
      case "xsaveopt":
      case "xsaveopt64":
      case "xsavec":
      case "xsavec64":
      case "xsaves":
      case "xsaves64":
        return this.xsave(st, i.mnemonic.replace(/64$/, "") as XsaveKind);
      case "xrstor":
      case "xrstor64":
      case "xrstors":
      case "xrstors64":
        return this.xrstor(st, i.mnemonic.startsWith("xrstors"));
      case "rdrand":
      case "rdseed": {
        const dst = ops[0] as Extract<Operand, { kind: "reg" }>;
        const b = this.cpu.randomBytes(dst.reg.bits / 8);
        this.setReg(dst.reg, bytesToBig(b));
        this.setFlags(STATUS, CF);
        return st.next;
      }
      case "rdpid": {
        const aux = this.cpu.readMsr(MSR.TSC_AUX);
        if (aux === undefined) throw new Fault(VECTOR.UD, undefined, "no IA32_TSC_AUX");
        this.setReg((ops[0] as Extract<Operand, { kind: "reg" }>).reg, aux);
        return st.next;
      }
      case "rdtscp": {
        if (this.cpu.readCr(4) & CR4.TSD && st.cpl > 0) throw new Fault(VECTOR.GP, 0, "RDTSCP with CR4.TSD at CPL>0");
        const tsc = this.cpu.readTsc();
        const aux = this.cpu.readMsr(MSR.TSC_AUX) ?? 0n;
        this.cpu.writeGpr(0, tsc & 0xffffffffn);
        this.cpu.writeGpr(2, (tsc >> 32n) & 0xffffffffn);
        this.cpu.writeGpr(1, aux & 0xffffffffn);
        return st.next;
      }
      case "nop":
      case "pause":
        return st.next;
      case "ud0":
      case "ud1":
      case "ud2":
        throw new Fault(VECTOR.UD, undefined, i.mnemonic);
      default:
        if (isSseMnemonic(i.mnemonic)) return this.sse(st);
        throw new Unsupported(`${i.mnemonic} is not emulated`);
    }
  }

  private stringOp(st: Step): bigint {
    const i = st.insn;
    const isMovs = i.mnemonic.startsWith("movs");
    const bytes = i.mnemonic.endsWith("b") ? 1 : i.operandSize / 8;
    const aBits = i.addressSize;
    const am = maskOf(aBits);
    const rep = i.prefixes.rep !== undefined;
    const df = (this.cpu.readRflags() & DF) !== 0n;
    const step = BigInt(df ? -bytes : bytes);
    const dstOp = i.operands[0] as MemOperand;
    const srcOp = i.operands[1]!;
    let count = rep ? this.gprN(1, aBits) : 1n;
    if (rep && count === 0n && aBits === 32 && this.vendor === "intel") this.cpu.writeGpr(1, 0n);
    let n = 0;
    while (count > 0n && n < this.maxRep) {
      const rdi = this.gprN(7, aBits);
      let data: Uint8Array;
      if (isMovs) {
        const rsi = this.gprN(6, aBits);
        data = this.readPieces(this.resolve(srcOp as MemOperand, bytes, "read", st, rsi));
      } else {
        data = bigToBytes(this.getReg((srcOp as Extract<Operand, { kind: "reg" }>).reg), bytes);
      }
      this.writePieces(this.resolve(dstOp, bytes, "write", st, rdi), data);
      // Registers advance only after the element is done, so a fault leaves them at the faulting element.
      this.setAddrReg(7, (rdi + step) & am, aBits);
      if (isMovs) this.setAddrReg(6, (this.gprN(6, aBits) + step) & am, aBits);
      if (rep) {
        count--;
        this.setAddrReg(1, count, aBits);
      } else count = 0n;
      n++;
    }
    // An unfinished REP leaves RIP on the instruction: the guest (or the next step) resumes it.
    return rep && count > 0n ? st.rip : st.next;
  }

  private setAddrReg(index: number, v: bigint, aBits: number): void {
    if (aBits === 16) {
      const old = this.cpu.readGpr(index);
      this.cpu.writeGpr(index, (old & ~0xffffn) | v);
    } else this.cpu.writeGpr(index, v);
  }

  private cmpxchgWide(st: Step): bigint {
    const i = st.insn;
    const m = i.operands[0] as MemOperand;
    const wide = i.mnemonic === "cmpxchg16b";
    const half = wide ? 64 : 32;
    const size = wide ? 16 : 8;
    const off = this.effectiveOffset(m, st);
    const lin = this.linear(m.segment, off, size, "write", st.mode, st.cpl);
    if (wide && (lin & 15n) !== 0n) throw new Fault(VECTOR.GP, 0, "CMPXCHG16B operand not 16-byte aligned");
    const p = this.pieces(lin, size, "write", st.cpl);
    const expected = bigToBytes((this.gprN(2, half) << BigInt(half)) | this.gprN(0, half), size);
    const desired = bigToBytes((this.gprN(1, half) << BigInt(half)) | this.gprN(3, half), size);
    // The processor writes the destination in both cases (the old value back when they differ).
    const old = this.atomicUpdate(p, (o) => (equalBytes(o, expected) ? desired : o), expected);
    const equal = equalBytes(old, expected);
    if (!equal) {
      const v = bytesToBig(old);
      this.cpu.writeGpr(0, v & maskOf(half));
      this.cpu.writeGpr(2, v >> BigInt(half));
    }
    this.setFlags(ZF, equal ? ZF : 0n);
    return st.next;
  }

  /**
   * LAR / LSL (SDM vol. 2A): read the descriptor the selector names from the GDT or LDT through
   * guest memory and, when the selector is not null, lies within the table, names a type the
   * instruction accepts and is visible (CPL and RPL <= DPL, unless conforming code), load its
   * access rights or byte-granular limit and set ZF; otherwise clear ZF and leave the destination
   * alone. Descriptor reads are supervisor accesses whatever the CPL; they fault (#PF) like any read.
   */
  private larLsl(st: Step): bigint {
    const i = st.insn;
    if (st.mode === "real" || st.mode === "v86") throw new Fault(VECTOR.UD, undefined, `${i.mnemonic} in ${st.mode} mode`);
    const dst = (i.operands[0] as Extract<Operand, { kind: "reg" }>).reg;
    const selector = Number(this.loc(i.operands[1]!, st, "read").read() & 0xffffn);
    const desc = this.readDescriptor(selector);
    let value: bigint | undefined;
    if (desc !== undefined) {
      const hi = Number(desc >> 32n) >>> 0;
      const type = (hi >>> 8) & 0xf;
      const system = (hi & 0x1000) === 0;
      const dpl = (hi >>> 13) & 3;
      const conformingCode = !system && (type & 0xc) === 0xc;
      const ia32e = (this.cpu.readEfer() & EFER.LMA) !== 0n;
      const lar = i.mnemonic === "lar";
      const validTypes = system ? (lar ? (ia32e ? LAR_SYSTEM_IA32E : LAR_SYSTEM_LEGACY) : ia32e ? LSL_SYSTEM_IA32E : LSL_SYSTEM_LEGACY) : 0xffff;
      const visible = conformingCode || (st.cpl <= dpl && (selector & 3) <= dpl);
      if (((validTypes >>> type) & 1) !== 0 && visible) {
        if (lar) value = BigInt(hi & (dst.bits === 16 ? 0xff00 : 0x00ffff00));
        else {
          const raw = (Number(desc & 0xffffn) | (hi & 0xf0000)) >>> 0;
          value = hi & 0x800000 ? BigInt(raw) * 4096n + 4095n : BigInt(raw);
        }
      }
    }
    if (value !== undefined) this.setReg(dst, value);
    this.setFlags(ZF, value !== undefined ? ZF : 0n);
    return st.next;
  }

  /** The 8-byte descriptor `selector` names, or undefined when it is null or past its table's limit. */
  private readDescriptor(selector: number): bigint | undefined {
    const ldt = (selector & 4) !== 0;
    if (!ldt && selector >>> 2 === 0) return undefined;
    const table = this.cpu.readDescriptorTable(ldt ? "ldt" : "gdt");
    const offset = selector & 0xfff8;
    if (table === undefined || offset + 7 > table.limit) return undefined;
    const lin = table.base + BigInt(offset);
    // In IA-32e mode (compatibility mode too) GDTR and LDTR hold 64-bit bases.
    const la = (this.cpu.readEfer() & EFER.LMA) !== 0n ? BigInt.asUintN(64, lin) : BigInt.asUintN(32, lin);
    return bytesToBig(this.readLinear(la, 8, "read", 0));
  }

  /** SSE/x87 state instruction preconditions: #UD without OSFXSR or with CR0.EM, #NM with CR0.TS. */
  private requireSse(vex: boolean): void {
    const cr0 = this.cpu.readCr(0);
    const cr4 = this.cpu.readCr(4);
    if (vex) {
      if (!(cr4 & CR4.OSXSAVE) || (this.cpu.readXcr0() & 6n) !== 6n) throw new Fault(VECTOR.UD, undefined, "VEX without OSXSAVE and XCR0.SSE|AVX");
    } else if (cr0 & CR0.EM || !(cr4 & CR4.OSFXSR)) throw new Fault(VECTOR.UD, undefined, "SSE with CR0.EM or without CR4.OSFXSR");
    if (cr0 & CR0.TS) throw new Fault(VECTOR.NM, undefined, "CR0.TS");
  }

  private mxcsrOp(st: Step): bigint {
    const i = st.insn;
    this.requireSse(i.encoding === "vex");
    const m = i.operands[0] as MemOperand;
    const img = this.cpu.readXsaveState();
    if (i.mnemonic.endsWith("ldmxcsr")) {
      const v = Number(bytesToBig(this.readPieces(this.resolve(m, 4, "read", st))));
      if (v & ~this.mxcsrMask) throw new Fault(VECTOR.GP, 0, `MXCSR 0x${v.toString(16)} sets reserved bits`);
      writeMxcsr(img, v);
      this.cpu.writeXsaveState(img);
    } else {
      this.writePieces(this.resolve(m, 4, "write", st), bigToBytes(BigInt(readMxcsr(img)), 4));
    }
    return st.next;
  }

  private xsaveCommon(st: Step, supervisor: boolean): { m: MemOperand; rfbm: bigint; lin: bigint } {
    this.requireOsxsave();
    if (this.cpu.readCr(0) & CR0.TS) throw new Fault(VECTOR.NM, undefined, "CR0.TS");
    if (supervisor) this.requireCpl0(st, st.insn.mnemonic);
    const m = st.insn.operands[0] as MemOperand;
    let enabled = this.cpu.readXcr0();
    if (supervisor) enabled |= this.cpu.readMsr(MSR.IA32_XSS) ?? 0n;
    const rfbm = enabled & ((this.gprN(2, 32) << 32n) | this.gprN(0, 32));
    const off = this.effectiveOffset(m, st);
    const lin = this.linear(m.segment, off, 1, "read", st.mode, st.cpl);
    if ((lin & 63n) !== 0n) throw new Fault(VECTOR.GP, 0, "XSAVE area not 64-byte aligned");
    return { m, rfbm, lin };
  }

  private xsave(st: Step, kind: XsaveKind): bigint {
    const supervisor = kind === "xsaves";
    const { m, rfbm } = this.xsaveCommon(st, supervisor);
    const layout = this.cpu.xsaveLayout();
    const compacted = kind === "xsavec" || kind === "xsaves";
    const size = areaSize(rfbm, compacted, layout);
    const p = this.resolve(m, size, "write", st);
    const area = this.readPieces(p);
    const oldBv = bytesToBig(area.subarray(XSAVE_HEADER.offset, XSAVE_HEADER.offset + 8));
    const img = this.cpu.readXsaveState();
    const writes = xsaveStore(kind, img, layout, rfbm, oldBv, st.mode === "long64" ? 16 : 8);
    for (const [o, b] of writes) area.set(b, o);
    this.writePieces(p, area);
    return st.next;
  }

  private xrstor(st: Step, supervisor: boolean): bigint {
    const { m, rfbm } = this.xsaveCommon(st, supervisor);
    const layout = this.cpu.xsaveLayout();
    const off = this.effectiveOffset(m, st);
    const header = this.readPieces(this.resolve(m, XSAVE_HEADER.size, "read", st, off + BigInt(XSAVE_HEADER.offset)));
    const size = restoreAreaSize(header, rfbm, layout);
    const area = this.readPieces(this.resolve(m, size, "read", st));
    let enabled = this.cpu.readXcr0();
    if (supervisor) enabled |= this.cpu.readMsr(MSR.IA32_XSS) ?? 0n;
    const r = xrstorLoad(area, this.cpu.readXsaveState(), layout, rfbm, enabled, supervisor, this.mxcsrMask, st.mode === "long64" ? 16 : 8);
    if (!(r instanceof Uint8Array)) throw new Fault(VECTOR.GP, 0, r.gp);
    this.cpu.writeXsaveState(r);
    return st.next;
  }

  private sse(st: Step): bigint {
    const i = st.insn;
    this.requireSse(i.encoding === "vex");
    if (i.encoding === "vex" && i.prefixes.vex!.vvvv !== 0 && /^v(movdq[au]|mov[dq])$/.test(i.mnemonic)) {
      throw new Fault(VECTOR.UD, undefined, "VEX.vvvv must be 1111b");
    }
    const img = this.cpu.readXsaveState();
    const io = {
      read: (o: MemOperand, bytes: number, aligned: boolean): Uint8Array => {
        const off = this.effectiveOffset(o, st);
        if (aligned && (this.linear(o.segment, off, 1, "read", st.mode, st.cpl) & BigInt(bytes - 1)) !== 0n) throw new Fault(VECTOR.GP, 0, "misaligned");
        return this.readPieces(this.resolve(o, bytes, "read", st, off));
      },
      write: (o: MemOperand, data: Uint8Array, aligned: boolean): void => {
        const off = this.effectiveOffset(o, st);
        if (aligned && (this.linear(o.segment, off, 1, "write", st.mode, st.cpl) & BigInt(data.length - 1)) !== 0n) throw new Fault(VECTOR.GP, 0, "misaligned");
        this.writePieces(this.resolve(o, data.length, "write", st, off), data);
      },
      getGpr: (r: Reg) => this.getReg(r),
      setGpr: (r: Reg, v: bigint) => this.setReg(r, v),
      unsupported: (why: string): never => {
        throw new Unsupported(why);
      },
      layout: this.cpu.xsaveLayout(),
    };
    const changed = executeSse(i, img, io);
    if (changed) this.cpu.writeXsaveState(img);
    return st.next;
  }
}

export function bytesToBig(b: Uint8Array): bigint {
  let v = 0n;
  for (let k = b.length - 1; k >= 0; k--) v = (v << 8n) | BigInt(b[k]!);
  return v;
}

export function bigToBytes(v: bigint, n: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = BigInt.asUintN(n * 8, v);
  for (let k = 0; k < n; k++) {
    out[k] = Number(x & 0xffn);
    x >>= 8n;
  }
  return out;
}

/** Width in bits of a register or memory operand. */
function operandBits(o: Operand): number {
  if (o.kind === "reg") return o.reg.bits;
  if (o.kind === "mem" || o.kind === "imm") return o.bits;
  return 0;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, k) => x === b[k]);
}
