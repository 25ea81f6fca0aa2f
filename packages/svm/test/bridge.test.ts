import { decodeExitInfo, exitFromKvm, getProfile, NESTED_CTL, NPF, toKvmState, VIRT_EXT, VMEXIT, validVmcbTemplate } from "@tsvmm/svm";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

const caps = getProfile("amd-ryzen-7-1800x");

describe("toKvmState", () => {
  it("long mode: segments, CRs, EFER without SVME, RIP, RAX", () => {
    const s = validVmcbTemplate(caps, "long").set("save.rax", 0x1234n);
    const k = toKvmState(s);
    expect(k.regs).toMatchObject({ rip: 0x10_0000n, rflags: 2n, rax: 0x1234n, rsp: 0x8000n });
    expect(k.sregs.cs).toMatchObject({ selector: 8, type: 11, s: 1, present: 1, l: 1, db: 0, g: 1, unusable: 0, limit: 0xffff_ffff, dpl: 0 });
    expect(k.sregs.ds).toMatchObject({ selector: 0x10, type: 3, db: 1, g: 1, unusable: 0 });
    expect(k.sregs.efer).toBe(0xd01n);
    expect(k.sregs.cr0).toBe(0x8001_0031n);
    expect(k.sregs.cr3).toBe(0x2000n);
    expect(k.debugregs).toMatchObject({ dr6: 0xffff_0ff0n, dr7: 0x400n });
    expect(k.msrs.find((m) => m.index === 0x277)).toBeUndefined();
  });
  it("real mode: CS base f0000, PE off, every data segment usable", () => {
    const k = toKvmState(validVmcbTemplate(caps, "real").set("save.ds.attrib", 0));
    expect(k.sregs.cs).toMatchObject({ selector: 0xf000, base: 0xf0000n, limit: 0xffff, db: 0 });
    expect(k.sregs.ds.unusable).toBe(0);
    expect(k.sregs.cr0 & 1n).toBe(0n);
    expect(k.regs.rip).toBe(0xfff0n);
    expect(k.sregs.efer).toBe(0n);
  });
  it("protected mode: a not-present segment is unusable; SS.DPL follows the VMCB's CPL", () => {
    const s = validVmcbTemplate(caps, "protected").set("save.fs.attrib", 0x093 & ~0x80).set("save.cpl", 3);
    const k = toKvmState(s);
    expect(k.sregs.fs.unusable).toBe(1);
    expect(k.sregs.ss.dpl).toBe(3);
  });
  it("bases are canonicalized and LMA follows LME & PG, as VMRUN loads them", () => {
    const s = validVmcbTemplate(caps, "long").set("save.gs.base", 0x0000_8000_0000_0000n).set("save.efer", 0x1100n);
    const k = toKvmState(s);
    expect(k.sregs.gs.base).toBe(0xffff_8000_0000_0000n);
    expect(k.sregs.efer).toBe(0x500n);
  });
  it("gPAT only with nested paging, DBGCTL only with LBR virtualization", () => {
    const s = validVmcbTemplate(caps, "long").set("control.nestedCtl", NESTED_CTL.NP_ENABLE).set("control.virtExt", VIRT_EXT.LBR_VIRTUALIZATION).set("save.dbgctl", 1n);
    const k = toKvmState(s);
    expect(k.msrs.find((m) => m.index === 0x277)?.data).toBe(0x0007_0406_0007_0406n);
    expect(k.msrs.find((m) => m.index === 0x1d9)?.data).toBe(1n);
  });
});

describe("exitFromKvm", () => {
  it("port I/O → VMEXIT_IOIO whose EXITINFO1 decodes back", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffff }),
        fc.constantFrom(1 as const, 2 as const, 4 as const),
        fc.constantFrom("in" as const, "out" as const),
        fc.boolean(),
        fc.boolean(),
        fc.constantFrom(16 as const, 32 as const, 64 as const),
        (port, size, direction, string, rep, addressSize) => {
          const e = exitFromKvm({ kind: "io", port, size, direction, string, rep, addressSize, nextRip: 0x1002n });
          expect(e.exitCode).toBe(0x7bn);
          expect(decodeExitInfo(e.exitCode, e.exitInfo1, e.exitInfo2)).toEqual({ kind: "ioio", io: { port, size, direction, string, rep, addressSize, segment: 0 }, nextRip: 0x1002n });
        },
      ),
      { numRuns: 200 },
    );
  });
  it("MMIO → VMEXIT_NPF: P for a read-only page, RW for writes, GPA in EXITINFO2", () => {
    expect(exitFromKvm({ kind: "mmio", gpa: 0xa0010, isWrite: true, len: 1, present: true })).toEqual({ exitCode: VMEXIT.NPF, exitInfo1: NPF.P | NPF.RW | NPF.GUEST_FINAL, exitInfo2: 0xa0010n });
    expect(exitFromKvm({ kind: "mmio", gpa: 0xfee0_0000n, isWrite: false, len: 4 }).exitInfo1).toBe(NPF.GUEST_FINAL);
  });
  it("HLT, shutdown, MSRs, interrupt window", () => {
    expect(exitFromKvm({ kind: "hlt" }).exitCode).toBe(0x78n);
    expect(exitFromKvm({ kind: "shutdown" }).exitCode).toBe(0x7fn);
    expect(exitFromKvm({ kind: "rdmsr", index: 0x10 })).toEqual({ exitCode: 0x7cn, exitInfo1: 0n, exitInfo2: 0n, msrIndex: 0x10 });
    expect(exitFromKvm({ kind: "wrmsr", index: 0x10 }).exitInfo1).toBe(1n);
    expect(exitFromKvm({ kind: "irq-window-open" }).exitCode).toBe(0x64n);
  });
  it("unknown exits and unencodable I/O are typed errors", () => {
    expect(() => exitFromKvm({ kind: "nope" } as never)).toThrow(expect.objectContaining({ code: "SVM_BRIDGE_UNKNOWN_EXIT" }));
    expect(() => exitFromKvm({ kind: "io", port: 0x10000, size: 1, direction: "in" })).toThrow(expect.objectContaining({ code: "SVM_BRIDGE_UNKNOWN_EXIT" }));
  });
});
