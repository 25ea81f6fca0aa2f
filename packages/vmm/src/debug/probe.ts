import { KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_USE_HW_BP, KVM_GUESTDBG_USE_SW_BP, type KvmSegment } from "@tsvmm/abi";
import { Kvm } from "@tsvmm/kvm-backend";

/**
 * What this host's KVM does with guest debugging for code at CPL0, measured (the PVM host module
 * emulates CPL0 code, and its emulator does not do everything the CPU would).
 */
export interface GuestDebugSupport {
  /** `int3` with KVM_GUESTDBG_USE_SW_BP exits to the VMM as KVM_EXIT_DEBUG (exception 3). */
  readonly softwareBreakpoints: boolean;
  /** A write to an address in DR0–DR3 with a write condition exits as KVM_EXIT_DEBUG (DR6.Bn). */
  readonly dataBreakpoints: boolean;
  /** An execute breakpoint in DR0–DR3 exits before the instruction. */
  readonly executeBreakpoints: boolean;
  /** What each probe ended with, for a person. */
  readonly notes: readonly string[];
}

const CODE = 0x1000;
const DATA = 0x3000;
// nop; int3; mov byte [DATA], 7; nop; hlt (32-bit protected mode, flat).
const PROGRAM = Buffer.from([0x90, 0xcc, 0xc6, 0x05, DATA & 0xff, DATA >> 8, 0, 0, 7, 0x90, 0xf4]);
const INT3_AT = CODE + 1;
const STORE_AT = CODE + 2;
const AFTER_STORE = CODE + 9;

let cached: GuestDebugSupport | undefined;

function flat(selector: number, type: number): KvmSegment {
  return { base: 0n, limit: 0xffffffff, selector, type, present: 1, dpl: 0, db: 1, s: 1, l: 0, g: 1, avl: 0, unusable: 0 };
}

/**
 * Run the probe program once per process in a throw-away VM: an `int3` under USE_SW_BP, then an
 * execute breakpoint on the store after it and a write breakpoint on the byte it stores.
 */
export function probeGuestDebug(): GuestDebugSupport {
  if (cached) return cached;
  const notes: string[] = [];
  let softwareBreakpoints = false;
  let dataBreakpoints = false;
  let executeBreakpoints = false;
  const kvm = Kvm.open();
  try {
    const vm = kvm.createVm();
    vm.setTssAddr(0xfffbd000);
    vm.addMemory({ slot: 0, guestPhysAddr: 0, size: 0x10000, name: "probe" });
    vm.memory.write(CODE, PROGRAM);
    const vcpu = vm.createVcpu(0);
    const s = vcpu.getSregs();
    vcpu.setSregs({ ...s, cs: flat(0x10, 11), ds: flat(0x18, 3), es: flat(0x18, 3), ss: flat(0x18, 3), fs: flat(0x18, 3), gs: flat(0x18, 3), cr0: s.cr0 | 1n });
    const zero = { rax: 0n, rbx: 0n, rcx: 0n, rdx: 0n, rsi: 0n, rdi: 0n, rsp: 0x8000n, rbp: 0n, r8: 0n, r9: 0n, r10: 0n, r11: 0n, r12: 0n, r13: 0n, r14: 0n, r15: 0n };
    vcpu.setRegs({ ...zero, rip: BigInt(CODE), rflags: 2n });
    vcpu.setGuestDebug(KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_SW_BP);
    let exit = vcpu.run();
    if (exit.kind === "debug" && exit.exception === 3 && (exit.pc === BigInt(INT3_AT) || exit.pc === BigInt(INT3_AT + 1))) {
      softwareBreakpoints = true;
      notes.push(`int3 at CPL0 with USE_SW_BP: KVM_EXIT_DEBUG, exception 3, pc 0x${exit.pc.toString(16)}`);
    } else {
      notes.push(`int3 at CPL0 with USE_SW_BP: ${exit.kind}${exit.kind === "internal_error" ? ` (suberror ${exit.suberror})` : ""}, not KVM_EXIT_DEBUG`);
    }
    // Go on from the store whatever happened to the int3.
    vcpu.setRegs({ ...zero, rip: BigInt(STORE_AT), rflags: 2n });
    // DR0: execute at the store; DR1: write, 1 byte, at DATA; G0, G1, GE.
    const dr7 = 0x400n | (1n << 1n) | (1n << 3n) | (1n << 9n) | (1n << 20n);
    vcpu.setGuestDebug(KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP, [BigInt(STORE_AT), BigInt(DATA), 0n, 0n, 0n, 0n, 0n, dr7]);
    exit = vcpu.run();
    if (exit.kind === "debug" && exit.exception === 1 && (exit.dr6 & 1n) !== 0n && exit.pc === BigInt(STORE_AT)) {
      executeBreakpoints = true;
      // The execute slot would fire again at the same RIP: drop it and keep the write slot.
      vcpu.setGuestDebug(KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP, [0n, BigInt(DATA), 0n, 0n, 0n, 0n, 0n, 0x400n | (1n << 3n) | (1n << 9n) | (1n << 20n)]);
      exit = vcpu.run();
      if (exit.kind === "debug" && exit.exception === 1 && (exit.dr6 & 2n) !== 0n && exit.pc === BigInt(AFTER_STORE)) {
        dataBreakpoints = true;
        notes.push("write breakpoint at CPL0: KVM_EXIT_DEBUG after the store");
      } else {
        notes.push(`write breakpoint at CPL0: ${exit.kind}${exit.kind === "debug" ? ` at 0x${exit.pc.toString(16)} dr6 0x${exit.dr6.toString(16)}` : ""}, the store went unreported`);
      }
    } else {
      notes.push(`execute breakpoint at CPL0: ${exit.kind}, not KVM_EXIT_DEBUG at the store`);
    }
    vm.close();
  } finally {
    kvm.close();
  }
  cached = { softwareBreakpoints, dataBreakpoints, executeBreakpoints, notes };
  return cached;
}
