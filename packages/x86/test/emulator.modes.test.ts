// Modes, segmentation, fetch, privilege and XSAVE-family checks of the emulator, each expectation
// worked out by hand from the SDM (vol. 1 ch. 13 for XSAVE, vol. 2 instruction pages, vol. 3
// ch. 3/5 for segment checks). Faults are asserted with the vector and error code the CPU raises.
import { GuestMemoryMap } from "@tsvmm/abi";
import { CF, DF, Emulator, SimpleCpu, type XsaveLayout, ZF } from "@tsvmm/x86";
import { describe, expect, it } from "vitest";
import { CODE, DATA, machine } from "./helpers/machine.js";

const RAX = 0, RCX = 1, RDX = 2, RBX = 3, RSI = 6, RDI = 7;
const VM = 1n << 17n;
const TSC_AUX = 0xc0000103;
const IA32_XSS = 0xda0;
const CR0_EM = 4n, CR0_TS = 8n;
const CR4_TSD = 4n, CR4_LA57 = 1n << 12n, CR4_OSXSAVE = 1n << 18n;

describe("modes and fetch", () => {
  it("virtual-8086 mode: CPL 3; INT n is #GP(0) below IOPL 3 and a software interrupt at IOPL 3", () => {
    const { cpu, emu } = machine("cd 21 cd 21", { mode: "real" });
    cpu.cr0 |= 1n;
    cpu.rflags |= VM;
    expect([emu.mode(), emu.cpl()]).toEqual(["v86", 3]);
    expect(emu.step()).toMatchObject({ kind: "exception", vector: 13, errorCode: 0 });
    expect(cpu.rip).toBe(CODE);
    cpu.rflags |= 3n << 12n;
    expect(emu.step()).toMatchObject({ kind: "executed", rip: CODE + 2n });
    expect(cpu.injected.at(-1)).toMatchObject({ kind: "software-interrupt", vector: 0x21, instructionLength: 2 });
  });

  it("16-bit protected mode (CS.D = 0): 16-bit operands and addressing, IP wraps at 64 KiB", () => {
    const memory = GuestMemoryMap.allocate([{ base: 0, size: 0x10000 }]);
    memory.write(0xfffe, Buffer.from([0x89, 0x07])); // mov [bx], ax
    const cpu = new SimpleCpu({ memory, mode: "protected32" });
    cpu.segments.cs = { ...cpu.segments.cs, db: false };
    cpu.rip = 0xfffen;
    cpu.gpr[RBX] = 0xdead8000n; // only BX counts
    cpu.gpr[RAX] = 0x11223344n;
    const emu = new Emulator(cpu);
    expect(emu.mode()).toBe("protected16");
    expect(emu.step()).toMatchObject({ kind: "executed", length: 2, rip: 0n });
    expect(memory.readU32(0x8000)).toBe(0x3344);
  });

  it("instruction bytes from KVM are used as given; missing ones are fetched; an empty buffer fetches all", () => {
    const a = machine("90 90 90 90 90 90");
    a.cpu.gpr[RDI] = DATA;
    a.cpu.gpr[RAX] = 0x55n;
    // KVM's insn_bytes say `mov [rdi], al` although memory now holds NOPs (the guest rewrote it).
    expect(a.emu.step(Uint8Array.from([0x88, 0x07]))).toMatchObject({ kind: "executed", mnemonic: "mov", length: 2 });
    expect(a.cpu.memory.readU8(DATA)).toBe(0x55);
    const b = machine("48 c7 07 78 56 34 12");
    b.cpu.gpr[RDI] = DATA;
    expect(b.emu.step(Uint8Array.from([0x48, 0xc7]))).toMatchObject({ kind: "executed", length: 7 });
    expect(b.cpu.memory.readU64(DATA)).toBe(0x12345678n);
    const c = machine("88 07");
    c.cpu.gpr[RDI] = DATA;
    expect(c.emu.step(new Uint8Array(0))).toMatchObject({ kind: "executed", length: 2 });
  });

  it("an instruction longer than 15 bytes is #GP(0); fetch across a page boundary reads both pages", () => {
    const { emu } = machine(`${"66 ".repeat(14)}89 c8`);
    expect(emu.step()).toMatchObject({ kind: "exception", vector: 13, errorCode: 0 });
    const memory = GuestMemoryMap.allocate([{ base: 0, size: 0x10000 }]);
    memory.write(0x1ffd, Buffer.from("48c7c078563412", "hex")); // mov rax, 0x12345678 over 0x1fff/0x2000
    const cpu = new SimpleCpu({ memory });
    cpu.rip = 0x1ffdn;
    expect(new Emulator(cpu).step()).toMatchObject({ kind: "executed", length: 7, rip: 0x2004n });
    expect(cpu.gpr[RAX]).toBe(0x12345678n);
  });

  it("AH/BH..: high-byte registers read and write bits 15:8", () => {
    const { cpu, emu } = machine("8a 27 88 3f");
    cpu.gpr[RDI] = DATA;
    cpu.gpr[RAX] = 0x1111111111111111n;
    cpu.memory.writeU8(DATA, 0xab);
    emu.step();
    expect(cpu.gpr[RAX]).toBe(0x111111111111ab11n);
    cpu.gpr[RBX] = 0xffffffffffff5aa5n; // BH = 0x5a
    emu.step();
    expect(cpu.memory.readU8(DATA)).toBe(0x5a);
  });

  it("unemulated forms are `unsupported` and change nothing: MOV from CR0 and DS, SSE2 movsd", () => {
    for (const code of ["0f 20 c0", "8c d8", "f2 0f 10 c1"]) {
      const { cpu, emu } = machine(code);
      cpu.gpr[RAX] = 0x77n;
      const before = Uint8Array.from(cpu.xsave);
      expect(emu.step()).toMatchObject({ kind: "unsupported" });
      expect([cpu.rip, cpu.gpr[RAX], Buffer.from(cpu.xsave).equals(before)]).toEqual([CODE, 0x77n, true]);
    }
  });

  it("UD0 and UD1 are #UD with RIP on the instruction", () => {
    for (const code of ["0f ff 00", "0f b9 00"]) {
      const { cpu, emu } = machine(code);
      expect(emu.step()).toMatchObject({ kind: "exception", vector: 6, errorCode: undefined });
      expect(cpu.rip).toBe(CODE);
    }
  });
});

describe("linear addresses", () => {
  it("5-level paging (CR4.LA57): canonical means bits 63:56 equal bit 56", () => {
    const seen: bigint[] = [];
    const { cpu, emu } = machine("8b 07 8b 07 8b 07", {
      translate: (lin) => {
        seen.push(lin);
        // Low memory identity-mapped (the code), the high addresses onto DATA.
        return lin < 0x10000n ? lin : DATA + (lin & 0xfffn);
      },
    });
    cpu.memory.writeU32(DATA, 0xcafe);
    cpu.gpr[RDI] = 0x00ff800000000000n; // 4-level: non-canonical; 5-level: canonical
    expect(emu.step()).toMatchObject({ kind: "exception", vector: 13, errorCode: 0 });
    cpu.cr4 |= CR4_LA57;
    expect(emu.step()).toMatchObject({ kind: "executed" });
    expect(cpu.gpr[RAX]).toBe(0xcafen);
    expect(seen).toContain(0x00ff800000000000n);
    cpu.gpr[RDI] = 0x0100000000000000n; // bit 56 set, 63:57 clear
    expect(emu.step()).toMatchObject({ kind: "exception", vector: 13, errorCode: 0 });
  });

  const pm = (code: string) => machine(code, { mode: "protected32" });

  it("protected mode: an unusable segment, a write to code or read-only data, a read of execute-only code are #GP(0)", () => {
    const a = pm("89 07");
    a.cpu.segments.ds = { ...a.cpu.segments.ds, unusable: true };
    expect(a.emu.step()).toMatchObject({ kind: "exception", vector: 13, errorCode: 0 });
    const b = pm("2e 89 07"); // write through CS
    expect(b.emu.step()).toMatchObject({ kind: "exception", vector: 13 });
    const c = pm("89 07");
    c.cpu.segments.ds = { ...c.cpu.segments.ds, type: 1 }; // read-only data
    expect(c.emu.step()).toMatchObject({ kind: "exception", vector: 13 });
    const d = pm("2e 8b 07 2e 8b 07");
    d.cpu.gpr[RDI] = DATA;
    d.cpu.memory.writeU32(DATA, 0x600d);
    expect(d.emu.step()).toMatchObject({ kind: "executed" }); // CS type 0xb: execute/read
    expect(d.cpu.gpr[RAX]).toBe(0x600dn);
    d.cpu.segments.cs = { ...d.cpu.segments.cs, type: 0x8 }; // execute-only
    expect(d.emu.step()).toMatchObject({ kind: "exception", vector: 13 });
    const e = pm("36 89 07"); // SS read-only: #SS(0)
    e.cpu.segments.ss = { ...e.cpu.segments.ss, type: 1 };
    expect(e.emu.step()).toMatchObject({ kind: "exception", vector: 12, errorCode: 0 });
  });

  it("expand-down data segments: offsets above the limit up to 0xffffffff (D=1) or 0xffff (D=0) are valid", () => {
    const down = { type: 7, limit: 0x0fff };
    const a = pm("89 07 89 07 89 07");
    a.cpu.segments.ds = { ...a.cpu.segments.ds, ...down };
    a.cpu.gpr[RDI] = 0x0800n;
    expect(a.emu.step()).toMatchObject({ kind: "exception", vector: 13 });
    a.cpu.gpr[RDI] = 0x0ffdn; // the dword covers 0xffd..0x1000: its first byte is within the limit
    expect(a.emu.step()).toMatchObject({ kind: "exception", vector: 13 });
    a.cpu.gpr[RDI] = DATA;
    a.cpu.gpr[RAX] = 0xfeedn;
    expect(a.emu.step()).toMatchObject({ kind: "executed" });
    expect(a.cpu.memory.readU32(DATA)).toBe(0xfeed);
    const b = pm("89 07 89 07");
    b.cpu.segments.ds = { ...b.cpu.segments.ds, ...down, db: false };
    b.cpu.gpr[RDI] = 0xfffen; // the dword would end at 0x10001, past the 16-bit upper bound
    expect(b.emu.step()).toMatchObject({ kind: "exception", vector: 13 });
    b.cpu.gpr[RDI] = 0xfffcn;
    expect(b.emu.step()).toMatchObject({ kind: "executed" });
  });
});

describe("string instructions", () => {
  it("DF = 1: movsb/stosd step backwards; without REP one element and RCX untouched", () => {
    const { cpu, emu } = machine("a4 ab");
    cpu.rflags |= DF;
    cpu.memory.write(DATA, Buffer.from("xyz"));
    [cpu.gpr[RSI], cpu.gpr[RDI], cpu.gpr[RCX]] = [DATA + 2n, DATA + 0x102n, 9n];
    emu.step();
    expect(cpu.memory.readU8(DATA + 0x102n)).toBe(0x7a);
    expect([cpu.gpr[RSI], cpu.gpr[RDI], cpu.gpr[RCX]]).toEqual([DATA + 1n, DATA + 0x101n, 9n]);
    cpu.gpr[RAX] = 0xaabbccddn;
    cpu.gpr[RDI] = DATA + 0x200n;
    emu.step();
    expect(cpu.memory.readU32(DATA + 0x200n)).toBe(0xaabbccdd);
    expect(cpu.gpr[RDI]).toBe(DATA + 0x1fcn);
  });

  it("REP beyond maxRepIterations: RIP stays, RCX counts down, the next steps finish it", () => {
    const memory = GuestMemoryMap.allocate([{ base: 0, size: 0x10000 }]);
    memory.write(CODE, Buffer.from("f3aa", "hex")); // rep stosb
    const cpu = new SimpleCpu({ memory });
    cpu.rip = CODE;
    const emu = new Emulator(cpu, { maxRepIterations: 2 });
    [cpu.gpr[RAX], cpu.gpr[RCX], cpu.gpr[RDI]] = [0x5an, 5n, DATA];
    expect(emu.step()).toMatchObject({ kind: "executed", rip: CODE });
    expect(cpu.gpr[RCX]).toBe(3n);
    emu.step();
    expect(emu.step()).toMatchObject({ kind: "executed", rip: CODE + 2n });
    expect([cpu.gpr[RCX], cpu.gpr[RDI]]).toEqual([0n, DATA + 5n]);
    expect(Array.from(memory.read(DATA, 6))).toEqual([0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0]);
  });

  it("16-bit addressing (67 in 32-bit code): SI/DI/CX advance, bits 31:16 are kept", () => {
    const { cpu, emu } = machine("67 f3 a4", { mode: "protected32" });
    cpu.memory.write(0x0100, Buffer.from("ab"));
    [cpu.gpr[RSI], cpu.gpr[RDI], cpu.gpr[RCX]] = [0x12340100n, 0x56780200n, 0x9abc0002n];
    emu.step();
    expect(cpu.memory.read(0x0200, 2).toString()).toBe("ab");
    expect([cpu.gpr[RSI], cpu.gpr[RDI], cpu.gpr[RCX]]).toEqual([0x12340102n, 0x56780202n, 0x9abc0000n]);
  });
});

describe("cmpxchg8b", () => {
  it("equal: stores ECX:EBX, ZF=1; different: loads EDX:EAX, ZF=0 (no LOCK)", () => {
    const { cpu, emu } = machine("0f c7 0f 0f c7 0f");
    cpu.gpr[RDI] = DATA;
    cpu.memory.writeU64(DATA, 0x0000000200000001n);
    [cpu.gpr[RAX], cpu.gpr[RDX], cpu.gpr[RBX], cpu.gpr[RCX]] = [0xffffffff00000001n, 2n, 3n, 4n];
    emu.step();
    expect(cpu.memory.readU64(DATA)).toBe(0x0000000400000003n);
    expect(cpu.rflags & ZF).toBe(ZF);
    emu.step();
    expect([cpu.gpr[RAX], cpu.gpr[RDX]]).toEqual([3n, 4n]);
    expect(cpu.rflags & ZF).toBe(0n);
  });

  it("a CPU with compareExchangePhys gets one atomic call with EDX:EAX and ECX:EBX", () => {
    class AtomicCpu extends SimpleCpu {
      calls: [bigint, string, string][] = [];
      compareExchangePhys(gpa: bigint, expected: Uint8Array, desired: Uint8Array): Uint8Array {
        this.calls.push([gpa, Buffer.from(expected).toString("hex"), Buffer.from(desired).toString("hex")]);
        const old = this.memory.read(gpa, expected.length);
        if (Buffer.from(old).equals(Buffer.from(expected))) this.memory.write(gpa, desired);
        return Uint8Array.from(old);
      }
    }
    const memory = GuestMemoryMap.allocate([{ base: 0, size: 0x10000 }]);
    memory.write(CODE, Buffer.from("f00fc70f", "hex"));
    memory.writeU64(DATA, 7n);
    const cpu = new AtomicCpu({ memory });
    cpu.rip = CODE;
    [cpu.gpr[RDI], cpu.gpr[RAX], cpu.gpr[RDX], cpu.gpr[RBX], cpu.gpr[RCX]] = [DATA, 7n, 0n, 0x11n, 0x22n];
    new Emulator(cpu).step();
    expect(cpu.calls).toEqual([[DATA, "0700000000000000", "1100000022000000"]]);
    expect(memory.readU64(DATA)).toBe(0x0000002200000011n);
  });
});

describe("system instructions", () => {
  it("xgetbv: #UD without CR4.OSXSAVE; ECX=1 is XCR0 & XINUSE (bit 0 always); other ECX #GP(0)", () => {
    const { cpu, emu } = machine("0f 01 d0 0f 01 d0 0f 01 d0");
    cpu.cr4 &= ~CR4_OSXSAVE;
    expect(emu.step()).toMatchObject({ kind: "exception", vector: 6 });
    cpu.cr4 |= CR4_OSXSAVE;
    cpu.gpr[RCX] = 1n;
    cpu.xsave[512] = 2; // only SSE state in use
    emu.step();
    expect([cpu.gpr[RAX], cpu.gpr[RDX]]).toEqual([3n, 0n]);
    cpu.gpr[RCX] = 2n;
    expect(emu.step()).toMatchObject({ kind: "exception", vector: 13, errorCode: 0 });
  });

  it("xsetbv: ECX != 0 and the AVX-512 rules (opmask/ZMM come as a set, need AVX) are #GP(0)", () => {
    const layout: XsaveLayout = { supportedXcr0: 0xffn, supportedXss: 0n, components: [{ index: 2, size: 256, offset: 576, align64: false }] };
    const { cpu, emu } = machine("0f 01 d1 0f 01 d1 0f 01 d1 0f 01 d1 0f 01 d1", { layout });
    [cpu.gpr[RCX], cpu.gpr[RAX]] = [1n, 7n];
    expect(emu.step()).toMatchObject({ kind: "exception", vector: 13 });
    cpu.gpr[RCX] = 0n;
    cpu.gpr[RAX] = 0x27n; // opmask without ZMM_Hi256/Hi16_ZMM
    expect(emu.step()).toMatchObject({ kind: "exception", vector: 13 });
    cpu.gpr[RAX] = 0xe3n; // AVX-512 without AVX
    expect(emu.step()).toMatchObject({ kind: "exception", vector: 13 });
    cpu.gpr[RAX] = 0x0fn; // BNDREGS without BNDCSR
    expect(emu.step()).toMatchObject({ kind: "exception", vector: 13 });
    cpu.gpr[RAX] = 0xe7n;
    expect(emu.step()).toMatchObject({ kind: "executed" });
    expect(cpu.xcr0).toBe(0xe7n);
  });

  it("fwait: a pending unmasked x87 exception (FSW.IE with FCW.IM clear) is #MF; masked it is a no-op", () => {
    const { cpu, emu } = machine("9b 9b");
    cpu.xsave[512] = 1; // x87 state in use
    cpu.xsave.set([0x7e, 0x03, 0x01, 0x00], 0); // FCW 0x37e, FSW 0x0001
    expect(emu.step()).toMatchObject({ kind: "exception", vector: 16 });
    cpu.xsave[0] = 0x7f; // IM masked
    expect(emu.step()).toMatchObject({ kind: "executed" });
  });

  it("rdpid without IA32_TSC_AUX is #UD; rdtscp at CPL3 with CR4.TSD is #GP(0), else ECX = TSC_AUX (0 when absent)", () => {
    const a = machine("f3 0f c7 f8");
    expect(a.emu.step()).toMatchObject({ kind: "exception", vector: 6 });
    const b = machine("0f 01 f9 0f 01 f9");
    b.cpu.cr4 |= CR4_TSD;
    b.cpu.segments.ss = { ...b.cpu.segments.ss, dpl: 3 };
    expect(b.emu.step()).toMatchObject({ kind: "exception", vector: 13, errorCode: 0 });
    b.cpu.segments.ss = { ...b.cpu.segments.ss, dpl: 0 };
    b.cpu.gpr[RCX] = 0x99n;
    expect(b.emu.step()).toMatchObject({ kind: "executed" });
    expect(b.cpu.gpr[RCX]).toBe(0n);
  });

  it("rdrand without an injected source draws from the host CSPRNG, CF=1", () => {
    const { cpu, emu } = machine("48 0f c7 f0 48 0f c7 f0");
    emu.step();
    const first = cpu.gpr[RAX];
    emu.step();
    expect(cpu.rflags & CF).toBe(CF);
    expect(cpu.gpr[RAX]).not.toBe(first); // 2^-64 chance of a false failure
  });

  it("SSE with CR0.EM and VEX without CR4.OSXSAVE are #UD; CR0.TS is #NM", () => {
    const a = machine("f3 0f 6f c1");
    a.cpu.cr0 |= CR0_EM;
    expect(a.emu.step()).toMatchObject({ kind: "exception", vector: 6 });
    const b = machine("c5 fe 6f c1");
    b.cpu.cr4 &= ~CR4_OSXSAVE;
    expect(b.emu.step()).toMatchObject({ kind: "exception", vector: 6 });
    const c = machine("c5 fe 6f c1");
    c.cpu.cr0 |= CR0_TS;
    expect(c.emu.step()).toMatchObject({ kind: "exception", vector: 7 });
  });

  it("movdqa needs 16-byte alignment (#GP(0)), movdqu does not; VEX.vvvv != 1111b on vmovdqu is #UD", () => {
    const { cpu, emu } = machine("66 0f 6f 07 66 0f 7f 07 f3 0f 6f 07 66 0f 6f 07 66 0f 7f 07");
    cpu.gpr[RDI] = DATA + 8n;
    expect(emu.step()).toMatchObject({ kind: "exception", vector: 13, errorCode: 0 });
    cpu.rip += 4n;
    expect(emu.step()).toMatchObject({ kind: "exception", vector: 13, errorCode: 0 });
    cpu.rip += 4n;
    expect(emu.step()).toMatchObject({ kind: "executed" });
    cpu.gpr[RDI] = DATA;
    expect(emu.step()).toMatchObject({ kind: "executed" });
    expect(emu.step()).toMatchObject({ kind: "executed" });
    const v = machine("c5 f6 6f 07"); // vvvv = 0001b
    v.cpu.gpr[RDI] = DATA;
    expect(v.emu.step()).toMatchObject({ kind: "exception", vector: 6 });
  });

  it("MMX register forms of movd and pxor are left to the caller", () => {
    for (const code of ["0f 6e c0", "0f ef c1"]) expect(machine(code).emu.step()).toMatchObject({ kind: "unsupported" });
  });
});

describe("XSAVE family edge cases", () => {
  const setup = (code: string, init: Parameters<typeof machine>[1] = {}) => {
    const m = machine(code, init);
    m.cpu.gpr[RDI] = DATA;
    m.cpu.gpr[RAX] = 0xffffffffn;
    m.cpu.gpr[RDX] = 0xffffffffn;
    return m;
  };

  it("xsave (no REX.W) and xrstor: outside 64-bit mode only XMM0-7 are saved and restored", () => {
    const { cpu, emu } = setup("0f ae 27 0f ae 2f", { mode: "protected32" });
    cpu.xsave[512] = 3;
    cpu.xsave.fill(0x44, 160, 160 + 16 * 16); // XMM0-15
    cpu.memory.write(DATA + 288n, Buffer.alloc(128, 0xee)); // where XMM8-15 would go
    expect(emu.step()).toMatchObject({ kind: "executed", mnemonic: "xsave" });
    expect(cpu.memory.readU8(DATA + 160n + 127n)).toBe(0x44);
    expect(cpu.memory.readU8(DATA + 288n)).toBe(0xee);
    cpu.xsave.fill(0, 160, 160 + 256);
    expect(emu.step()).toMatchObject({ kind: "executed", mnemonic: "xrstor" });
    expect([cpu.xsave[160 + 127], cpu.xsave[288]]).toEqual([0x44, 0]);
  });

  it("xsaveopt skips a component in its initial state; xsave writes its initial values", () => {
    const a = setup("0f ae 37");
    a.cpu.xsave[512] = 3; // AVX not in use
    a.cpu.memory.write(DATA + 576n, Buffer.alloc(256, 0xee));
    a.emu.step();
    expect(a.cpu.memory.readU8(DATA + 576n)).toBe(0xee);
    expect(a.cpu.memory.readU64(DATA + 512n)).toBe(3n);
    const b = setup("0f ae 27");
    b.cpu.xsave[512] = 3;
    b.cpu.memory.write(DATA + 576n, Buffer.alloc(256, 0xee));
    b.emu.step();
    expect(b.cpu.memory.readU8(DATA + 576n)).toBe(0);
  });

  // A supervisor component (index 8, PT-like: 128 bytes, 64-byte aligned) enabled in IA32_XSS.
  const supervisorLayout: XsaveLayout = {
    supportedXcr0: 7n,
    supportedXss: 0x100n,
    components: [
      { index: 2, size: 256, offset: 576, align64: false },
      { index: 8, size: 128, offset: undefined, align64: true },
    ],
  };

  it("xsaves: a supervisor component not in use is not written (init optimization, XSTATE_BV bit clear)", () => {
    const { cpu, emu } = setup("48 0f c7 2f", { layout: supervisorLayout });
    cpu.msrs.set(IA32_XSS, 0x100n);
    cpu.xsave[512] = 7;
    cpu.memory.write(DATA + 832n, Buffer.alloc(128, 0xee));
    expect(emu.step()).toMatchObject({ kind: "executed", mnemonic: "xsaves64" });
    expect(cpu.memory.readU64(DATA + 520n)).toBe((1n << 63n) | 0x107n);
    expect(cpu.memory.readU64(DATA + 512n)).toBe(7n);
    expect(cpu.memory.read(DATA + 832n, 128).every((x) => x === 0xee)).toBe(true);
  });

  it("xsaves: an IA32_XSS component in use goes after AVX (64-byte aligned) as its init state; xrstors reads the area back", () => {
    const { cpu, emu } = setup("48 0f c7 2f 48 0f c7 1f", { layout: supervisorLayout });
    cpu.msrs.set(IA32_XSS, 0x100n);
    cpu.xsave.set([7, 1], 512); // XSTATE_BV: x87, SSE, AVX and component 8
    cpu.xsave.fill(0x22, 576, 576 + 256);
    cpu.memory.write(DATA + 832n, Buffer.alloc(128, 0xee));
    expect(emu.step()).toMatchObject({ kind: "executed", mnemonic: "xsaves64" });
    expect(cpu.memory.readU64(DATA + 520n)).toBe((1n << 63n) | 0x107n);
    expect(cpu.memory.readU64(DATA + 512n)).toBe(0x107n);
    expect(cpu.memory.readU8(DATA + 576n)).toBe(0x22);
    expect(cpu.memory.read(DATA + 832n, 128).every((x) => x === 0)).toBe(true);
    cpu.xsave.fill(0, 576, 576 + 256);
    cpu.xsave.set([3, 0], 512);
    expect(emu.step()).toMatchObject({ kind: "executed", mnemonic: "xrstors64" });
    expect(cpu.xsave[576]).toBe(0x22);
    expect(cpu.xsave[513]).toBe(1); // XSTATE_BV bit 8 back
  });

  it("xrstor(s) refuses bad headers with #GP(0)", () => {
    /** XRSTOR64 (or `code`) of an area at DATA patched with [offset, value, bytes] writes. */
    const run = (writes: [number, bigint, 1 | 4 | 8][], code = "48 0f ae 2f") => {
      const { cpu, emu } = setup(code, { layout: supervisorLayout });
      cpu.msrs.set(IA32_XSS, 0x100n);
      cpu.memory.writeU32(DATA + 24n, 0x1f80);
      for (const [o, v, n] of writes) {
        if (n === 8) cpu.memory.writeU64(DATA + BigInt(o), v);
        else if (n === 4) cpu.memory.writeU32(DATA + BigInt(o), Number(v));
        else cpu.memory.writeU8(DATA + BigInt(o), Number(v));
      }
      return emu.step();
    };
    const gp = { kind: "exception", vector: 13, errorCode: 0 };
    const XSTATE_BV = 512, XCOMP_BV = 520, MXCSR = 24;
    const BIT63 = 1n << 63n;
    // XRSTORS of a standard-format area.
    expect(run([], "48 0f c7 1f")).toMatchObject(gp);
    // Compacted: XCOMP_BV with a bit outside XCR0 | IA32_XSS (bit 9).
    expect(run([[XCOMP_BV, BIT63 | 0x203n, 8]])).toMatchObject(gp);
    // Compacted: XSTATE_BV bit 2 not in XCOMP_BV.
    expect(run([[XCOMP_BV, BIT63 | 3n, 8], [XSTATE_BV, 7n, 8]])).toMatchObject(gp);
    // Compacted: header bytes 63:16 not zero.
    expect(run([[XCOMP_BV, BIT63 | 3n, 8], [540, 1n, 1]])).toMatchObject(gp);
    // Standard: XSTATE_BV bit 8 (a supervisor component) is not in XCR0.
    expect(run([[XSTATE_BV, 0x101n, 8]])).toMatchObject(gp);
    // MXCSR with a reserved bit set.
    expect(run([[XSTATE_BV, 2n, 8], [MXCSR, 0x10000n, 4]])).toMatchObject(gp);
    // The same area with valid fields restores.
    expect(run([[XSTATE_BV, 2n, 8]])).toMatchObject({ kind: "executed" });
  });
});

describe("SimpleCpu", () => {
  it("readCr returns CR2/CR3/CR8; writeMsr only writes an MSR that exists", () => {
    const { cpu } = machine("90");
    [cpu.cr2, cpu.cr3, cpu.cr8] = [0x2n, 0x3000n, 0x8n];
    expect([cpu.readCr(2), cpu.readCr(3), cpu.readCr(8)]).toEqual([0x2n, 0x3000n, 0x8n]);
    expect(cpu.writeMsr(TSC_AUX, 1n)).toBe(false);
    expect(cpu.readMsr(TSC_AUX)).toBeUndefined();
    cpu.msrs.set(TSC_AUX, 0n);
    expect(cpu.writeMsr(TSC_AUX, 5n)).toBe(true);
    expect(cpu.readMsr(TSC_AUX)).toBe(5n);
  });
});
