import type { GuestMemory, KvmRegs } from "@tsvmm/abi";
import { type Vcpu, type Vm, x86PcGsiRoutes } from "@tsvmm/kvm-backend";
import { byteBeforeIp } from "./debug/translate.js";

/**
 * KVM's PIT, wired as the firmware tables say: they give ISA IRQ 0 as GSI 2 (the PC override), and
 * KVM's default routing would deliver the PIT's GSI 0 to IOAPIC pin 0 instead.
 */
export function createPit(vm: Vm): void {
  vm.createPit2();
  vm.setGsiRouting(x86PcGsiRoutes());
}

/**
 * The in-kernel i8254, created at the guest's first touch of its ports instead of at build.
 *
 * Why: on this host a VM with a PIT takes 1-22 ms to close (KVM stops the PIT's kthread worker)
 * against ~0.4 ms without one, measured in C; most small guests never program it, and that close
 * was the largest single cost of a `tsvmm run` of the hello guest after Node's own start. A PIT that
 * was never programmed raises no interrupt (KVM resets every counter to an unset mode, which arms
 * no timer), so creating it at the first access is invisible to the guest.
 *
 * How the first access reaches the new PIT: it already exited to userspace. The registers are
 * read at the exit, the PIT is created, and the vCPU is kicked, so its next KVM_RUN only completes
 * the half-done access and returns (`immediate_exit`, api.rst). Then the access is undone so the
 * guest executes the same instruction again, this time inside KVM:
 *  - if completing it moved RIP (or RSI/RDI/RCX, string I/O), the registers saved at the exit are
 *    written back (RIP at the IN/OUT, RAX as before an IN): KVM's fast path, and every IN;
 *  - if nothing moved, the instruction had retired before the exit (measured: an OUT that KVM's
 *    instruction emulator ran, as PVM does for all guest kernel code). RIP is then moved back over
 *    it: the only one-byte OUTs are `E6 ib` (port in the byte before RIP) and `EE` (port in DX), and
 *    no PIT port is 0xEE, so the bytes before RIP tell which. Prefixes before the opcode change
 *    nothing for these, so re-executing from the opcode is the same access.
 * A vCPU whose exit on these ports was already on its way when another created the PIT is
 * replayed the same way.
 */
export class LazyPit {
  private readonly saved: Array<{ regs: KvmRegs; port: number } | undefined> = [];
  private readonly replayed = new Set<number>();

  constructor(private readonly vm: Vm) {}

  /**
   * The ports KVM's PIT claims: the three counters and the mode register. Port 0x61 (gate 2,
   * speaker) is KVM's only with KVM_PIT_SPEAKER_DUMMY, which createPit2() does not pass: it stays
   * the port bus's either way.
   */
  static claims(port: number): boolean {
    return port >= 0x40 && port <= 0x43;
  }

  /**
   * At a one-byte I/O exit of vCPU `index` on a PIT port: create the PIT (once) and arrange the
   * replay. False when this vCPU was replayed before: KVM then had a PIT when the access was made
   * and passed it on anyway, so it is the port bus's, like any access KVM's PIT refuses (KVM takes
   * only one-byte accesses; wider ones are not `take`n at all).
   */
  take(vcpu: Vcpu, index: number, port: number): boolean {
    if (this.replayed.has(index)) return false;
    const regs = vcpu.getRegs();
    if (!this.vm.hasPit2) createPit(this.vm);
    this.saved[index] = { regs, port };
    this.replayed.add(index);
    vcpu.kick();
    return true;
  }

  /**
   * At vCPU `index`'s next `interrupted` exit: the access is complete, undo it so it runs again.
   * "none" when nothing waited; "lost" when an OUT that had retired could not be found before RIP
   * (its bytes unmapped, or rewritten since): the guest then goes on without that one write.
   */
  replay(vcpu: Vcpu, index: number): "none" | "replayed" | "lost" {
    const taken = this.saved[index];
    if (taken === undefined) return "none";
    this.saved[index] = undefined;
    const { regs: before, port } = taken;
    const now = vcpu.getRegs();
    if (now.rip !== before.rip || now.rsi !== before.rsi || now.rdi !== before.rdi || now.rcx !== before.rcx) {
      vcpu.setRegs(before);
      return "replayed";
    }
    const length = retiredOutLength(vcpu, this.vm.memory, now, port);
    if (length === 0) return "lost";
    vcpu.setRegs({ ...now, rip: now.rip - BigInt(length) });
    return "replayed";
  }
}

/** 2 for `E6 port`, 1 for `EE` with DX = port, ending just before RIP; 0 when neither is there. */
function retiredOutLength(vcpu: Vcpu, memory: GuestMemory, regs: KvmRegs, port: number): number {
  const byteAt = byteBeforeIp(memory, regs.rip, vcpu.getSregs());
  const last = byteAt(1n);
  if (last === port && byteAt(2n) === 0xe6) return 2;
  if (last === 0xee && Number(regs.rdx & 0xffffn) === port) return 1;
  return 0;
}
