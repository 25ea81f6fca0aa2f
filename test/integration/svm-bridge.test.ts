import { buildIdentityMap } from "@tsvmm/ept";
import { requireKvm, type Vm } from "@tsvmm/kvm-backend";
import {
  checkVmrun,
  decodeExitInfo,
  type ExitInfo,
  exitFromKvm,
  type GuestMode,
  type KvmExitDescription,
  PROFILES,
  type SvmExit,
  toKvmState,
  VMEXIT,
  type VmcbState,
  validVmcbTemplate,
} from "@tsvmm/svm";
import { type StopDetail, VmmBuilder } from "@tsvmm/vmm";
import { describe, expect, it } from "vitest";
import { assemble } from "../../packages/kvm-backend/test/helpers.js";

// Guests described only as VMCBs: each is checked with the APM's VMRUN consistency checks, its
// state-save area turned into KVM vCPU state by the bridge and run on /dev/kvm through the VMM
// users get (VmmBuilder with a CPU state instead of a kernel); every KVM exit is then read back as
// the #VMEXIT (EXITCODE, EXITINFO1, EXITINFO2) an SVM hypervisor would have seen.

const hasKvm = requireKvm();
const caps = PROFILES["amd-ryzen-7-1800x"]!;
// 1 MiB of RAM, then a read-only page range at 1 MiB: a store there exits as an MMIO write
// (KVM_MEM_READONLY), the SVM nested page fault with P=1 and RW=1. Real mode reaches it as ffff:0010+.
const ROM = 0x100000;
const HOLE = 0x300000; // no memory slot at all: a load exits as an MMIO read, NPF with P=0
const CODE = 0x80000;
const ADDRESS_SIZE = { real: 16, protected: 32, long: 64 } as const;

function exitsOf(accesses: KvmExitDescription[], stop: StopDetail): KvmExitDescription[] {
  if (stop.kind === "halted") return [...accesses, { kind: "hlt" }];
  if (stop.kind === "shutdown") return [...accesses, { kind: "shutdown" }];
  throw new Error(`the guest stopped with ${JSON.stringify(stop)}`);
}

interface DecodedExit extends SvmExit {
  info: ExitInfo;
}

async function runVmcb(mode: GuestMode, prepare: (vm: Vm) => void, adjust?: (s: VmcbState) => void): Promise<DecodedExit[]> {
  const vmcb = validVmcbTemplate(caps, mode);
  if (mode !== "real") vmcb.set("save.rip", BigInt(CODE));
  adjust?.(vmcb);
  const accesses: KvmExitDescription[] = [];
  const r = await new VmmBuilder()
    .memoryMiB(1)
    .irqchip(false)
    .memorySlot({ gpa: ROM, size: 0x10000, readonly: true, name: "rom" })
    .cpuState({ regs: toKvmState(vmcb).regs, sregs: toKvmState(vmcb).sregs })
    .prepare(({ vm }) => {
      prepare(vm);
      // The template points CR3 at 0x2000; put identity-mapping tables there.
      if (mode === "long") vmcb.set("save.cr3", buildIdentityMap(vm.memory, 0x2000, { size: 1n << 30n }));
      expect(checkVmrun(vmcb, caps)).toEqual([]);
      const k = toKvmState(vmcb);
      return { regs: k.regs, sregs: k.sregs, msrs: k.msrs };
    })
    .observePio((port, data, isWrite) => accesses.push({ kind: "io", port, size: data.length as 1 | 2 | 4, direction: isWrite ? "out" : "in", addressSize: ADDRESS_SIZE[mode] }))
    .observeMmio((address, data, isWrite) => accesses.push({ kind: "mmio", gpa: BigInt(address), isWrite, len: data.length, present: address >= ROM && address < ROM + 0x10000 }))
    .watchdog({ timeoutMs: 10_000 })
    .run();
  return exitsOf(accesses, r.detail)
    .map(exitFromKvm)
    .map((e) => ({ ...e, info: decodeExitInfo(e.exitCode, e.exitInfo1, e.exitInfo2) }));
}

describe.runIf(hasKvm)("VMCBs run on KVM through the bridge", () => {
  const expectExits = (exits: DecodedExit[], port: number, mode: GuestMode) => {
    expect(exits.map((x) => x.exitCode)).toEqual([VMEXIT.IOIO, VMEXIT.NPF, VMEXIT.HLT]);
    expect(exits[0]!.info).toMatchObject({ kind: "ioio", io: { port, size: 1, direction: "out", string: false, rep: false, addressSize: ADDRESS_SIZE[mode] } });
    expect(exits[1]!.info).toMatchObject({ kind: "npf", npf: { present: true, write: true, finalTranslation: true, gpa: BigInt(ROM + 0x10) } });
  };

  it("real mode (CR0.PE=0, CS:IP f000:fff0), entered directly as SVM allows", async () => {
    const exits = await runVmcb("real", (v) => {
      v.memory.write(0xffff0, assemble("jmp 0x1000", 16, 0xfff0));
      v.memory.write(0xf1000, assemble("mov al, 0x11\n out 0x80, al\n mov ax, 0xffff\n mov es, ax\n mov byte ptr es:[0x20], 0x5a\n hlt", 16));
    });
    expectExits(exits, 0x80, "real");
  });

  it("32-bit protected mode, paging off", async () => {
    const exits = await runVmcb("protected", (v) => {
      v.memory.write(CODE, assemble(`mov al, 0x22\n out 0x81, al\n mov byte ptr [${ROM + 0x10}], 0x5a\n hlt`, 32));
    });
    expectExits(exits, 0x81, "protected");
  });

  it("64-bit long mode", async () => {
    const exits = await runVmcb("long", (v) => {
      v.memory.write(CODE, assemble(`mov al, 0x33\n out 0x82, al\n mov byte ptr [${ROM + 0x10}], 0x5a\n hlt`, 64));
    });
    expectExits(exits, 0x82, "long");
  });

  it("a 16-bit IN and a load from unbacked memory: IOIO direction/size and an NPF with P=0", async () => {
    const exits = await runVmcb("long", (v) => {
      v.memory.write(CODE, assemble(`mov dx, 0x1f0\n in ax, dx\n mov al, byte ptr [${HOLE}]\n hlt`, 64));
    });
    expect(exits.map((x) => x.exitCode)).toEqual([VMEXIT.IOIO, VMEXIT.NPF, VMEXIT.HLT]);
    expect(exits[0]!.info).toMatchObject({ kind: "ioio", io: { port: 0x1f0, size: 2, direction: "in" } });
    expect(exits[1]!.info).toMatchObject({ kind: "npf", npf: { present: false, write: false, gpa: BigInt(HOLE) } });
  });

  it("a triple fault in a long-mode guest comes back as VMEXIT_SHUTDOWN", async () => {
    const exits = await runVmcb("long", (v) => {
      v.memory.fill(0x3f000, 16, 0);
      v.memory.write(CODE, assemble("lidt [0x3f000]\n ud2", 64));
    });
    expect(exits.map((x) => x.exitCode)).toEqual([VMEXIT.SHUTDOWN]);
  });

  it("a VMCB the checks reject is one VMRUN would refuse with VMEXIT_INVALID", () => {
    const vmcb = validVmcbTemplate(caps, "long").set("save.cr4", 0n);
    expect(checkVmrun(vmcb, caps).map((v) => v.id)).toEqual(["svm.save.lme-pg-no-pae"]);
  });
});
