import { randomBytes } from "node:crypto";
import type { GuestMemory, KvmRegs, KvmSegment, KvmSregs, KvmVcpuEvents } from "@tsvmm/abi";
import type { MmioBus } from "@tsvmm/devices";
import { PagingTables, TableAllocator } from "@tsvmm/ept";
import { GuestRam, type Vcpu } from "@tsvmm/kvm-backend";
import { type AccessKind, type DescriptorTable, type InjectedEvent, type PageFault, type PagingMemory, PF_ERROR, type SegmentName, type SegmentState, walkPaging, type X86Cpu, type XsaveLayout } from "@tsvmm/x86";
import { deliverByHand } from "./deliver.js";
import { EmulationError } from "./errors.js";

/**
 * How an event the emulator raises reaches the guest: `kvm` through KVM_SET_VCPU_EVENTS (KVM's
 * own delivery), `idt` by hand through the guest's IDT (the VMM writes the frame and loads CS:RIP).
 */
export type DeliveryPath = "kvm" | "idt";

export interface DeliveryPolicy {
  /** Faults and traps the instruction raised (#UD, #GP, #PF, #NM, ...). */
  readonly exception: DeliveryPath;
  /** INT3 and INT n: events that push the address after the instruction. */
  readonly software: DeliveryPath;
}

/**
 * The default: both through KVM_SET_VCPU_EVENTS, one ioctl. On the PVM host both paths deliver
 * #UD/#GP/#PF/#BP as the processor would (test-kernels emulate-faults); KVM's #BP pushes the RIP
 * after the INT3 there (README-emulation.md).
 */
export const DEFAULT_DELIVERY: DeliveryPolicy = { exception: "kvm", software: "kvm" };

const GPR_NAMES = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"] as const;
type GprName = (typeof GPR_NAMES)[number];

const CR0_WP = 1n << 16n;
const CR4_PSE = 1n << 4n;
const CR4_PAE = 1n << 5n;
const CR4_LA57 = 1n << 12n;
const CR4_SMEP = 1n << 20n;
const CR4_SMAP = 1n << 21n;
const EFER_NXE = 1n << 11n;
const EFER_LMA = 1n << 10n;
const RFLAGS_AC = 1n << 18n;
const PTE_ACCESSED = 0x20n;
const PTE_DIRTY = 0x40n;
const MAX_WALKERS = 32;
const CR3_ROOT_MASK = 0x000ffffffffff000n;

/** The parts of a vCPU KvmCpu reads from KVM, for callers that want to decide before emulating. */
export interface KvmCpuSnapshot {
  readonly regs: KvmRegs;
  readonly sregs: KvmSregs;
}

/**
 * {@link X86Cpu} over a kvm-backend vCPU, its guest memory and the MMIO bus. One instance serves
 * many emulations of one vCPU: `begin()` forgets what was read, `commit()` writes back only what
 * the emulation changed (registers, segment/control state, XSAVE image, XCR0, a pending event).
 * Registers and the rest are read from KVM lazily, so an instruction that needs only GPRs costs
 * one KVM_GET_REGS and one KVM_SET_REGS.
 */
export class KvmCpu implements X86Cpu {
  readonly vcpu: Vcpu;
  readonly memory: GuestMemory;
  readonly mmio: MmioBus | undefined;
  readonly index: number;
  readonly layout: XsaveLayout;
  delivery: DeliveryPolicy;
  /** Events delivered, by path and vector (`kvm #14`, `idt #3`): for tests and the README's measurement. */
  readonly delivered = new Map<string, number>();
  private regs: KvmRegs | undefined;
  private sregs: KvmSregs | undefined;
  private xsave: Buffer | undefined;
  private xcr0: bigint | undefined;
  private regsDirty = false;
  private sregsDirty = false;
  private xsaveDirty = false;
  private xcrDirty = false;
  private pending: KvmVcpuEvents | undefined;
  private byHand: InjectedEvent | undefined;
  private xsaveOriginal: Buffer | undefined;
  private readonly walkers = new Map<string, PagingTables>();
  /** MAXPHYADDR the guest's CPUID reports: the reserved address bits of PAE entries and PSE-36's reach. */
  readonly maxPhyAddr: number;
  private readonly pagingMemory: PagingMemory;

  constructor(options: {
    vcpu: Vcpu;
    memory: GuestMemory;
    mmio?: MmioBus;
    index?: number;
    layout: XsaveLayout;
    delivery?: DeliveryPolicy;
    syncRegs?: boolean;
    /** CPUID 0x80000008 EAX[7:0]; default 36 (the architectural value without that leaf). */
    maxPhyAddr?: number;
  }) {
    this.maxPhyAddr = options.maxPhyAddr ?? 36;
    this.pagingMemory = {
      readEntry: (gpa, size) => {
        // A table outside RAM (in MMIO) is something the emulation cannot read safely: stop.
        if (!this.memory.contains(gpa, size)) throw new EmulationError("EMULATION_UNSUPPORTED", `guest paging structure at 0x${gpa.toString(16)} is outside RAM`);
        return size === 4 ? BigInt(this.memory.readU32(gpa)) : this.memory.readU64(gpa);
      },
      setEntryBits: (gpa, _size, bits) => this.orEntry(gpa, bits),
    };
    this.vcpu = options.vcpu;
    this.memory = options.memory;
    this.mmio = options.mmio;
    this.index = options.index ?? 0;
    this.layout = options.layout;
    this.delivery = options.delivery ?? DEFAULT_DELIVERY;
    // Every emulation reads kvm_regs and nearly every one kvm_sregs: with KVM_CAP_SYNC_REGS KVM
    // leaves both in kvm_run at each exit, and the GET/SET ioctls (25-40 us each on a loaded host)
    // go away. Opt-in until the double faults after the SYSCALL fix-up seen in 2 of 4 Linux boots
    // with it on are explained (README-emulation "Not done").
    if (options.syncRegs === true) this.vcpu.enableSyncRegs();
  }

  /** Start an emulation: everything is read from KVM afresh when first needed. */
  begin(): void {
    this.regs = undefined;
    this.sregs = undefined;
    this.xsave = undefined;
    this.xcr0 = undefined;
    this.regsDirty = this.sregsDirty = this.xsaveDirty = this.xcrDirty = false;
    this.pending = undefined;
    this.byHand = undefined;
    this.xsaveOriginal = undefined;
  }

  /**
   * Write back what changed: XCR0 before the XSAVE image (KVM checks XSTATE_BV against it),
   * segment and control state before the registers, the event last (it is delivered from the
   * state just written).
   */
  commit(): void {
    // The emulator writes RIP after it injects (past INT3/INT n): deliver from the final state.
    if (this.byHand !== undefined) deliverByHand(this, this.byHand);
    if (this.xcrDirty && this.xcr0 !== undefined) this.vcpu.setXcrs([{ xcr: 0, value: this.xcr0 }]);
    if (this.xsaveDirty && this.xsave !== undefined) this.vcpu.setXsave({ region: this.xsave });
    if (this.sregsDirty && this.sregs !== undefined) this.vcpu.setSregs(this.sregs);
    if (this.regsDirty && this.regs !== undefined) this.vcpu.setRegs(this.regs);
    if (this.pending !== undefined) this.vcpu.setVcpuEvents(this.pending);
    this.begin();
  }

  /** The cached (or freshly read) register file; callers may change it and call markRegs(). */
  get kvmRegs(): KvmRegs {
    if (this.regs === undefined) this.regs = this.vcpu.getRegs();
    return this.regs;
  }
  get kvmSregs(): KvmSregs {
    if (this.sregs === undefined) this.sregs = this.vcpu.getSregs();
    return this.sregs;
  }
  markRegs(): void {
    this.regsDirty = true;
  }
  markSregs(): void {
    this.sregsDirty = true;
  }

  readGpr(i: number): bigint {
    return this.kvmRegs[GPR_NAMES[i] as GprName];
  }
  writeGpr(i: number, v: bigint): void {
    this.kvmRegs[GPR_NAMES[i] as GprName] = BigInt.asUintN(64, v);
    this.regsDirty = true;
  }
  readRip(): bigint {
    return this.kvmRegs.rip;
  }
  writeRip(v: bigint): void {
    if (this.kvmRegs.rip === v) return;
    this.kvmRegs.rip = v;
    this.regsDirty = true;
  }
  readRflags(): bigint {
    return this.kvmRegs.rflags;
  }
  writeRflags(v: bigint): void {
    this.kvmRegs.rflags = v | 2n;
    this.regsDirty = true;
  }
  readSegment(s: SegmentName): SegmentState {
    return segmentState(this.kvmSregs[s]);
  }
  readDescriptorTable(table: "gdt" | "ldt"): DescriptorTable | undefined {
    const s = this.kvmSregs;
    if (table === "gdt") return { base: s.gdt.base, limit: s.gdt.limit };
    if (s.ldt.unusable !== 0 || (s.ldt.selector & ~3) === 0) return undefined;
    return { base: s.ldt.base, limit: s.ldt.limit };
  }
  readCr(n: 0 | 2 | 3 | 4 | 8): bigint {
    const s = this.kvmSregs;
    return n === 0 ? s.cr0 : n === 2 ? s.cr2 : n === 3 ? s.cr3 : n === 4 ? s.cr4 : s.cr8;
  }
  readEfer(): bigint {
    return this.kvmSregs.efer;
  }
  readMsr(i: number): bigint | undefined {
    try {
      return this.vcpu.getMsrs([i])[0]?.data;
    } catch {
      return undefined;
    }
  }
  writeMsr(i: number, v: bigint): boolean {
    try {
      this.vcpu.setMsrs([{ index: i, data: v }]);
      return true;
    } catch {
      return false;
    }
  }
  readXcr0(): bigint {
    if (this.xcr0 === undefined) this.xcr0 = this.vcpu.getXcrs().find((x) => x.xcr === 0)?.value ?? 1n;
    return this.xcr0;
  }
  writeXcr0(v: bigint): void {
    this.xcr0 = v;
    this.xcrDirty = true;
  }
  readXsaveState(): Uint8Array {
    if (this.xsave === undefined) {
      this.xsave = this.vcpu.getXsave().region;
      this.xsaveOriginal = Buffer.from(this.xsave);
    }
    return Uint8Array.from(this.xsave);
  }
  writeXsaveState(image: Uint8Array): void {
    const b = Buffer.alloc(4096);
    b.set(image.subarray(0, 4096));
    // KVM_SET_XSAVE takes the legacy x87 and SSE parts (MXCSR included) only where XSTATE_BV says
    // so: mark what the emulator changed there, or an LDMXCSR would be lost.
    const before = this.xsaveOriginal;
    if (before !== undefined) {
      const changed = (from: number, to: number) => !b.subarray(from, to).equals(before.subarray(from, to));
      let bv = b.readBigUInt64LE(512);
      if (changed(24, 32) || changed(160, 416)) bv |= 2n;
      if (changed(0, 24) || changed(32, 160)) bv |= 1n;
      b.writeBigUInt64LE(bv, 512);
    }
    this.xsave = b;
    this.xsaveDirty = true;
  }
  xsaveLayout(): XsaveLayout {
    return this.layout;
  }

  readPhys(gpa: bigint, length: number): Uint8Array {
    if (this.mmio === undefined || this.memory.contains(gpa, length)) return this.memory.read(gpa, length);
    // Outside RAM: the device there answers, as it would to the guest's own access.
    const b = Buffer.alloc(length);
    this.mmio.readInto(gpa, b, this.index);
    return b;
  }
  writePhys(gpa: bigint, data: Uint8Array): void {
    if (this.mmio === undefined || this.memory.contains(gpa, data.length)) {
      this.memory.write(gpa, data);
      return;
    }
    this.mmio.write(gpa, Buffer.from(data), this.index);
  }

  /**
   * A locked compare-exchange on the host mapping of guest RAM (the addon's LOCK CMPXCHG /
   * CMPXCHG16B), so the emulator's LOCK read-modify-writes are atomic against the other vCPUs,
   * which run natively at CPL3 on the same memory. Undefined outside RAM: the device there
   * answers plain reads and writes instead.
   */
  compareExchangePhys(gpa: bigint, expected: Uint8Array, desired: Uint8Array): Uint8Array | undefined {
    const n = expected.length;
    if (!this.memory.contains(gpa, n)) return undefined;
    return GuestRam.compareExchangeAt(this.memory.slice(gpa, n), 0, expected, desired).old;
  }

  /**
   * The guest's own IA-32e walk (4 or 5 levels, 2 MiB and 1 GiB leaves) with its CR0.WP, CR4.SMEP/
   * SMAP (SMAP off while RFLAGS.AC is set) and EFER.NXE; sets Accessed (and Dirty for writes) as
   * the processor does. A failed walk is the #PF the processor would raise, never an exception here.
   */
  translate(linear: bigint, access: AccessKind, cpl: number): bigint | PageFault {
    const s = this.kvmSregs;
    if ((s.efer & EFER_LMA) === 0n) return this.translateLegacy(linear, access, cpl);
    const root = Number(s.cr3 & CR3_ROOT_MASK);
    const levels = (s.cr4 & CR4_LA57) !== 0n ? 5 : 4;
    const nxe = (s.efer & EFER_NXE) !== 0n;
    const wp = (s.cr0 & CR0_WP) !== 0n;
    const smep = (s.cr4 & CR4_SMEP) !== 0n;
    const smap = (s.cr4 & CR4_SMAP) !== 0n && (this.kvmRegs.rflags & RFLAGS_AC) === 0n;
    const user = cpl === 3;
    // PF_ERROR read here, not destructured at module load: the tsvmm bin loads @tsvmm/x86 only
    // when a VM emulates (packages/vmm/tsup.config.ts).
    const code = (access === "write" ? PF_ERROR.W : 0) | (user ? PF_ERROR.U : 0) | (access === "fetch" && (nxe || smep) ? PF_ERROR.ID : 0);
    const key = `${root}/${levels}/${+nxe}${+wp}${+smep}${+smap}`;
    let tables = this.walkers.get(key);
    if (tables === undefined) {
      try {
        tables = new PagingTables(this.memory, new TableAllocator(this.memory, root, 4096), { root, levels, nxe, wp, smep, smap });
      } catch {
        // CR3 outside guest RAM: nothing there can be a present entry.
        return { kind: "page-fault", errorCode: code, cr2: linear };
      }
      if (this.walkers.size >= MAX_WALKERS) this.walkers.clear();
      this.walkers.set(key, tables);
    }
    const t = tables.translate(linear, { write: access === "write", execute: access === "fetch", user });
    if (t.ok && t.physical !== null) {
      const last = t.steps.length - 1;
      for (let k = 0; k <= last; k++) {
        const st = t.steps[k]!;
        const bits = (PTE_ACCESSED | (k === last && access === "write" ? PTE_DIRTY : 0n)) & ~st.entry;
        // A locked OR, not a store of the entry read: another vCPU may be changing it (Linux clears
        // Accessed bits and rewrites PTEs on other CPUs), and a plain write would undo that.
        if (bits !== 0n) this.orEntry(st.entryAddress, bits);
      }
      return t.physical;
    }
    const reason = t.fault?.reason;
    const p = reason === "permission" || reason === "reserved" ? PF_ERROR.P : 0;
    return { kind: "page-fault", errorCode: code | p | (reason === "reserved" ? PF_ERROR.RSVD : 0), cr2: linear };
  }

  /**
   * 32-bit and PAE paging through @tsvmm/x86's walker, with the guest's CR0.WP, CR4.PSE/SMEP/SMAP,
   * EFER.NXE and RFLAGS.AC. PAE's PDPTEs are read at CR3 (kvm-backend has no KVM_GET_SREGS2 for the
   * registers the processor loaded): the same unless the guest rewrote its PDPT without reloading CR3.
   */
  private translateLegacy(linear: bigint, access: AccessKind, cpl: number): bigint | PageFault {
    const s = this.kvmSregs;
    const r = walkPaging(
      {
        mode: (s.cr4 & CR4_PAE) !== 0n ? "pae" : "32-bit",
        cr3: s.cr3,
        pse: (s.cr4 & CR4_PSE) !== 0n,
        wp: (s.cr0 & CR0_WP) !== 0n,
        nxe: (s.efer & EFER_NXE) !== 0n,
        smep: (s.cr4 & CR4_SMEP) !== 0n,
        smap: (s.cr4 & CR4_SMAP) !== 0n,
        ac: (this.kvmRegs.rflags & RFLAGS_AC) !== 0n,
        maxPhyAddr: this.maxPhyAddr,
      },
      linear,
      access,
      cpl,
      this.pagingMemory,
    );
    return r.ok ? r.physical : r.fault;
  }

  /** Set Accessed/Dirty bits as the processor does, with a locked OR: other vCPUs may be writing the same entry. */
  private orEntry(gpa: bigint, bits: bigint): void {
    const base = gpa & ~7n;
    const shifted = bits << ((gpa - base) * 8n);
    const view = this.memory.slice(base, 8);
    let cur = view.readBigUInt64LE(0);
    for (;;) {
      if ((cur | shifted) === cur) return;
      const r = GuestRam.compareExchangeAt(view, 0, le64(cur), le64(cur | shifted));
      if (r.swapped) return;
      cur = Buffer.from(r.old).readBigUInt64LE(0);
    }
  }

  inject(e: InjectedEvent): void {
    const software = e.kind !== "exception";
    const path = software ? this.delivery.software : this.delivery.exception;
    this.delivered.set(`${path} #${e.vector}`, (this.delivered.get(`${path} #${e.vector}`) ?? 0) + 1);
    if (path === "idt" && (this.kvmSregs.efer & EFER_LMA) !== 0n) {
      this.byHand = e;
      return;
    }
    if (e.cr2 !== undefined) {
      this.kvmSregs.cr2 = e.cr2;
      this.sregsDirty = true;
    }
    const ev = this.vcpu.getVcpuEvents();
    // Only the exception/interrupt fields: flags 0 leaves NMI, SIPI, SMM and payload state alone.
    ev.flags = 0;
    if (e.kind === "software-interrupt") {
      ev.interrupt = { ...ev.interrupt, injected: 1, nr: e.vector, soft: 1 };
    } else {
      ev.exception = { injected: 1, nr: e.vector, hasErrorCode: e.errorCode === undefined ? 0 : 1, pending: 0, errorCode: e.errorCode ?? 0 };
    }
    this.pending = ev;
  }

  randomBytes(n: number): Uint8Array {
    return new Uint8Array(randomBytes(n));
  }
  readTsc(): bigint {
    return this.vcpu.getMsrs([0x10])[0]?.data ?? 0n;
  }
}

function le64(v: bigint): Uint8Array {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v);
  return b;
}

export function segmentState(k: KvmSegment): SegmentState {
  return {
    selector: k.selector,
    base: k.base,
    limit: k.limit,
    type: k.type,
    s: k.s !== 0,
    dpl: k.dpl,
    present: k.present !== 0,
    db: k.db !== 0,
    l: k.l !== 0,
    unusable: k.unusable !== 0,
  };
}
