import { buildIdentityMap } from "@tsvmm/ept";
import { requireKvm, type Vm } from "@tsvmm/kvm-backend";
import {checkVmEntry,
  decodeIoQualification, 
  EPT_VIOLATION_QUAL, EXIT_REASON, exitFromKvm, type GuestMode, type KvmExitDescription, PROC2, PROFILES, toKvmState, type VmcsState, type VmxExit, validVmcsTemplate,
} from "@tsvmm/vmcs";
import { type StopDetail, VmmBuilder } from "@tsvmm/vmm";
import { describe, expect, it } from "vitest";
import { assemble } from "../../packages/kvm-backend/test/helpers.js";

// Guests described only as VMCS guest-state areas: each state is checked with the SDM's VM-entry
// rules, turned into KVM vCPU state by the bridge, and run on /dev/kvm; every KVM exit is then read
// back as the VMX exit a hypervisor would have seen. They run on the VMM users get (VmmBuilder
// with the CPU state instead of a kernel), the exits read from its bus observers and stop reason.

const hasKvm = requireKvm();
const caps = PROFILES["intel-core-i7-5600u"]!;
// 1 MiB of RAM: the address right above it has no memory slot, so a store there exits as MMIO.
const HOLE = 0x100000;
const CODE = 0x80000;

/** The KVM exits of a run, as the bridge reads them: the bus observers' accesses, then how it stopped. */
function exitsOf(accesses: KvmExitDescription[], stop: StopDetail): KvmExitDescription[] {
  if (stop.kind === "halted") return [...accesses, { kind: "hlt" }];
  if (stop.kind === "shutdown") return [...accesses, { kind: "shutdown" }];
  throw new Error(`the guest stopped with ${JSON.stringify(stop)}`);
}

/** Run a guest described only by a VMCS guest state on the VMM users get (no irqchip: HLT exits). */
async function runToHalt(mode: GuestMode, prepare: (vm: Vm) => void, adjust?: (s: VmcsState) => void): Promise<VmxExit[]> {
  const state = validVmcsTemplate(caps, mode);
  // The templates start protected and long mode at 1 MiB; this guest's code sits below it.
  if (mode !== "real") state.set("GUEST_RIP", BigInt(CODE));
  adjust?.(state);
  const accesses: KvmExitDescription[] = [];
  const r = await new VmmBuilder()
    .memoryMiB(1)
    .irqchip(false)
    .cpuState({ regs: toKvmState(state).regs, sregs: toKvmState(state).sregs })
    .prepare(({ vm }) => {
      prepare(vm);
      if (mode === "long") {
        // The template points CR3 at 0x2000; put real tables there.
        state.set("GUEST_CR3", buildIdentityMap(vm.memory, 0x2000, { size: 1n << 30n }));
      }
      expect(checkVmEntry(state, caps)).toEqual([]);
      const k = toKvmState(state);
      return { regs: k.regs, sregs: k.sregs, msrs: k.msrs };
    })
    .observePio((port, data, isWrite) => accesses.push({ kind: "io", port, size: data.length as 1 | 2 | 4, direction: isWrite ? "out" : "in", string: false }))
    .observeMmio((address, data, isWrite) => accesses.push({ kind: "mmio", gpa: BigInt(address), isWrite, len: data.length }))
    .watchdog({ timeoutMs: 10_000 })
    .run();
  return exitsOf(accesses, r.detail).map(exitFromKvm);
}


describe.runIf(hasKvm)("VMCS guest states run on KVM through the bridge", () => {
  const expectExits = (exits: VmxExit[], port: number) => {
    expect(exits.map((x) => x.basicExitReason)).toEqual([EXIT_REASON.IO_INSTRUCTION, EXIT_REASON.EPT_VIOLATION, EXIT_REASON.HLT]);
    expect(decodeIoQualification(exits[0]!.exitQualification)).toMatchObject({ port, size: 1, direction: "out" });
    expect(exits[1]!.exitQualification & EPT_VIOLATION_QUAL.WRITE).toBe(EPT_VIOLATION_QUAL.WRITE);
    expect(exits[1]!.guestPhysicalAddress).toBe(BigInt(HOLE + 0x10));
  };

  it("real mode (unrestricted guest at the reset vector f000:fff0)", async () => {
    const exits = await runToHalt("real", (v) => {
      // The template's CS:IP is the architectural reset vector; jump from there to our code.
      v.memory.write(0xffff0, assemble("jmp 0x1000", 16, 0xfff0).subarray(0));
      // ffff:0020 is 0x100010, one past the end of RAM plus 0x10.
      v.memory.write(0xf1000, assemble("mov al, 0x11\n out 0x80, al\n mov ax, 0xffff\n mov es, ax\n mov byte ptr es:[0x20], 0x5a\n hlt", 16));
    });
    expectExits(exits, 0x80);
  });

  // Protected mode with paging off, which VM entry allows only with "unrestricted guest". (This
  // PVM host cannot run 32-bit paging set through KVM_SET_SREGS: CR0.PG does not stick and the
  // vCPU shuts down at its first instruction, with legacy and with PAE tables alike.)
  it("32-bit protected mode (unrestricted guest, paging off)", async () => {
    const exits = await runToHalt(
      "protected",
      (v) => {
        v.memory.write(CODE, assemble(`mov al, 0x22\n out 0x81, al\n mov byte ptr [${HOLE + 0x10}], 0x5a\n hlt`, 32));
      },
      (s) => {
        s.set("SECONDARY_VM_EXEC_CONTROL", Number(s.get("SECONDARY_VM_EXEC_CONTROL")) | PROC2.UNRESTRICTED_GUEST);
        s.set("GUEST_CR0", s.get("GUEST_CR0") & ~0x8000_0000n);
      },
    );
    expectExits(exits, 0x81);
  });

  it("64-bit long mode", async () => {
    const exits = await runToHalt("long", (v) => {
      v.memory.write(CODE, assemble(`mov al, 0x33\n out 0x82, al\n mov byte ptr [${HOLE + 0x10}], 0x5a\n hlt`, 64));
    });
    expectExits(exits, 0x82);
  });

  it("a triple fault in a long-mode guest comes back as VMX exit reason 2", async () => {
    const exits = await runToHalt("long", (v) => {
      v.memory.fill(0x3f000, 16, 0);
      v.memory.write(CODE, assemble("lidt [0x3f000]\n ud2", 64));
    });
    expect(exits.map((x) => x.basicExitReason)).toEqual([EXIT_REASON.TRIPLE_FAULT]);
  });

  it("a state the checks reject is the state KVM cannot run as described", () => {
    const state = validVmcsTemplate(caps, "long");
    state.set("GUEST_CR4", 0n); // IA-32e mode guest without CR4.PAE
    const ids = checkVmEntry(state, caps).map((v) => v.id);
    expect(ids.length).toBeGreaterThan(0);
    expect(ids.join(" ")).toMatch(/PAE/);
  });
});
