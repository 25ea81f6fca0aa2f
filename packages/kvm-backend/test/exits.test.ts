import {
  KVM_CAP, KVM_EXIT, KVM_RUN_EXIT_OFFSET, KVM_RUN_X86_BUS_LOCK, KVM_RUN_X86_SMM, KVM_SYSTEM_EVENT, type KvmRegs,
  KvmRunEoiLayout, KvmRunExLayout, KvmRunFailEntryLayout, KvmRunHwLayout, KvmRunHypercallLayout, KvmRunLayout, KvmRunSystemEventLayout,
  type KvmSregs,
} from "@tsvmm/abi";
import { ExitDecoder, type Kvm, requireKvm, type Vm } from "@tsvmm/kvm-backend";
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { assemble, closeTestVm, enterLongMode, installIdt, openTestVm } from "./helpers.js";

const hasKvm = requireKvm();

/** A kvm_run page as KVM would leave it: header fields and one exit-union member, by layout. */
function runPage(exitReason: number, exit: Buffer, flags = 0): Buffer {
  const page = Buffer.alloc(4096, 0xa5); // bytes beyond kvm_run are never read as exit data
  KvmRunLayout.encode(
    {
      requestInterruptWindow: 0, immediateExit: 0, exitReason, readyForInterruptInjection: 0, ifFlag: 0, flags,
      cr8: 0n, apicBase: 0n, exit, kvmValidRegs: 0n, kvmDirtyRegs: 0n,
    },
    page,
  );
  return page;
}

const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const u32 = fc.integer({ min: 0, max: 0xffffffff });

describe("exit decoding on synthetic kvm_run pages", () => {
  it("fail_entry: hardware entry-failure reason and CPU", () => {
    fc.assert(
      fc.property(u64, u32, (reason, cpu) => {
        const e = new ExitDecoder(runPage(KVM_EXIT.FAIL_ENTRY, KvmRunFailEntryLayout.encode({ hardwareEntryFailureReason: reason, cpu }))).decode();
        expect(e.kind).toBe("fail_entry");
        if (e.kind !== "fail_entry") return;
        expect([e.hardwareEntryFailureReason, e.cpu, e.reasonName]).toEqual([reason, cpu, "FAIL_ENTRY"]);
        expect(e.toJSON()).toEqual({ kind: "fail_entry", hardwareEntryFailureReason: `0x${reason.toString(16)}`, cpu });
      }),
      { numRuns: 300 },
    );
  });

  it("system_event: type, its name, and data clamped to the 16 entries the union holds", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 12 }), fc.integer({ min: 0, max: 40 }), fc.array(u64, { minLength: 16, maxLength: 16 }), (type, ndata, data) => {
        const e = new ExitDecoder(runPage(KVM_EXIT.SYSTEM_EVENT, KvmRunSystemEventLayout.encode({ type, ndata, data }))).decode();
        expect(e.kind).toBe("system_event");
        if (e.kind !== "system_event") return;
        expect(e.type).toBe(type);
        const name = Object.entries(KVM_SYSTEM_EVENT).find(([, v]) => v === type)?.[0];
        expect(e.typeName).toBe(name ?? `UNKNOWN_${type}`);
        expect(e.data).toEqual(data.slice(0, Math.min(ndata, 16)));
      }),
      { numRuns: 300 },
    );
    const reset = new ExitDecoder(runPage(KVM_EXIT.SYSTEM_EVENT, KvmRunSystemEventLayout.encode({ type: KVM_SYSTEM_EVENT.RESET, ndata: 0, data: Array(16).fill(0n) }))).decode();
    expect(reset.toJSON()).toEqual({ kind: "system_event", type: "RESET" });
  });

  it("hypercall: nr, six arguments, long mode; setReturn writes kvm_run.hypercall.ret only", () => {
    fc.assert(
      fc.property(u64, fc.array(u64, { minLength: 6, maxLength: 6 }), fc.integer({ min: 0, max: 1 }), u64, (nr, args, longmode, ret) => {
        const page = runPage(KVM_EXIT.HYPERCALL, KvmRunHypercallLayout.encode({ nr, args, ret: 0n, longmode }));
        const e = new ExitDecoder(page).decode();
        expect(e.kind).toBe("hypercall");
        if (e.kind !== "hypercall") return;
        expect([e.nr, e.args, e.longmode]).toEqual([nr, args, longmode === 1]);
        const before = Buffer.from(page);
        e.setReturn(ret);
        const after = KvmRunHypercallLayout.decode(page, KVM_RUN_EXIT_OFFSET);
        expect(after).toEqual({ nr, args, ret, longmode });
        // Nothing but the 8 bytes of `ret` changed.
        const changed = [...page.keys()].filter((i) => page[i] !== before[i]);
        const retAt = KVM_RUN_EXIT_OFFSET + KvmRunHypercallLayout.offsetOf("ret");
        expect(changed.every((i) => i >= retAt && i < retAt + 8)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it("exception: vector and error code", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 31 }), u32, (exception, errorCode) => {
        const e = new ExitDecoder(runPage(KVM_EXIT.EXCEPTION, KvmRunExLayout.encode({ exception, errorCode }))).decode();
        expect(e.kind).toBe("exception");
        if (e.kind !== "exception") return;
        expect(e.toJSON()).toEqual({ kind: "exception", exception, errorCode });
      }),
      { numRuns: 300 },
    );
  });

  it("unknown: every reason without a decoder, named when KVM names it, with the hardware exit reason", () => {
    const decoded = new Set<number>([
      KVM_EXIT.IO, KVM_EXIT.MMIO, KVM_EXIT.HLT, KVM_EXIT.SHUTDOWN, KVM_EXIT.X86_RDMSR, KVM_EXIT.X86_WRMSR, KVM_EXIT.IRQ_WINDOW_OPEN,
      KVM_EXIT.INTR, KVM_EXIT.FAIL_ENTRY, KVM_EXIT.INTERNAL_ERROR, KVM_EXIT.SYSTEM_EVENT, KVM_EXIT.HYPERCALL, KVM_EXIT.DEBUG,
      KVM_EXIT.EXCEPTION, KVM_EXIT.DIRTY_RING_FULL, KVM_EXIT.IOAPIC_EOI,
    ]);
    fc.assert(
      fc.property(u32.filter((r) => !decoded.has(r)), u64, (reason, hw) => {
        const e = new ExitDecoder(runPage(reason, KvmRunHwLayout.encode({ hardwareExitReason: hw }))).decode();
        expect(e.kind).toBe("unknown");
        if (e.kind !== "unknown") return;
        const name = Object.entries(KVM_EXIT).find(([, v]) => v === reason)?.[0];
        expect([e.reason, e.reasonName, e.hardwareExitReason]).toEqual([reason, name ?? `UNKNOWN_${reason}`, hw]);
      }),
      { numRuns: 300 },
    );
    // Reasons KVM names but tsvmm does not decode stay named.
    for (const r of [KVM_EXIT.NOTIFY, KVM_EXIT.X86_BUS_LOCK, KVM_EXIT.TPR_ACCESS, KVM_EXIT.UNKNOWN]) {
      expect(new ExitDecoder(runPage(r, Buffer.alloc(8))).decode()).toMatchObject({ kind: "unknown", reason: r });
    }
  });

  it("ioapic_eoi: the vector", () => {
    for (let vector = 0; vector < 256; vector++) {
      const e = new ExitDecoder(runPage(KVM_EXIT.IOAPIC_EOI, KvmRunEoiLayout.encode({ vector }))).decode();
      expect(e.toJSON()).toEqual({ kind: "ioapic_eoi", vector });
    }
  });

  it("kvm_run.flags: SMM and bus-lock bits on any exit", () => {
    for (const flags of [0, KVM_RUN_X86_SMM, KVM_RUN_X86_BUS_LOCK, KVM_RUN_X86_SMM | KVM_RUN_X86_BUS_LOCK]) {
      const e = new ExitDecoder(runPage(KVM_EXIT.HLT, Buffer.alloc(0), flags)).decode();
      expect([e.kind, e.flags, e.inSmm, e.busLock]).toEqual(["hlt", flags, (flags & KVM_RUN_X86_SMM) !== 0, (flags & KVM_RUN_X86_BUS_LOCK) !== 0]);
    }
  });
});

describe.runIf(hasKvm)("the rarer exits from real guests, where this host produces them", () => {
  let kvm: Kvm;
  let vm: Vm;
  beforeEach(() => {
    ({ kvm, vm } = openTestVm());
  });
  afterEach(() => closeTestVm(kvm, vm));

  it("guest states KVM_SET_SREGS accepts but VMX/SVM entry checks reject: each run ends in a decoded exit (fail_entry where the host reports one)", () => {
    // Each breaks one VM-entry rule of the SDM (vol. 3, 28.3.1) or the APM's VMRUN consistency checks.
    const variants: Record<string, (s: KvmSregs, r: KvmRegs) => void> = {
      "CS.L and CS.D both set in IA-32e mode": (s) => {
        s.cs.db = 1;
      },
      "non-canonical RIP in 64-bit mode": (_s, r) => {
        r.rip = 0x8000000000010000n;
      },
      "RFLAGS.VM in IA-32e mode": (_s, r) => {
        r.rflags = 0x20002n;
      },
      "SS.DPL differs from CS.DPL": (s) => {
        s.ss.dpl = 3;
      },
      "TR unusable": (s) => {
        s.tr.unusable = 1;
        s.tr.present = 0;
      },
    };
    const outcomes: string[] = [];
    for (const [name, breakIt] of Object.entries(variants)) {
      const v = kvm.createVm();
      try {
        v.addMemory({ slot: 0, guestPhysAddr: 0, size: 1 << 20 });
        v.memory.write(0x10000, assemble("mov al, 1\n out 0x10, al\n hlt", 64, 0x10000));
        const vcpu = v.createVcpu(0);
        enterLongMode(v, vcpu, 0x10000);
        const s = vcpu.getSregs();
        const r = vcpu.getRegs();
        breakIt(s, r);
        vcpu.setSregs(s);
        vcpu.setRegs(r);
        const e = vcpu.run();
        expect(["fail_entry", "io", "shutdown", "internal_error"]).toContain(e.kind);
        if (e.kind === "fail_entry") {
          expect(e.reason).toBe(KVM_EXIT.FAIL_ENTRY);
          expect(e.hardwareEntryFailureReason).not.toBe(0n);
        }
        outcomes.push(`${name}: ${JSON.stringify(e.toJSON())}`);
      } finally {
        v.close();
      }
    }
    console.log(`invalid guest states on this host:\n  ${outcomes.join("\n  ")}`);
    expect(outcomes).toHaveLength(Object.keys(variants).length);
  });

  it("system_event: a guest's Hyper-V reset request is one where KVM emulates Hyper-V; elsewhere the MSR write is refused with #GP", () => {
    const hyperv = kvm.checkExtension(KVM_CAP.HYPERV) > 0;
    const vcpu = vm.createVcpu(0);
    const cpuid = kvm.supportedCpuid().filter((e) => e.function < 0x40000000 || e.function >= 0x80000000);
    if (hyperv) {
      // Hyper-V TLFS: leaf 0x40000000 names the vendor "Microsoft Hv", 0x40000001 EAX the interface "Hv#1".
      const sig = Buffer.from("Microsoft Hv");
      cpuid.push({ function: 0x40000000, index: 0, flags: 0, eax: 0x40000005, ebx: sig.readUInt32LE(0), ecx: sig.readUInt32LE(4), edx: sig.readUInt32LE(8) });
      cpuid.push({ function: 0x40000001, index: 0, flags: 0, eax: Buffer.from("Hv#1").readUInt32LE(0), ebx: 0, ecx: 0, edx: 0 });
    }
    vcpu.setCpuid2(cpuid);
    // WRMSR HV_X64_MSR_RESET (0x40000003) = 1; #GP reports on port 0x12.
    vm.memory.write(0x10000, assemble("mov ecx, 0x40000003\n mov eax, 1\n xor edx, edx\n wrmsr\n mov al, 1\n out 0x10, al\n hlt\n .org 0x100\n mov al, 13\n out 0x12, al\n hlt", 64, 0x10000));
    enterLongMode(vm, vcpu, 0x10000);
    installIdt(vm, vcpu, new Map([[13, 0x10100]]));
    let e = vcpu.run();
    if (hyperv) {
      // KVM raises the event when it next enters the guest: a host that emulated on to the OUT
      // first reports that exit before it.
      if (e.kind === "io" && e.port === 0x10) e = vcpu.run();
      expect(e.kind).toBe("system_event");
      if (e.kind === "system_event") expect(e.type).toBe(KVM_SYSTEM_EVENT.RESET);
    } else {
      console.log(`KVM_CAP_HYPERV is 0 here: no Hyper-V MSRs, so no guest-requested system event (x86 has no other without SEV-ES or TDX); exit: ${JSON.stringify(e.toJSON())}`);
      expect(e.kind === "io" ? e.port : e.kind).toBe(0x12);
    }
  });
});
