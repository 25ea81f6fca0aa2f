import type { KvmSegment } from "@tsvmm/abi";
import type { InjectedEvent } from "@tsvmm/x86";
import { IdtGate64Layout, SegmentDescriptorLayout, Tss64Layout } from "./descriptors.js";
import { EmulationError } from "./errors.js";
import type { KvmCpu } from "./kvm-cpu.js";

// Event delivery in IA-32e mode as SDM vol. 3A 6.14 describes it, for the events KVM cannot be
// told to deliver faithfully (software exceptions: KVM_SET_VCPU_EVENTS carries no instruction
// length). The VMM reads the gate, the target code descriptor and the TSS from guest memory
// through the guest's page tables, writes the frame and loads CS:RIP, SS:RSP, RFLAGS.

const RFLAGS_TF = 1n << 8n;
const RFLAGS_IF = 1n << 9n;
const RFLAGS_NT = 1n << 14n;
const RFLAGS_RF = 1n << 16n;
const RFLAGS_VM = 1n << 17n;
const VECTOR_DF = 8;
const VECTOR_GP = 13;
const VECTOR_NP = 11;
const VECTOR_PF = 14;

/** A fault while delivering: the event the processor would raise instead. */
class NestedFault {
  constructor(
    readonly vector: number,
    readonly errorCode: number,
    readonly reason: string,
    readonly cr2?: bigint,
  ) {}
}

function readLinear(cpu: KvmCpu, linear: bigint, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const a = BigInt.asUintN(64, linear + BigInt(done));
    const n = Math.min(length - done, 4096 - Number(a & 0xfffn));
    const gpa = cpu.translate(a, "read", 0);
    if (typeof gpa !== "bigint") throw new NestedFault(VECTOR_PF, gpa.errorCode, `reading 0x${a.toString(16)}`, gpa.cr2);
    out.set(cpu.readPhys(gpa, n), done);
    done += n;
  }
  return out;
}

function writeU64Linear(cpu: KvmCpu, linear: bigint, value: bigint): void {
  const gpa = cpu.translate(linear, "write", 0);
  if (typeof gpa !== "bigint") throw new NestedFault(VECTOR_PF, gpa.errorCode, `writing the frame at 0x${linear.toString(16)}`, gpa.cr2);
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt.asUintN(64, value));
  cpu.writePhys(gpa, b);
}

function attempt(cpu: KvmCpu, e: InjectedEvent): void {
  const sregs = cpu.kvmSregs;
  const regs = cpu.kvmRegs;
  const software = e.kind !== "exception";
  const ext = software ? 0 : 1;
  const idtError = e.vector * 8 + 2 + ext;
  if (e.vector * 16 + 15 > sregs.idt.limit) throw new NestedFault(VECTOR_GP, idtError, `vector ${e.vector} beyond the IDT limit`);
  const gate = IdtGate64Layout.decode(readLinear(cpu, sregs.idt.base + BigInt(e.vector * 16), 16));
  const type = gate.typeAttr & 0xf;
  if (type !== 0xe && type !== 0xf) throw new NestedFault(VECTOR_GP, idtError, `IDT entry ${e.vector} is not a 64-bit interrupt or trap gate`);
  const cpl = sregs.ss.dpl;
  if (software && ((gate.typeAttr >> 5) & 3) < cpl) throw new NestedFault(VECTOR_GP, idtError, `gate DPL below CPL ${cpl}`);
  if ((gate.typeAttr & 0x80) === 0) throw new NestedFault(VECTOR_NP, idtError, `IDT entry ${e.vector} not present`);
  const selector = gate.selector;
  if ((selector & 0xfffc) === 0 || (selector & 4) !== 0) throw new NestedFault(VECTOR_GP, ext, `gate selector 0x${selector.toString(16)}`);
  if ((selector | 7) > sregs.gdt.limit) throw new NestedFault(VECTOR_GP, (selector & 0xfffc) | ext, "gate selector beyond the GDT limit");
  const desc = SegmentDescriptorLayout.decode(readLinear(cpu, sregs.gdt.base + BigInt(selector & 0xfff8), 8));
  const code = (desc.access & 0x18) === 0x18;
  const long = (desc.flagsLimit & 0x20) !== 0;
  if (!code || !long) throw new NestedFault(VECTOR_GP, (selector & 0xfffc) | ext, "gate target is not a 64-bit code segment");
  if ((desc.access & 0x80) === 0) throw new NestedFault(VECTOR_NP, (selector & 0xfffc) | ext, "gate target segment not present");
  const conforming = (desc.access & 4) !== 0;
  const dpl = (desc.access >> 5) & 3;
  const newCpl = conforming ? cpl : dpl;
  if (newCpl > cpl) throw new NestedFault(VECTOR_GP, (selector & 0xfffc) | ext, "gate target less privileged than CPL");
  let rsp = regs.rsp;
  if (gate.ist !== 0 || newCpl < cpl) {
    const tss = Tss64Layout.decode(readLinear(cpu, sregs.tr.base, Tss64Layout.size));
    rsp = gate.ist !== 0 ? tss.ist[(gate.ist & 7) - 1]! : tss.rsp[newCpl]!;
  }
  rsp &= ~0xfn;
  const frame = [BigInt(sregs.ss.selector), regs.rsp, regs.rflags, BigInt(sregs.cs.selector), regs.rip];
  if (e.errorCode !== undefined) frame.push(BigInt(e.errorCode));
  // Every slot is translated before anything is written, so a frame that faults changes nothing.
  const slots = frame.map((_, k) => BigInt.asUintN(64, rsp - BigInt(8 * (k + 1))));
  for (const a of slots) {
    const t = cpu.translate(a, "write", 0);
    if (typeof t !== "bigint") throw new NestedFault(VECTOR_PF, t.errorCode, `the new stack at 0x${a.toString(16)}`, t.cr2);
  }
  for (const [k, v] of frame.entries()) writeU64Linear(cpu, slots[k]!, v);
  const target = (BigInt(gate.offsetHigh) << 32n) | (BigInt(gate.offsetMid) << 16n) | BigInt(gate.offsetLow);
  const cs: KvmSegment = {
    base: 0n,
    limit: 0xffffffff,
    selector: (selector & 0xfffc) | newCpl,
    type: desc.access & 0xf,
    present: 1,
    dpl,
    db: 0,
    s: 1,
    l: 1,
    g: (desc.flagsLimit >> 7) & 1,
    avl: (desc.flagsLimit >> 4) & 1,
    unusable: 0,
  };
  sregs.cs = cs;
  if (newCpl !== cpl) {
    // A privilege change loads SS with a null selector whose RPL is the new CPL.
    sregs.ss = { base: 0n, limit: 0xffffffff, selector: newCpl, type: 3, present: 1, dpl: newCpl, db: 1, s: 1, l: 0, g: 1, avl: 0, unusable: 0 };
  }
  if (e.cr2 !== undefined) sregs.cr2 = e.cr2;
  regs.rsp = slots[slots.length - 1]!;
  regs.rip = target;
  let flags = regs.rflags & ~(RFLAGS_TF | RFLAGS_NT | RFLAGS_RF | RFLAGS_VM);
  if (type === 0xe) flags &= ~RFLAGS_IF;
  regs.rflags = flags | 2n;
  cpu.markRegs();
  cpu.markSregs();
}

/**
 * Deliver `e` through the guest's IDT (IA-32e mode only). A fault during delivery becomes a
 * double fault, as on the processor; a fault delivering that one is an EmulationError (the
 * processor would shut down).
 */
export function deliverByHand(cpu: KvmCpu, e: InjectedEvent): void {
  try {
    attempt(cpu, e);
  } catch (first) {
    if (!(first instanceof NestedFault)) throw first;
    try {
      attempt(cpu, { kind: "exception", vector: VECTOR_DF, errorCode: 0, cr2: undefined, instructionLength: 0 });
    } catch (second) {
      if (!(second instanceof NestedFault)) throw second;
      throw new EmulationError("EMULATION_DELIVERY_FAILED", `delivering vector ${e.vector}: ${first.reason}; then #DF: ${second.reason}`);
    }
  }
}
