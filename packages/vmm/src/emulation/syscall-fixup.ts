import { IdtGate64Layout } from "./descriptors.js";
import type { KvmCpu } from "./kvm-cpu.js";

// PVM's user-mode SYSCALL (README "Instruction emulation", "SYSCALL from user mode"): on this host a
// SYSCALL at CPL3 loads RIP = LSTAR but stays at CPL3, so the kernel's entry code faults on its first
// fetch and the kernel's #PF handler sees a user fault at LSTAR (and kills the process). The VMM
// turns that #PF back into the syscall entry the processor should have made.
//
// Where the VMM gets control: at the first instruction of the kernel's #PF handler. That
// instruction is made to fail KVM's emulation by an INT3 byte the VMM writes over it (INT3 at CPL0
// is an emulation failure on this host, so this works whatever the guest sees of SMAP); the VMM
// then either rewrites the frame into a syscall entry or executes the displaced instruction itself.

const MSR_STAR = 0xc0000081;
const MSR_LSTAR = 0xc0000082;
const MSR_FMASK = 0xc0000084;
const EFER_SCE = 1n;
const EFER_LMA = 1n << 10n;
const RFLAGS_RF = 1n << 16n;
const VECTOR_PF = 14;
const INT3 = 0xcc;
/** How far into the handler the check still applies (ENDBR64 + CLAC precede any stack change). */
const ENTRY_WINDOW = 16n;

interface Breakpoint {
  readonly idtBase: bigint;
  readonly linear: bigint;
  readonly gpa: bigint;
  readonly original: number;
}

export type FixupResult =
  /** The #PF frame was a SYSCALL stuck at CPL3: the vCPU now enters LSTAR at CPL0. */
  | { readonly kind: "syscall" }
  /** The VMM's breakpoint at the handler entry, not a SYSCALL: emulate these bytes (the original instruction) instead. */
  | { readonly kind: "breakpoint"; readonly bytes: Uint8Array }
  | undefined;

/**
 * The breakpoint is a change to guest memory, so it belongs to the VM, not to one vCPU: every
 * vCPU's fix-up over the same memory shares it (a second vCPU must not take our INT3 for the original byte).
 */
const breakpoints = new WeakMap<object, { bp: Breakpoint | undefined }>();

export class SyscallFixup {
  /** SYSCALLs turned into kernel entries. */
  fixed = 0;
  private shared: { bp: Breakpoint | undefined } | undefined;
  private get bp(): Breakpoint | undefined {
    return this.shared?.bp;
  }
  /** LSTAR once the kernel has set it (it never moves after syscall_init): one KVM_GET_MSRS less per exit. */
  private lstar = 0n;

  /**
   * Call at an emulation failure, before emulating. Installs the handler-entry breakpoint once the
   * kernel has its SYSCALL MSRs and IDT, and recognises a stuck SYSCALL from the frame.
   */
  check(cpu: KvmCpu): FixupResult {
    const sregs = cpu.kvmSregs;
    if ((sregs.efer & EFER_LMA) === 0n || (sregs.efer & EFER_SCE) === 0n || sregs.cs.l === 0 || sregs.ss.dpl !== 0) return undefined;
    if (this.lstar === 0n) this.lstar = cpu.readMsr(MSR_LSTAR) ?? 0n;
    const lstar = this.lstar;
    if (lstar === 0n) return undefined;
    const entry = this.ensureBreakpoint(cpu);
    if (entry === undefined) return undefined;
    const rip = cpu.kvmRegs.rip;
    if (rip < entry || rip >= entry + ENTRY_WINDOW) return undefined;
    if (this.frameIsStuckSyscall(cpu, lstar)) {
      this.enterSyscall(cpu, lstar);
      this.fixed++;
      return { kind: "syscall" };
    }
    const bp = this.bp;
    // Only while our INT3 is still there: the kernel may have rewritten the bytes (alternatives).
    if (bp === undefined || rip !== bp.linear || cpu.memory.readU8(bp.gpa) !== INT3) return undefined;
    // Our INT3, not a stuck SYSCALL: hand back the instruction it covers.
    const n = Math.min(15, 4096 - Number(bp.gpa & 0xfffn));
    const bytes = Uint8Array.from(cpu.readPhys(bp.gpa, n));
    bytes[0] = bp.original;
    return { kind: "breakpoint", bytes };
  }

  /** The #PF handler's entry (installing the INT3 there when not yet done); undefined when the IDT is not usable. */
  private ensureBreakpoint(cpu: KvmCpu): bigint | undefined {
    if (this.shared === undefined) {
      this.shared = breakpoints.get(cpu.memory) ?? { bp: undefined };
      breakpoints.set(cpu.memory, this.shared);
    }
    const idt = cpu.kvmSregs.idt;
    if (this.bp !== undefined && this.bp.idtBase === idt.base) return this.bp.linear;
    if (VECTOR_PF * 16 + 15 > idt.limit) return undefined;
    const gateAt = cpu.translate(idt.base + BigInt(VECTOR_PF * 16), "read", 0);
    if (typeof gateAt !== "bigint") return undefined;
    const gate = IdtGate64Layout.decode(cpu.readPhys(gateAt, 16));
    const target = (BigInt(gate.offsetHigh) << 32n) | (BigInt(gate.offsetMid) << 16n) | BigInt(gate.offsetLow);
    // Only a kernel-half handler: an early or odd IDT is left alone until the kernel's own one is in.
    if ((gate.typeAttr & 0x80) === 0 || target >> 63n === 0n) return undefined;
    const gpa = cpu.translate(target, "fetch", 0);
    if (typeof gpa !== "bigint" || !cpu.memory.contains(gpa, 1)) return undefined;
    const original = cpu.memory.readU8(gpa);
    if (original !== INT3) cpu.memory.writeU8(gpa, INT3);
    // A handler that already holds our INT3 (moved IDT, same handler) keeps the byte we saved for it.
    const saved = this.bp !== undefined && this.bp.gpa === gpa ? this.bp.original : original;
    this.shared.bp = { idtBase: idt.base, linear: target, gpa, original: original === INT3 ? saved : original };
    return target;
  }

  /** At the #PF handler's entry RSP points at the error code, then RIP, CS, RFLAGS, RSP, SS of the faulting context. */
  private frameIsStuckSyscall(cpu: KvmCpu, lstar: bigint): boolean {
    const rsp = cpu.kvmRegs.rsp;
    const words: bigint[] = [];
    for (let k = 0; k < 6; k++) {
      const gpa = cpu.translate(BigInt.asUintN(64, rsp + BigInt(8 * k)), "read", 0);
      if (typeof gpa !== "bigint" || !cpu.memory.contains(gpa, 8)) return false;
      words.push(cpu.memory.readU64(gpa));
    }
    const [, rip, cs, , , ss] = words as [bigint, bigint, bigint, bigint, bigint, bigint];
    return rip === lstar && (cs & 3n) === 3n && (ss & 3n) === 3n;
  }

  /**
   * What SYSCALL does (SDM vol. 2B): CS = STAR[47:32] (CPL0, flat 64-bit), SS = STAR[47:32] + 8,
   * RFLAGS = R11 & ~FMASK (R11 holds the RFLAGS SYSCALL saved), RIP = LSTAR. RCX and R11 stay as
   * the host's SYSCALL set them; RSP is the user stack the faulting frame recorded (SYSCALL keeps it).
   */
  private enterSyscall(cpu: KvmCpu, lstar: bigint): void {
    const regs = cpu.kvmRegs;
    const sregs = cpu.kvmSregs;
    const star = cpu.readMsr(MSR_STAR) ?? 0n;
    const fmask = cpu.readMsr(MSR_FMASK) ?? 0n;
    const sel = Number((star >> 32n) & 0xfffcn);
    const userRspAt = cpu.translate(BigInt.asUintN(64, regs.rsp + 32n), "read", 0);
    if (typeof userRspAt === "bigint") regs.rsp = cpu.memory.readU64(userRspAt);
    regs.rip = lstar;
    regs.rflags = ((regs.r11 & ~fmask) & ~RFLAGS_RF & 0x3fffffn) | 2n;
    sregs.cs = { base: 0n, limit: 0xffffffff, selector: sel, type: 0xb, present: 1, dpl: 0, db: 0, s: 1, l: 1, g: 1, avl: 0, unusable: 0 };
    sregs.ss = { base: 0n, limit: 0xffffffff, selector: sel + 8, type: 0x3, present: 1, dpl: 0, db: 1, s: 1, l: 0, g: 1, avl: 0, unusable: 0 };
    cpu.markRegs();
    cpu.markSregs();
  }
}
