import { decodeIoQualification, EXIT_REASON, exitFromKvm, getProfile, IO_QUAL, PROFILES, toKvmState, validVmcsTemplate } from "@tsvmm/vmcs";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

describe("toKvmState", () => {
  it("long mode: segments, CRs, EFER and RIP carry over", () => {
    const s = validVmcsTemplate(getProfile("intel-core-i7-5600u"), "long");
    const k = toKvmState(s);
    expect(k.regs.rip).toBe(0x10_0000n);
    expect(k.regs.rflags).toBe(2n);
    expect(k.sregs.cs).toMatchObject({ selector: 8, type: 11, s: 1, present: 1, l: 1, db: 0, g: 1, unusable: 0, limit: 0xffff_ffff });
    expect(k.sregs.ldt.unusable).toBe(1);
    expect(k.sregs.efer).toBe(0x500n);
    expect(k.sregs.cr0 & 0x8000_0001n).toBe(0x8000_0001n);
    expect(k.msrs.find((m) => m.index === 0x277)?.data).toBe(0x0007_0406_0007_0406n);
  });
  it("real mode (unrestricted guest): CS base f0000, PE off", () => {
    const k = toKvmState(validVmcsTemplate(getProfile("intel-core-i7-5600u"), "real"));
    expect(k.sregs.cs).toMatchObject({ selector: 0xf000, base: 0xf0000n, limit: 0xffff, db: 0 });
    expect(k.sregs.cr0 & 1n).toBe(0n);
    expect(k.regs.rip).toBe(0xfff0n);
  });
});

describe("exitFromKvm", () => {
  it("port I/O → exit 30 with a qualification that decodes back", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffff }),
        fc.constantFrom(1 as const, 2 as const, 4 as const),
        fc.constantFrom("in" as const, "out" as const),
        fc.boolean(),
        fc.boolean(),
        (port, size, direction, string, rep) => {
          const e = exitFromKvm({ kind: "io", port, size, direction, string, rep });
          expect(e.basicExitReason).toBe(30);
          expect(decodeIoQualification(e.exitQualification)).toEqual({ port, size, direction, string, rep, immediate: false });
        },
      ),
      { numRuns: 200 },
    );
  });
  it("OUT to 0x3f8, one byte: qualification 0x03f80000 (SDM Table 27-5 layout)", () => {
    expect(exitFromKvm({ kind: "io", port: 0x3f8, size: 1, direction: "out" }).exitQualification).toBe(0x03f8_0000n);
    expect(exitFromKvm({ kind: "io", port: 0x60, size: 4, direction: "in" }).exitQualification).toBe(0x0060_0000n | 3n | BigInt(IO_QUAL.DIRECTION_IN));
  });
  it("MMIO → EPT violation with R/W bit and GPA", () => {
    expect(exitFromKvm({ kind: "mmio", gpa: 0xfee0_0000, isWrite: true, len: 4 })).toEqual({ basicExitReason: 48, exitQualification: 2n, guestPhysicalAddress: 0xfee0_0000n });
    expect(exitFromKvm({ kind: "mmio", gpa: 0x1000n, isWrite: false, len: 1 }).exitQualification).toBe(1n);
  });
  it("HLT, shutdown, MSRs, interrupt window", () => {
    expect(exitFromKvm({ kind: "hlt" }).basicExitReason).toBe(EXIT_REASON.HLT);
    expect(exitFromKvm({ kind: "shutdown" }).basicExitReason).toBe(2);
    expect(exitFromKvm({ kind: "rdmsr", index: 0x10 })).toMatchObject({ basicExitReason: 31, msrIndex: 0x10 });
    expect(exitFromKvm({ kind: "wrmsr", index: 0x10 }).basicExitReason).toBe(32);
    expect(exitFromKvm({ kind: "irq-window-open" }).basicExitReason).toBe(7);
  });
  it("unknown exits and unencodable I/O are typed errors", () => {
    expect(() => exitFromKvm({ kind: "nope" } as never)).toThrow(expect.objectContaining({ code: "VMCS_BRIDGE_UNKNOWN_EXIT" }));
    expect(() => exitFromKvm({ kind: "io", port: 0x10000, size: 1, direction: "in" })).toThrow(expect.objectContaining({ code: "VMCS_BRIDGE_UNKNOWN_EXIT" }));
  });
});

describe("toKvmState and CR4.VMXE", () => {
  it("drops CR4.VMXE, which VMX forces into the guest-state area but no KVM vCPU may hold", () => {
    for (const mode of ["real", "protected", "long"] as const) {
      const s = validVmcsTemplate(PROFILES["intel-core-i7-5600u"]!, mode);
      expect(s.get("GUEST_CR4") & (1n << 13n)).toBe(1n << 13n);
      const k = toKvmState(s);
      expect(k.sregs.cr4).toBe(s.get("GUEST_CR4") & ~(1n << 13n));
    }
  });
});
