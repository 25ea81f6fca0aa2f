import { buildIdentityMap } from "@tsvmm/ept";
import { Kvm, requireKvm, type VcpuExit, type Vm } from "@tsvmm/kvm-backend";
import {checkVmEntry,
  decodeIoQualification, 
  EPT_VIOLATION_QUAL, EXIT_REASON, exitFromKvm, type GuestMode, type KvmExitDescription, PROC2, PROFILES, toKvmState, type VmcsState, type VmxExit, validVmcsTemplate,
} from "@tsvmm/vmcs";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { assemble } from "../../packages/kvm-backend/test/helpers.js";

// Guests described only as VMCS guest-state areas: each state is checked with the SDM's VM-entry
// rules, turned into KVM vCPU state by the bridge, and run on /dev/kvm; every KVM exit is then read
// back as the VMX exit a hypervisor would have seen.

const hasKvm = requireKvm();
const caps = PROFILES["intel-core-i7-5600u"]!;
const HOLE = 0xa0000; // the legacy VGA window: no memory slot behind it

function describeExit(e: VcpuExit): KvmExitDescription {
  switch (e.kind) {
    case "io":
      return { kind: "io", port: e.port, size: e.size as 1 | 2 | 4, direction: e.direction, string: e.count > 1 };
    case "mmio":
      return { kind: "mmio", gpa: e.address, isWrite: e.isWrite, len: e.length };
    case "hlt":
    case "shutdown":
      return { kind: e.kind };
    default:
      throw new Error(`unexpected KVM exit ${e.kind}`);
  }
}

function runToHalt(vm: Vm, mode: GuestMode, prepare: (vm: Vm) => void, adjust?: (s: VmcsState) => void): VmxExit[] {
  const state = validVmcsTemplate(caps, mode);
  adjust?.(state);
  prepare(vm);
  if (mode !== "real" && (state.get("GUEST_CR0") & 0x8000_0000n) !== 0n) {
    // The template points CR3 at 0x2000; put real tables there.
    if (mode === "long") {
      const cr3 = buildIdentityMap(vm.memory, 0x2000, { size: 1n << 30n });
      state.set("GUEST_CR3", cr3);
    } else {
      // 32-bit paging: one page directory entry -> a page table identity-mapping the first 4 MiB.
      for (let i = 0; i < 1024; i++) vm.memory.writeU32(0x3000 + i * 4, (i << 12) | 0x3);
      vm.memory.writeU32(0x2000, 0x3000 | 0x3);
    }
  }
  expect(checkVmEntry(state, caps)).toEqual([]);
  const vcpu = vm.createVcpu(0);
  const k = toKvmState(state);
  vcpu.setSregs(k.sregs);
  vcpu.setRegs(k.regs);
  vcpu.setMsrs(k.msrs);
  const exits: VmxExit[] = [];
  for (let i = 0; i < 10; i++) {
    const e = vcpu.run();
    const vmx = exitFromKvm(describeExit(e));
    exits.push(vmx);
    if (e.kind === "hlt" || e.kind === "shutdown") break;
  }
  return exits;
}

describe.runIf(hasKvm)("VMCS guest states run on KVM through the bridge", () => {
  let kvm: Kvm;
  let vm: Vm;
  beforeEach(() => {
    kvm = Kvm.open();
    vm = kvm.createVm();
    vm.setTssAddr(0xfffbd000);
    vm.addMemory({ slot: 0, guestPhysAddr: 0, size: HOLE });
    vm.addMemory({ slot: 1, guestPhysAddr: 0xc0000, size: 0x400000 - 0xc0000 });
  });
  afterEach(() => {
    vm.close();
    kvm.close();
  });

  const expectExits = (exits: VmxExit[], port: number) => {
    expect(exits.map((x) => x.basicExitReason)).toEqual([EXIT_REASON.IO_INSTRUCTION, EXIT_REASON.EPT_VIOLATION, EXIT_REASON.HLT]);
    expect(decodeIoQualification(exits[0]!.exitQualification)).toMatchObject({ port, size: 1, direction: "out" });
    expect(exits[1]!.exitQualification & EPT_VIOLATION_QUAL.WRITE).toBe(EPT_VIOLATION_QUAL.WRITE);
    expect(exits[1]!.guestPhysicalAddress).toBe(BigInt(HOLE + 0x10));
  };

  it("real mode (unrestricted guest at the reset vector f000:fff0)", () => {
    const exits = runToHalt(vm, "real", (v) => {
      // The template's CS:IP is the architectural reset vector; jump from there to our code.
      v.memory.write(0xffff0, assemble("jmp 0x1000", 16, 0xfff0).subarray(0));
      v.memory.write(0xf1000, assemble("mov al, 0x11\n out 0x80, al\n mov ax, 0xa000\n mov es, ax\n mov byte ptr es:[0x10], 0x5a\n hlt", 16));
    });
    expectExits(exits, 0x80);
  });

  // Protected mode with paging off, which VM entry allows only with "unrestricted guest". (This
  // PVM host cannot run 32-bit paging set through KVM_SET_SREGS: CR0.PG does not stick and the
  // vCPU shuts down at its first instruction, with legacy and with PAE tables alike.)
  it("32-bit protected mode (unrestricted guest, paging off)", () => {
    const exits = runToHalt(
      vm,
      "protected",
      (v) => {
        v.memory.write(0x100000, assemble(`mov al, 0x22\n out 0x81, al\n mov byte ptr [${HOLE + 0x10}], 0x5a\n hlt`, 32));
      },
      (s) => {
        s.set("SECONDARY_VM_EXEC_CONTROL", Number(s.get("SECONDARY_VM_EXEC_CONTROL")) | PROC2.UNRESTRICTED_GUEST);
        s.set("GUEST_CR0", s.get("GUEST_CR0") & ~0x8000_0000n);
      },
    );
    expectExits(exits, 0x81);
  });

  it("64-bit long mode", () => {
    const exits = runToHalt(vm, "long", (v) => {
      v.memory.write(0x100000, assemble(`mov al, 0x33\n out 0x82, al\n mov byte ptr [${HOLE + 0x10}], 0x5a\n hlt`, 64));
    });
    expectExits(exits, 0x82);
  });

  it("a triple fault in a long-mode guest comes back as VMX exit reason 2", () => {
    const exits = runToHalt(vm, "long", (v) => {
      v.memory.fill(0x3f000, 16, 0);
      v.memory.write(0x100000, assemble("lidt [0x3f000]\n ud2", 64));
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
