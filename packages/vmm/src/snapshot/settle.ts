import type { GuestMemory, KvmRegs, KvmSregs, KvmVcpuEvents } from "@tsvmm/abi";
import type { Vcpu } from "@tsvmm/kvm-backend";
import { byteBeforeIp } from "../debug/translate.js";
import type { Vmm } from "../vmm.js";
import { SnapshotError } from "./errors.js";

const INT3 = 0xcc;
const INTO = 0xce;
const INT_N = 0xcd;
const VECTOR_BP = 3;
const VECTOR_OF = 4;

/** What a vCPU's registers and events say, enough to tell whether a software event is in flight. */
export interface SoftEventView {
  readonly regs: Pick<KvmRegs, "rip">;
  readonly sregs: Pick<KvmSregs, "cs" | "cr0" | "cr3" | "cr4" | "efer">;
  readonly events: Pick<KvmVcpuEvents, "exception" | "interrupt">;
}

/**
 * Why this vCPU may hold a software exception or interrupt KVM has queued but not yet delivered,
 * or undefined when it cannot. KVM_GET_VCPU_EVENTS leaves such events out (it has no field for
 * the instruction length a VMX re-injection needs, and counts on the guest re-executing the
 * instruction), but this host's KVM (PVM) has already moved RIP past an `int3` run natively at
 * CPL3 when it queues the #BP: saved then, the #BP is lost and the restored guest executes what
 * follows the `int3`. The events still name the vector (exception.nr / interrupt.nr), so the
 * state is recognised by that vector together with the instruction just before RIP. A match can
 * also be an event already delivered and returned from; the caller runs the vCPU on in both cases.
 */
export function softEventInFlight(view: SoftEventView, memory: GuestMemory): string | undefined {
  const { regs, sregs, events } = view;
  const wantBp = events.exception.nr === VECTOR_BP;
  const wantOf = events.exception.nr === VECTOR_OF;
  const intN = events.interrupt.nr;
  const byteAt = byteBeforeIp(memory, regs.rip, sregs);
  const before = byteAt(1n);
  if (wantBp && before === INT3) return `a #BP from the int3 before RIP 0x${regs.rip.toString(16)}`;
  if (wantOf && before === INTO) return `a #OF from the into before RIP 0x${regs.rip.toString(16)}`;
  if (before === intN && byteAt(2n) === INT_N) return `the software interrupt of int 0x${intN.toString(16)} before RIP 0x${regs.rip.toString(16)}`;
  return undefined;
}

function viewOf(v: Vcpu): SoftEventView {
  return { regs: v.getRegs(), sregs: v.getSregs(), events: v.getVcpuEvents() };
}

/** How long the VM runs on before the next look: doubling from 1 ms, `tries` times at most. */
const FIRST_RUN_MS = 1;
const LAST_RUN_MS = 64;
const TRIES = 16;

/**
 * Make a paused VM's state whole for a snapshot: while any vCPU may hold a software event KVM
 * would not save (see softEventInFlight), let the VM run on briefly and pause it again (the event
 * is delivered at the next KVM_RUN that enters the guest). Returns the number of extra pauses it
 * took. A VM that stops meanwhile is left stopped. Throws SNAPSHOT_VM_STATE if a vCPU is still in
 * such a state after every try.
 */
export async function settleSoftEvents(vmm: Vmm): Promise<number> {
  let waitMs = FIRST_RUN_MS;
  for (let n = 0; ; n++) {
    if (!vmm.paused || vmm.stopping) return n;
    const found: string[] = [];
    for (const v of vmm.vcpus) {
      if (v.closed) continue;
      const why = softEventInFlight(viewOf(v), vmm.vm.memory);
      if (why !== undefined) found.push(`vCPU ${v.id}: ${why}`);
    }
    if (found.length === 0) return n;
    if (n === TRIES) {
      throw new SnapshotError("SNAPSHOT_VM_STATE", `a software event KVM cannot save is still in flight after ${TRIES} runs on: ${found.join("; ")}`);
    }
    vmm.resume();
    await new Promise((r) => setTimeout(r, waitMs));
    waitMs = Math.min(waitMs * 2, LAST_RUN_MS);
    await vmm.pause();
  }
}
