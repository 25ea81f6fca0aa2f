import { accessFromSvmAttrib, type KvmDebugregs, type KvmMsrEntry, type KvmRegs, type KvmSegment, type KvmSregs, kvmSegmentFromSegment, MSR } from "@tsvmm/abi";
import { CR0, EFER, NESTED_CTL, RFLAGS, VIRT_EXT } from "./bits.js";
import { canonicalizeVmcb } from "./checks.js";
import { SvmError } from "./errors.js";
import { encodeIoioInfo, NPF, VMEXIT } from "./exits.js";
import type { VmcbState } from "./state.js";

/** The vCPU state KVM takes (KVM_SET_REGS, KVM_SET_SREGS, KVM_SET_MSRS, KVM_SET_DEBUGREGS). */
export interface KvmVcpuState {
  regs: KvmRegs;
  sregs: KvmSregs;
  msrs: KvmMsrEntry[];
  debugregs: KvmDebugregs;
}

/** MSR numbers of the state the bridge moves: abi's architectural table. */
export const MSR_INDEX = MSR;

function segment(s: VmcbState, name: string, realMode: boolean): KvmSegment {
  const access = accessFromSvmAttrib(Number(s.get(`save.${name}.attrib`)));
  return kvmSegmentFromSegment({
    ...access,
    base: s.get(`save.${name}.base`),
    limit: Number(s.get(`save.${name}.limit`)),
    selector: Number(s.get(`save.${name}.selector`)),
    // SVM has no "unusable" bit (abi reports P=0 as unusable), except in real mode, where every
    // segment register is usable whatever its cached attributes (as Bochs models VMRUN).
    unusable: realMode ? 0 : access.unusable,
  });
}

/**
 * Turn a VMCB state-save area into KVM vCPU state, as VMRUN would load it (check it first with
 * checkVmrun). Segment bases are canonicalized and EFER.LMA = EFER.LME & CR0.PG, as VMRUN does.
 * The VMCB's CPL field is authoritative on SVM; KVM derives CPL from SS.DPL, so SS.DPL is set to
 * it. EFER.SVME, which VMRUN requires in the guest's EFER, is dropped: the vCPU KVM runs has no
 * SVM of its own. RAX comes from the save area; other GPRs (not in the VMCB) are zero. G_PAT is
 * passed as the guest PAT only with nested paging (without it the guest shares the host PAT),
 * DBGCTL only with LBR virtualization (otherwise VMRUN does not load it).
 */
export function toKvmState(vmcb: VmcbState): KvmVcpuState {
  const s = canonicalizeVmcb(vmcb);
  const cr0 = s.get("save.cr0");
  const real = (cr0 & CR0.PE) === 0n;
  const z = 0n;
  const regs: KvmRegs = {
    rax: s.get("save.rax"), rbx: z, rcx: z, rdx: z, rsi: z, rdi: z, rsp: s.get("save.rsp"), rbp: z,
    r8: z, r9: z, r10: z, r11: z, r12: z, r13: z, r14: z, r15: z,
    rip: s.get("save.rip"),
    rflags: s.get("save.rflags") | RFLAGS.FIXED1,
  };
  const ss = segment(s, "ss", real);
  ss.dpl = real ? 0 : Number(s.get("save.cpl")) & 3;
  const sregs: KvmSregs = {
    cs: segment(s, "cs", real),
    ds: segment(s, "ds", real),
    es: segment(s, "es", real),
    fs: segment(s, "fs", real),
    gs: segment(s, "gs", real),
    ss,
    tr: segment(s, "tr", false),
    ldt: segment(s, "ldtr", false),
    gdt: { base: s.get("save.gdtr.base"), limit: Number(s.get("save.gdtr.limit")) & 0xffff },
    idt: { base: s.get("save.idtr.base"), limit: Number(s.get("save.idtr.limit")) & 0xffff },
    cr0,
    cr2: s.get("save.cr2"),
    cr3: s.get("save.cr3"),
    cr4: s.get("save.cr4"),
    cr8: 0n,
    efer: s.get("save.efer") & ~EFER.SVME,
    apicBase: 0xfee0_0900n,
    interruptBitmap: [0n, 0n, 0n, 0n],
  };
  const msrs: KvmMsrEntry[] = [
    { index: MSR_INDEX.IA32_SYSENTER_CS, data: s.get("save.sysenterCs") },
    { index: MSR_INDEX.IA32_SYSENTER_ESP, data: s.get("save.sysenterEsp") },
    { index: MSR_INDEX.IA32_SYSENTER_EIP, data: s.get("save.sysenterEip") },
    { index: MSR_INDEX.STAR, data: s.get("save.star") },
    { index: MSR_INDEX.LSTAR, data: s.get("save.lstar") },
    { index: MSR_INDEX.CSTAR, data: s.get("save.cstar") },
    { index: MSR_INDEX.SFMASK, data: s.get("save.sfmask") },
    { index: MSR_INDEX.KERNEL_GS_BASE, data: s.get("save.kernelGsBase") },
  ];
  if (s.get("control.nestedCtl") & NESTED_CTL.NP_ENABLE) msrs.push({ index: MSR_INDEX.IA32_PAT, data: s.get("save.gPat") });
  if (s.get("control.virtExt") & VIRT_EXT.LBR_VIRTUALIZATION) msrs.push({ index: MSR_INDEX.IA32_DEBUGCTL, data: s.get("save.dbgctl") });
  const debugregs: KvmDebugregs = { db: [0n, 0n, 0n, 0n], dr6: s.get("save.dr6"), dr7: s.get("save.dr7"), flags: 0n };
  return { regs, sregs, msrs, debugregs };
}

/** A KVM exit, described plainly (as kvm-backend decodes kvm_run). */
export type KvmExitDescription =
  | {
      kind: "io";
      port: number;
      size: 1 | 2 | 4;
      direction: "in" | "out";
      string?: boolean;
      rep?: boolean;
      /** Address size of the instruction (KVM does not report it; default 32). */
      addressSize?: 16 | 32 | 64;
      /** RIP of the next instruction, for EXITINFO2 (KVM does not report it; default 0). */
      nextRip?: bigint;
    }
  | {
      kind: "mmio";
      gpa: bigint | number;
      isWrite: boolean;
      len: number;
      /** True when memory is mapped there read-only (a KVM_MEM_READONLY slot): the NPF has P=1. */
      present?: boolean;
    }
  | { kind: "hlt" }
  | { kind: "shutdown" }
  | { kind: "rdmsr" | "wrmsr"; index: number }
  | { kind: "irq-window-open" };

/** An SVM #VMEXIT: EXITCODE, EXITINFO1, EXITINFO2 (and, for MSR exits, the MSR index from ECX). */
export interface SvmExit {
  exitCode: bigint;
  exitInfo1: bigint;
  exitInfo2: bigint;
  msrIndex?: number;
}

/**
 * Report a KVM exit the way SVM would: port I/O → VMEXIT_IOIO with the EXITINFO1 of figure 15-2;
 * MMIO (a guest-physical access KVM could not satisfy from memory) → VMEXIT_NPF with the nested
 * page-fault error code (P when a read-only page is there, RW for a write, GUEST_FINAL: the final
 * translation faulted) and the GPA in EXITINFO2; HLT → VMEXIT_HLT; shutdown → VMEXIT_SHUTDOWN;
 * RDMSR/WRMSR → VMEXIT_MSR with EXITINFO1 0/1; interrupt window → VMEXIT_VINTR.
 * Throws SVM_BRIDGE_UNKNOWN_EXIT for anything else.
 */
export function exitFromKvm(exit: KvmExitDescription): SvmExit {
  switch (exit?.kind) {
    case "io": {
      let info1: bigint;
      try {
        info1 = encodeIoioInfo({ port: exit.port, size: exit.size, direction: exit.direction, string: exit.string ?? false, rep: exit.rep ?? false, addressSize: exit.addressSize ?? 32, segment: 0 });
      } catch (e) {
        throw new SvmError("SVM_BRIDGE_UNKNOWN_EXIT", `I/O exit cannot be encoded: ${(e as Error).message}`);
      }
      return { exitCode: VMEXIT.IOIO!, exitInfo1: info1, exitInfo2: exit.nextRip ?? 0n };
    }
    case "mmio":
      return {
        exitCode: VMEXIT.NPF!,
        exitInfo1: (exit.present ? NPF.P : 0n) | (exit.isWrite ? NPF.RW : 0n) | NPF.GUEST_FINAL,
        exitInfo2: BigInt(exit.gpa),
      };
    case "hlt":
      return { exitCode: VMEXIT.HLT!, exitInfo1: 0n, exitInfo2: 0n };
    case "shutdown":
      return { exitCode: VMEXIT.SHUTDOWN!, exitInfo1: 0n, exitInfo2: 0n };
    case "rdmsr":
    case "wrmsr":
      return { exitCode: VMEXIT.MSR!, exitInfo1: exit.kind === "wrmsr" ? 1n : 0n, exitInfo2: 0n, msrIndex: exit.index };
    case "irq-window-open":
      return { exitCode: VMEXIT.VINTR!, exitInfo1: 0n, exitInfo2: 0n };
    default:
      throw new SvmError("SVM_BRIDGE_UNKNOWN_EXIT", `no SVM exit code for KVM exit ${JSON.stringify((exit as { kind?: unknown })?.kind)}`);
  }
}
