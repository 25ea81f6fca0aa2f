// A tiny x86-register machine implementing DebugTarget, for protocol tests with the real gdb.
// Memory is a Buffer addressed directly by "virtual" address; every instruction is 8 bytes
// [op, imm8, 0, 0, imm32 LE]; execute/data breakpoints go through DebugRegisters and are
// matched by decoding DR7 the way the CPU would, so the encoding is exercised end to end.
import {
  type Breakpoint,
  type BreakpointResult,
  DebugRegisters,
  type DebugTarget,
  decodeDr7,
  type GdbArchitecture,
  GdbSignal,
  type ResumeAction,
  resetRegisters,
  type StopEvent,
  type X86Registers,
} from "@tsvmm/gdbstub";

export const INSN = 8;
export const Op = { NOP: 0, STORE8: 1, LOAD8: 2, JMP: 3, INC_RAX: 4, EXIT: 5 } as const;

export function insn(op: number, imm8 = 0, imm32 = 0): Buffer {
  const b = Buffer.alloc(INSN);
  b[0] = op;
  b[1] = imm8;
  b.writeUInt32LE(imm32, 4);
  return b;
}

export interface SimOptions {
  memorySize?: number;
  vcpus?: number;
  architecture?: GdbArchitecture;
  /** false: Z0 takes a debug-register slot, as on a host without KVM_GUESTDBG_USE_SW_BP. */
  softwareBreakpoints?: boolean;
  entry?: bigint[];
  /** Instructions per event-loop turn while running. */
  slice?: number;
}

export class SimTarget implements DebugTarget {
  readonly memory: Buffer;
  readonly regs: X86Registers[];
  readonly vcpuCount: number;
  readonly debugRegs = new DebugRegisters();
  readonly swBreakpoints = new Set<bigint>();
  readonly signalsDelivered: number[] = [];
  readonly calls: string[] = [];
  exitStatus: number | undefined;
  killed = false;
  detached = false;
  private readonly arch: GdbArchitecture;
  private readonly sw: boolean;
  private readonly slice: number;
  private interrupted = false;
  private last: StopEvent;
  private running = false;
  private freeRunning = false;

  constructor(o: SimOptions = {}) {
    this.memory = Buffer.alloc(o.memorySize ?? 0x10000);
    this.vcpuCount = o.vcpus ?? 2;
    this.arch = o.architecture ?? "i386:x86-64";
    this.sw = o.softwareBreakpoints ?? true;
    this.slice = o.slice ?? 64;
    this.regs = Array.from({ length: this.vcpuCount }, (_, i) => ({
      ...resetRegisters(),
      rip: o.entry?.[i] ?? 0x1000n,
      cs: 0x10,
      ss: 0x18,
      ds: 0x18,
      cr0: 0x80050033n,
      cr3: 0x9000n + BigInt(i),
      cr4: 0x20n,
      efer: 0x500n,
      fsBase: 0x7f0000001000n,
      gsBase: 0xffff888000000000n + BigInt(i),
      kernelGsBase: 0x1234n,
      fpu: { st: Array.from({ length: 8 }, () => new Uint8Array(10)), fctrl: 0x37f, fstat: 0, ftag: 0xffff, fiseg: 0, fioff: 0, foseg: 0, fooff: 0, fop: 0 },
      sse: { xmm: Array.from({ length: 16 }, (_, k) => new Uint8Array(16).fill(k)), mxcsr: 0x1f80 },
    }));
    this.last = { kind: "stopped", vcpu: 0, signal: GdbSignal.TRAP };
  }

  load(address: number, ...code: Buffer[]): void {
    Buffer.concat(code).copy(this.memory, address);
  }

  architecture(): GdbArchitecture {
    return this.arch;
  }

  /** Attach: a machine left running by an earlier detach stops where it is. */
  async halt(): Promise<StopEvent> {
    this.calls.push("halt");
    if (this.freeRunning) {
      this.freeRunning = false;
      this.last = { kind: "stopped", vcpu: 0, signal: GdbSignal.TRAP };
    }
    return this.last;
  }

  readRegisters(vcpu: number): X86Registers {
    return this.regs[vcpu]!;
  }

  writeRegisters(vcpu: number, regs: X86Registers): void {
    this.calls.push(`writeRegisters ${vcpu}`);
    this.regs[vcpu] = regs;
  }

  readMemory(_vcpu: number, address: bigint, length: number): Uint8Array {
    if (address >= BigInt(this.memory.length)) throw new RangeError(`unmapped 0x${address.toString(16)}`);
    const a = Number(address);
    return this.memory.subarray(a, Math.min(a + length, this.memory.length));
  }

  writeMemory(_vcpu: number, address: bigint, data: Uint8Array): void {
    if (address + BigInt(data.length) > BigInt(this.memory.length)) throw new RangeError(`unmapped 0x${address.toString(16)}`);
    this.memory.set(data, Number(address));
  }

  setBreakpoint(bp: Breakpoint): BreakpointResult {
    this.calls.push(`set ${bp.kind} ${bp.address.toString(16)} ${bp.length}`);
    if (bp.kind === "sw" && this.sw) {
      this.swBreakpoints.add(bp.address);
      return "ok";
    }
    return this.debugRegs.insert(bp);
  }

  removeBreakpoint(bp: Breakpoint): BreakpointResult {
    this.calls.push(`remove ${bp.kind} ${bp.address.toString(16)} ${bp.length}`);
    if (bp.kind === "sw" && this.sw) return this.swBreakpoints.delete(bp.address) ? "ok" : "error";
    return this.debugRegs.remove(bp);
  }

  resume(actions: readonly ResumeAction[]): Promise<StopEvent> {
    this.calls.push(`resume ${actions.map((a) => `${a.vcpu}:${a.action}${a.signal ? `/${a.signal}` : ""}`).join(",")}`);
    for (const a of actions) if (a.signal) this.signalsDelivered.push(a.signal);
    this.interrupted = false;
    this.running = true;
    return new Promise((resolve) => {
      const turn = (): void => {
        const ev = this.runSlice(actions);
        if (ev) {
          this.running = false;
          this.last = ev;
          resolve(ev);
        } else setImmediate(turn);
      };
      setImmediate(turn);
    });
  }

  interrupt(): void {
    this.calls.push("interrupt");
    if (this.running) this.interrupted = true;
  }

  kill(): void {
    this.calls.push("kill");
    this.killed = true;
  }

  /** Runs every vCPU freely until the program exits, like a VM without a debugger. */
  detach(): void {
    this.calls.push("detach");
    this.detached = true;
    this.swBreakpoints.clear();
    this.debugRegs.clear();
    const all = [...Array(this.vcpuCount).keys()].map((vcpu) => ({ vcpu, action: "continue" as const }));
    this.freeRunning = true;
    const turn = (): void => {
      if (this.killed || !this.freeRunning) return;
      const ev = this.runSlice(all);
      if (ev && ev.kind !== "stopped") {
        this.freeRunning = false;
        this.last = ev;
      } else setImmediate(turn);
    };
    setImmediate(turn);
  }

  threadName(vcpu: number): string {
    return `sim vCPU ${vcpu}`;
  }

  private runSlice(actions: readonly ResumeAction[]): StopEvent | undefined {
    for (let n = 0; n < this.slice; n++) {
      if (this.interrupted) return { kind: "stopped", vcpu: actions[0]?.vcpu ?? 0, signal: GdbSignal.INT };
      for (const a of actions) {
        const ev = this.execute(a.vcpu);
        if (ev) return ev;
        if (a.action === "step") return { kind: "stopped", vcpu: a.vcpu, signal: GdbSignal.TRAP };
      }
    }
    return undefined;
  }

  /** One instruction on one vCPU; a stop event if it stopped the machine. */
  private execute(vcpu: number): StopEvent | undefined {
    const r = this.regs[vcpu]!;
    const rip = r.rip;
    if (this.swBreakpoints.has(rip)) return { kind: "stopped", vcpu, signal: GdbSignal.TRAP, cause: { type: "swbreak" } };
    const hit = this.matchSlots((s) => s.condition === "execute" && s.address === rip);
    if (hit !== undefined) return { kind: "stopped", vcpu, signal: GdbSignal.TRAP, cause: this.debugRegs.stopCause(1n << BigInt(hit)) };
    if (rip + BigInt(INSN) > BigInt(this.memory.length)) return { kind: "stopped", vcpu, signal: GdbSignal.SEGV };
    const code = this.memory.subarray(Number(rip), Number(rip) + INSN);
    const op = code[0]!;
    const imm8 = code[1]!;
    const imm32 = code.readUInt32LE(4);
    let next = rip + BigInt(INSN);
    let access: { write: boolean; address: number } | undefined;
    switch (op) {
      case Op.NOP:
        break;
      case Op.STORE8:
        this.memory[imm32] = imm8;
        access = { write: true, address: imm32 };
        break;
      case Op.LOAD8:
        this.regs[vcpu] = { ...r, rax: BigInt(this.memory[imm32] ?? 0) };
        access = { write: false, address: imm32 };
        break;
      case Op.JMP:
        next = BigInt(imm32);
        break;
      case Op.INC_RAX:
        this.regs[vcpu] = { ...r, rax: r.rax + 1n };
        break;
      case Op.EXIT:
        this.exitStatus = imm8;
        return { kind: "exited", status: imm8 };
      default:
        return { kind: "stopped", vcpu, signal: GdbSignal.ILL };
    }
    this.regs[vcpu] = { ...this.regs[vcpu]!, rip: next };
    if (access) {
      const a = BigInt(access.address);
      const slot = this.matchSlots((s) => (s.condition === "read-write" || (s.condition === "write" && access.write)) && a >= s.address && a < s.address + BigInt(s.length));
      if (slot !== undefined) return { kind: "stopped", vcpu, signal: GdbSignal.TRAP, cause: this.debugRegs.stopCause(1n << BigInt(slot)) };
    }
    return undefined;
  }

  private matchSlots(pred: (s: { condition: string; address: bigint; length: number }) => boolean): number | undefined {
    const st = this.debugRegs.state();
    const slots = decodeDr7(st.dr7, st.dr);
    const i = slots.findIndex((s) => s !== undefined && pred(s));
    return i >= 0 ? i : undefined;
  }
}
