import type { KvmFpu, KvmRegs, KvmSregs } from "@tsvmm/abi";
import { abridgedTagWord, fullTagWord, type GdbArchitecture, type SseState, type X86Registers, type X87State } from "@tsvmm/gdbstub";

/** IA32_KERNEL_GS_BASE: what SWAPGS exchanges with GS.base; not in kvm_sregs. */
export const MSR_KERNEL_GS_BASE = 0xc000_0102;

const CR0_PE = 1n;
const EFER_LMA = 1n << 10n;

/** gdb's layout for a vCPU in this state: long mode (EFER.LMA), protected mode (CR0.PE), else real mode. */
export function architectureOf(sregs: Pick<KvmSregs, "cr0" | "efer">): GdbArchitecture {
  if ((sregs.efer & EFER_LMA) !== 0n) return "i386:x86-64";
  return (sregs.cr0 & CR0_PE) !== 0n ? "i386" : "i8086";
}

/** kvm_fpu keeps each ST register in a 16-byte slot (FXSAVE's layout); gdb wants the 10 bytes. */
const FPR_SLOT = 16;

function x87From(fpu: KvmFpu): X87State {
  const st = Array.from({ length: 8 }, (_, i) => Uint8Array.from(fpu.fpr.subarray(i * FPR_SLOT, i * FPR_SLOT + 10)));
  return {
    st,
    fctrl: fpu.fcw,
    fstat: fpu.fsw,
    ftag: fullTagWord(fpu.ftwx, fpu.fsw, st),
    // kvm_fpu has no FCS/FDS selectors (64-bit FXSAVE form): gdb shows 0.
    fiseg: 0,
    fioff: Number(fpu.lastIp & 0xffff_ffffn),
    foseg: 0,
    fooff: Number(fpu.lastDp & 0xffff_ffffn),
    fop: fpu.lastOpcode,
  };
}

function sseFrom(fpu: KvmFpu): SseState {
  return { xmm: Array.from({ length: 16 }, (_, i) => Uint8Array.from(fpu.xmm.subarray(i * 16, i * 16 + 16))), mxcsr: fpu.mxcsr };
}

/** One vCPU's state as gdb sees it. */
export function toGdbRegisters(regs: KvmRegs, sregs: KvmSregs, kernelGsBase: bigint, fpu: KvmFpu | undefined): X86Registers {
  return {
    rax: regs.rax, rbx: regs.rbx, rcx: regs.rcx, rdx: regs.rdx, rsi: regs.rsi, rdi: regs.rdi, rbp: regs.rbp, rsp: regs.rsp,
    r8: regs.r8, r9: regs.r9, r10: regs.r10, r11: regs.r11, r12: regs.r12, r13: regs.r13, r14: regs.r14, r15: regs.r15,
    rip: regs.rip,
    rflags: regs.rflags,
    cs: sregs.cs.selector, ss: sregs.ss.selector, ds: sregs.ds.selector, es: sregs.es.selector, fs: sregs.fs.selector, gs: sregs.gs.selector,
    fsBase: sregs.fs.base,
    gsBase: sregs.gs.base,
    kernelGsBase,
    cr0: sregs.cr0, cr2: sregs.cr2, cr3: sregs.cr3, cr4: sregs.cr4, cr8: sregs.cr8, efer: sregs.efer,
    ...(fpu ? { fpu: x87From(fpu), sse: sseFrom(fpu) } : {}),
  };
}

/** The kvm_regs part of gdb's registers. */
export function kvmRegsFrom(r: X86Registers): KvmRegs {
  return {
    rax: r.rax, rbx: r.rbx, rcx: r.rcx, rdx: r.rdx, rsi: r.rsi, rdi: r.rdi, rsp: r.rsp, rbp: r.rbp,
    r8: r.r8, r9: r.r9, r10: r.r10, r11: r.r11, r12: r.r12, r13: r.r13, r14: r.r14, r15: r.r15,
    rip: r.rip, rflags: r.rflags,
  };
}

/**
 * `sregs` with what gdb changed: selectors (only the selector: the hidden base, limit and
 * attributes stay as loaded, as a debugger write cannot reload a descriptor), FS/GS bases,
 * control registers and EFER. Undefined when nothing changed, so no KVM_SET_SREGS is issued.
 */
export function kvmSregsFrom(old: KvmSregs, r: X86Registers): KvmSregs | undefined {
  const seg = (s: KvmSregs["cs"], sel: number, base?: bigint): KvmSregs["cs"] => ({ ...s, selector: sel & 0xffff, ...(base !== undefined ? { base } : {}) });
  const next: KvmSregs = {
    ...old,
    cs: seg(old.cs, r.cs),
    ss: seg(old.ss, r.ss),
    ds: seg(old.ds, r.ds),
    es: seg(old.es, r.es),
    fs: seg(old.fs, r.fs, r.fsBase),
    gs: seg(old.gs, r.gs, r.gsBase),
    cr0: r.cr0, cr2: r.cr2, cr3: r.cr3, cr4: r.cr4, cr8: r.cr8, efer: r.efer,
  };
  const same =
    (["cs", "ss", "ds", "es", "fs", "gs"] as const).every((k) => next[k].selector === old[k].selector && next[k].base === old[k].base) &&
    (["cr0", "cr2", "cr3", "cr4", "cr8", "efer"] as const).every((k) => next[k] === old[k]);
  return same ? undefined : next;
}

/** `fpu` with gdb's x87/SSE values, or undefined when they equal what KVM holds. */
export function kvmFpuFrom(old: KvmFpu, r: X86Registers): KvmFpu | undefined {
  if (!r.fpu && !r.sse) return undefined;
  const fpr = Buffer.from(old.fpr);
  const xmm = Buffer.from(old.xmm);
  let next: KvmFpu = { ...old, fpr, xmm };
  if (r.fpu) {
    for (const [i, st] of r.fpu.st.entries()) fpr.set(st.subarray(0, 10), i * FPR_SLOT);
    next = { ...next, fcw: r.fpu.fctrl & 0xffff, fsw: r.fpu.fstat & 0xffff, ftwx: abridgedTagWord(r.fpu.ftag), lastOpcode: r.fpu.fop & 0x7ff };
  }
  if (r.sse) {
    for (const [i, x] of r.sse.xmm.entries()) if (i < 16) xmm.set(x.subarray(0, 16), i * 16);
    next = { ...next, mxcsr: r.sse.mxcsr >>> 0 };
  }
  const same =
    fpr.equals(old.fpr) && xmm.equals(old.xmm) && next.fcw === old.fcw && next.fsw === old.fsw && next.ftwx === old.ftwx && next.lastOpcode === old.lastOpcode && next.mxcsr === old.mxcsr;
  return same ? undefined : next;
}
