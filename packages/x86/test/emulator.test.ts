// One test per emulated instruction, expectations computed by hand from the SDM (vol. 2 pages of each).
import { AC, AF, CF, OF, type PageFault, PF, SF, type SimpleCpu, ZF } from "@tsvmm/x86";
import { describe, expect, it } from "vitest";
import { CODE, DATA, machine } from "./helpers/machine.js";

const RAX = 0, RCX = 1, RDX = 2, RBX = 3, RSI = 6, RDI = 7;

describe("MMIO subset", () => {
  it("mov [rdi], eax (89 07) writes 4 bytes and advances RIP by 2", () => {
    const { cpu, emu } = machine("89 07");
    cpu.gpr[RDI] = DATA;
    cpu.gpr[RAX] = 0x1122334455667788n;
    expect(emu.step()).toMatchObject({ kind: "executed", mnemonic: "mov", length: 2, rip: CODE + 2n });
    expect(cpu.memory.readU32(DATA)).toBe(0x55667788);
    expect(cpu.memory.readU32(DATA + 4n)).toBe(0);
  });

  it("mov eax, [rip+disp] zero-extends into RAX; mov al, [mem] keeps bits 63:8", () => {
    const { cpu, emu } = machine("8b 05 fa 6f 00 00 8a 05 f4 6f 00 00");
    cpu.memory.writeU32(CODE + 6n + 0x6ffan, 0xdeadbeef);
    cpu.gpr[RAX] = 0xffffffff00000000n;
    emu.step();
    expect(cpu.gpr[RAX]).toBe(0xdeadbeefn);
    cpu.memory.writeU8(CODE + 12n + 0x6ff4n, 0x5a);
    cpu.gpr[RAX] = 0x1111111111111111n;
    emu.step();
    expect(cpu.gpr[RAX]).toBe(0x111111111111115an);
  });

  it("movzx / movsx / movsxd", () => {
    const { cpu, emu } = machine("0f b6 07 48 0f be 07 48 63 07");
    cpu.gpr[RDI] = DATA;
    cpu.memory.writeU32(DATA, 0x80000080);
    emu.step();
    expect(cpu.gpr[RAX]).toBe(0x80n);
    emu.step();
    expect(cpu.gpr[RAX]).toBe(0xffffffffffffff80n);
    emu.step();
    expect(cpu.gpr[RAX]).toBe(0xffffffff80000080n);
  });

  it("movabs al, moffs64 and mov moffs64, rax", () => {
    const { cpu, emu } = machine("a0 00 80 00 00 00 00 00 00 48 a3 08 80 00 00 00 00 00 00");
    cpu.memory.writeU8(DATA, 0x42);
    cpu.gpr[RAX] = 0xaa00n;
    emu.step();
    expect(cpu.gpr[RAX]).toBe(0xaa42n);
    emu.step();
    expect(cpu.memory.readU64(DATA + 8n)).toBe(0xaa42n);
  });

  it("cmp dword [rdi], 0x7fffffff: 0x80000000 - 0x7fffffff sets OF, clears CF and SF", () => {
    const { cpu, emu } = machine("81 3f ff ff ff 7f");
    cpu.gpr[RDI] = DATA;
    cpu.memory.writeU32(DATA, 0x80000000);
    emu.step();
    // result 1: OF (neg - pos = pos), CF 0, ZF 0, SF 0, PF 0 (one bit set), AF: 0x0 - 0xf borrows -> 1.
    expect(cpu.rflags & (CF | OF | SF | ZF | PF | AF)).toBe(OF | AF);
    expect(cpu.memory.readU32(DATA)).toBe(0x80000000);
  });

  it("add byte [rdi], 0xff with 0x01: result 0, CF ZF AF PF set", () => {
    const { cpu, emu } = machine("80 07 ff");
    cpu.gpr[RDI] = DATA;
    cpu.memory.writeU8(DATA, 1);
    emu.step();
    expect(cpu.memory.readU8(DATA)).toBe(0);
    expect(cpu.rflags & (CF | OF | SF | ZF | PF | AF)).toBe(CF | ZF | AF | PF);
  });

  it("or / and / xor / test on memory clear CF and OF and set SZP from the result", () => {
    const { cpu, emu } = machine("09 07 21 07 31 07 85 07");
    cpu.gpr[RDI] = DATA;
    cpu.rflags |= CF | OF;
    cpu.memory.writeU32(DATA, 0x0f);
    cpu.gpr[RAX] = 0x80000000n;
    emu.step(); // or -> 0x8000000f
    expect(cpu.memory.readU32(DATA)).toBe(0x8000000f);
    expect(cpu.rflags & (CF | OF | SF | ZF | PF)).toBe(SF | PF);
    emu.step(); // and -> 0x80000000
    expect(cpu.memory.readU32(DATA)).toBe(0x80000000);
    emu.step(); // xor -> 0
    expect(cpu.rflags & (SF | ZF | PF)).toBe(ZF | PF);
    emu.step(); // test [0], eax -> 0, memory unchanged
    expect(cpu.memory.readU32(DATA)).toBe(0);
    expect(cpu.rflags & ZF).toBe(ZF);
  });

  it("sub qword [rdi], rax borrows: 0 - 1 = all ones, CF SF PF AF", () => {
    const { cpu, emu } = machine("48 29 07");
    cpu.gpr[RDI] = DATA;
    cpu.gpr[RAX] = 1n;
    emu.step();
    expect(cpu.memory.readU64(DATA)).toBe(0xffffffffffffffffn);
    expect(cpu.rflags & (CF | OF | SF | ZF | PF | AF)).toBe(CF | SF | PF | AF);
  });

  it("rep movsb copies RCX bytes forward, rep stosq fills, registers end past the data", () => {
    const { cpu, emu } = machine("f3 a4 f3 48 ab");
    cpu.memory.write(DATA, Buffer.from("hello, world"));
    cpu.gpr[RSI] = DATA;
    cpu.gpr[RDI] = DATA + 0x100n;
    cpu.gpr[RCX] = 12n;
    expect(emu.step()).toMatchObject({ kind: "executed", rip: CODE + 2n });
    expect(cpu.memory.read(DATA + 0x100n, 12).toString()).toBe("hello, world");
    expect([cpu.gpr[RCX], cpu.gpr[RSI], cpu.gpr[RDI]]).toEqual([0n, DATA + 12n, DATA + 0x10cn]);
    cpu.gpr[RAX] = 0x0102030405060708n;
    cpu.gpr[RCX] = 2n;
    cpu.gpr[RDI] = DATA + 0x200n;
    emu.step();
    expect(cpu.memory.readU64(DATA + 0x208n)).toBe(0x0102030405060708n);
    expect(cpu.gpr[RDI]).toBe(DATA + 0x210n);
  });

  it("a page fault mid-access is injected with CR2 and error code, RIP stays, nothing written", () => {
    const pf: PageFault = { kind: "page-fault", errorCode: 0x3, cr2: 0x9000n };
    const { cpu, emu } = machine("89 07", { translate: (lin, access) => (lin >= 0x9000n && access === "write" ? { ...pf, cr2: lin } : lin) });
    cpu.gpr[RDI] = 0x8ffen;
    const out = emu.step();
    expect(out).toMatchObject({ kind: "exception", vector: 14, errorCode: 3, cr2: 0x9000n });
    expect(cpu.injected).toEqual([{ kind: "exception", vector: 14, errorCode: 3, cr2: 0x9000n, instructionLength: 0 }]);
    expect(cpu.cr2).toBe(0x9000n);
    expect(cpu.rip).toBe(CODE);
    expect(cpu.memory.readU16(0x8ffen)).toBe(0);
  });

  it("a non-canonical address is #GP(0); an undefined opcode is #UD", () => {
    const a = machine("8b 07");
    a.cpu.gpr[RDI] = 0x0000800000000000n;
    expect(a.emu.step()).toMatchObject({ kind: "exception", vector: 13, errorCode: 0 });
    const b = machine("0f 0b");
    expect(b.emu.step()).toMatchObject({ kind: "exception", vector: 6 });
    const d = machine("0f a2");
    expect(d.emu.step()).toMatchObject({ kind: "unsupported", mnemonic: "cpuid" });
    const c = machine("06");
    expect(c.emu.step()).toMatchObject({ kind: "exception", vector: 6 });
  });
});

describe("the instructions Linux hit on this host", () => {
  it("lock cmpxchg16b (gs): equal -> stores RCX:RBX, ZF=1; different -> loads RDX:RAX, ZF=0; misaligned -> #GP(0)", () => {
    const { cpu, emu } = machine("65 f0 48 0f c7 0f 65 f0 48 0f c7 0f 65 f0 48 0f c7 0f");
    cpu.segments.gs = { ...cpu.segments.gs, base: 0x4000n };
    cpu.gpr[RDI] = DATA - 0x4000n;
    cpu.memory.writeU64(DATA, 1n);
    cpu.memory.writeU64(DATA + 8n, 2n);
    [cpu.gpr[RAX], cpu.gpr[RDX], cpu.gpr[RBX], cpu.gpr[RCX]] = [1n, 2n, 3n, 4n];
    emu.step();
    expect([cpu.memory.readU64(DATA), cpu.memory.readU64(DATA + 8n)]).toEqual([3n, 4n]);
    expect(cpu.rflags & ZF).toBe(ZF);
    emu.step();
    expect([cpu.gpr[RAX], cpu.gpr[RDX]]).toEqual([3n, 4n]);
    expect(cpu.rflags & ZF).toBe(0n);
    cpu.gpr[RDI] += 8n;
    expect(emu.step()).toMatchObject({ kind: "exception", vector: 13, errorCode: 0 });
  });

  it("int3 injects #BP as a software exception with RIP after it; int 0x80 a software interrupt", () => {
    const { cpu, emu } = machine("cc cd 80");
    emu.step();
    expect(cpu.injected[0]).toEqual({ kind: "software-exception", vector: 3, errorCode: undefined, cr2: undefined, instructionLength: 1 });
    expect(cpu.rip).toBe(CODE + 1n);
    emu.step();
    expect(cpu.injected[1]).toMatchObject({ kind: "software-interrupt", vector: 0x80, instructionLength: 2 });
    expect(cpu.rip).toBe(CODE + 3n);
  });

  it("stac/clac set and clear EFLAGS.AC at CPL0; #UD at CPL3", () => {
    const { cpu, emu } = machine("0f 01 cb 0f 01 ca 0f 01 cb");
    emu.step();
    expect(cpu.rflags & AC).toBe(AC);
    emu.step();
    expect(cpu.rflags & AC).toBe(0n);
    cpu.segments.ss = { ...cpu.segments.ss, dpl: 3 };
    expect(emu.step()).toMatchObject({ kind: "exception", vector: 6 });
  });

  it("popcnt: count, ZF only for a zero source, other flags cleared", () => {
    const { cpu, emu } = machine("f3 48 0f b8 c1 f3 48 0f b8 c1");
    cpu.gpr[RCX] = 0xf0f0000000000001n;
    cpu.rflags |= CF | OF | SF;
    emu.step();
    expect(cpu.gpr[RAX]).toBe(9n);
    expect(cpu.rflags & (CF | OF | SF | ZF | PF | AF)).toBe(0n);
    cpu.gpr[RCX] = 0n;
    emu.step();
    expect(cpu.rflags & ZF).toBe(ZF);
  });

  it("fwait: #NM when CR0.TS and CR0.MP, else a no-op", () => {
    const { cpu, emu } = machine("9b 9b");
    expect(emu.step()).toMatchObject({ kind: "executed" });
    cpu.cr0 |= 8n;
    expect(emu.step()).toMatchObject({ kind: "exception", vector: 7 });
  });

  it("ldmxcsr/stmxcsr: round trip; reserved bits #GP(0); CR0.TS #NM", () => {
    const { cpu, emu } = machine("0f ae 17 0f ae 1e 0f ae 17 0f ae 17");
    cpu.gpr[RDI] = DATA;
    cpu.gpr[RSI] = DATA + 0x10n;
    cpu.memory.writeU32(DATA, 0x9fc0);
    emu.step();
    emu.step();
    expect(cpu.memory.readU32(DATA + 0x10n)).toBe(0x9fc0);
    cpu.memory.writeU32(DATA, 0x10000);
    expect(emu.step()).toMatchObject({ kind: "exception", vector: 13 });
    cpu.cr0 |= 8n;
    expect(emu.step()).toMatchObject({ kind: "exception", vector: 7 });
  });

  it("xgetbv/xsetbv: read XCR0 into EDX:EAX; AVX without SSE is #GP(0); CPL3 xsetbv #GP(0)", () => {
    const { cpu, emu } = machine("0f 01 d0 0f 01 d1 0f 01 d1 0f 01 d1");
    emu.step();
    expect([cpu.gpr[RAX], cpu.gpr[RDX]]).toEqual([7n, 0n]);
    cpu.gpr[RAX] = 3n;
    cpu.gpr[RCX] = 0n;
    emu.step();
    expect(cpu.xcr0).toBe(3n);
    cpu.gpr[RAX] = 5n;
    expect(emu.step()).toMatchObject({ kind: "exception", vector: 13 });
    cpu.gpr[RAX] = 7n;
    cpu.segments.ss = { ...cpu.segments.ss, dpl: 3 };
    expect(emu.step()).toMatchObject({ kind: "exception", vector: 13 });
  });

  it("rdrand/rdseed from the host source with CF=1; rdpid and rdtscp read TSC_AUX", () => {
    const { cpu, emu } = machine("48 0f c7 f0 66 0f c7 f9 f3 0f c7 fa 0f 01 f9", { random: (n) => new Uint8Array(n).fill(0xab) });
    cpu.msrs.set(0xc0000103, 5n);
    emu.step();
    expect(cpu.gpr[RAX]).toBe(0xababababababababn);
    expect(cpu.rflags & (CF | ZF | OF)).toBe(CF);
    cpu.gpr[RCX] = 0xffff0000n;
    emu.step();
    expect(cpu.gpr[RCX]).toBe(0xffffababn);
    emu.step();
    expect(cpu.gpr[RDX]).toBe(5n);
    emu.step();
    expect(cpu.gpr[RCX]).toBe(5n);
    expect((cpu.gpr[RDX]! << 32n) | cpu.gpr[RAX]!).toBe(cpu.tsc);
  });
});

describe("XSAVE family", () => {
  const prepare = (code: string) => {
    const m = machine(code);
    // XMM1 = 0x11.., YMM1 high = 0x22.., MXCSR 0x1f80; components SSE and AVX in use.
    m.cpu.xsave.fill(0x11, 160 + 16, 160 + 32);
    m.cpu.xsave.fill(0x22, 576 + 16, 576 + 32);
    m.cpu.xsave[512] = 0x7;
    m.cpu.gpr[RDI] = DATA;
    m.cpu.gpr[RAX] = 0xffffffffn;
    m.cpu.gpr[RDX] = 0xffffffffn;
    return m;
  };

  it("xsave64 writes the standard format: XMM at 160, YMM_H at its CPUID offset, XSTATE_BV; xrstor64 restores", () => {
    const { cpu, emu } = prepare("48 0f ae 27 48 0f ae 2f");
    emu.step();
    expect(cpu.memory.readU8(DATA + 176n)).toBe(0x11);
    expect(cpu.memory.readU8(DATA + 592n)).toBe(0x22);
    expect(cpu.memory.readU64(DATA + 512n)).toBe(7n);
    expect(cpu.memory.readU32(DATA + 24n)).toBe(0x1f80);
    cpu.xsave.fill(0, 160, 1024);
    cpu.memory.writeU8(DATA + 177n, 0x33);
    emu.step();
    expect(cpu.xsave[177]).toBe(0x33);
    expect(cpu.xsave[592]).toBe(0x22);
  });

  it("xsavec writes XCOMP_BV = RFBM | bit 63 and packs components; compacted xrstor64 reads them back", () => {
    const { cpu, emu } = prepare("48 0f c7 27 48 0f ae 2f");
    emu.step();
    expect(cpu.memory.readU64(DATA + 520n)).toBe((1n << 63n) | 7n);
    // Component 2 is the first extended one: at 576 in the compacted format too.
    expect(cpu.memory.readU8(DATA + 592n)).toBe(0x22);
    cpu.xsave.fill(0, 160, 1024);
    emu.step();
    expect(cpu.xsave[592]).toBe(0x22);
    expect(cpu.xsave[176]).toBe(0x11);
  });

  it("xrstor: XSTATE_BV bit clear initializes the component; bad header #GP(0); misaligned #GP(0); TS #NM", () => {
    const { cpu, emu } = prepare("48 0f ae 2f 48 0f ae 2f 48 0f ae 2f 48 0f ae 2f");
    cpu.memory.writeU64(DATA + 512n, 1n); // only x87 present
    cpu.memory.writeU32(DATA + 24n, 0x1f80);
    emu.step();
    expect(cpu.xsave[176]).toBe(0);
    expect(cpu.xsave[592]).toBe(0);
    cpu.memory.writeU64(DATA + 528n, 1n); // header byte 16 set in standard format
    expect(emu.step()).toMatchObject({ kind: "exception", vector: 13 });
    cpu.memory.writeU64(DATA + 528n, 0n);
    cpu.gpr[RDI] = DATA + 8n;
    expect(emu.step()).toMatchObject({ kind: "exception", vector: 13 });
    cpu.gpr[RDI] = DATA;
    cpu.cr0 |= 8n;
    expect(emu.step()).toMatchObject({ kind: "exception", vector: 7 });
  });

  it("xsaves/xrstors are CPL0 only", () => {
    const { cpu, emu } = prepare("48 0f c7 2f");
    cpu.segments.ss = { ...cpu.segments.ss, dpl: 3 };
    expect(emu.step()).toMatchObject({ kind: "exception", vector: 13 });
  });
});

describe("SSE/AVX subset", () => {
  it("movd xmm0, eax zero-extends; vmovdqu ymm1, [rdi] loads 32 bytes; vmovdqu [rsi], ymm1 stores them", () => {
    const { cpu, emu } = machine("66 0f 6e c0 c5 fe 6f 0f c5 fe 7f 0e");
    cpu.gpr[RAX] = 0xaabbccddn;
    emu.step();
    expect(Array.from(cpu.xsave.subarray(160, 168))).toEqual([0xdd, 0xcc, 0xbb, 0xaa, 0, 0, 0, 0]);
    cpu.gpr[RDI] = DATA;
    cpu.gpr[RSI] = DATA + 0x40n;
    for (let k = 0; k < 32; k++) cpu.memory.writeU8(DATA + BigInt(k), k);
    emu.step();
    emu.step();
    expect(Array.from(cpu.memory.read(DATA + 0x40n, 32))).toEqual(Array.from({ length: 32 }, (_, k) => k));
  });

  it("pshufb, paddd, pxor, pshufd, psrld/pslld, palignr", () => {
    const { cpu, emu } = machine("66 0f 38 00 c1 66 0f fe c1 66 0f ef c0 66 0f 70 c1 1b 66 0f 72 d1 04 66 0f 72 f1 04 66 0f 3a 0f c1 04");
    const setX = (i: number, bytes: number[]) => cpu.xsave.set(bytes, 160 + 16 * i);
    const getX = (i: number) => Array.from(cpu.xsave.subarray(160 + 16 * i, 176 + 16 * i));
    cpu.xsave[512] = 2;
    setX(0, Array.from({ length: 16 }, (_, k) => k * 16));
    setX(1, [15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0x80]);
    emu.step(); // pshufb: reverse, last lane zeroed
    expect(getX(0)).toEqual([240, 224, 208, 192, 176, 160, 144, 128, 112, 96, 80, 64, 48, 32, 16, 0]);
    setX(0, [1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]);
    setX(1, [1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    emu.step(); // paddd: lane 1 wraps to 0
    expect(getX(0).slice(0, 8)).toEqual([2, 0, 0, 0, 0, 0, 0, 0]);
    emu.step(); // pxor xmm0, xmm0
    expect(getX(0)).toEqual(new Array(16).fill(0));
    setX(1, [0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]);
    emu.step(); // pshufd 0x1b: reverse dwords
    expect(getX(0)).toEqual([3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    setX(1, [0xf0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0]);
    emu.step(); // psrld xmm1, 4
    expect(getX(1).slice(0, 8)).toEqual([0x0f, 0, 0, 0, 0, 0, 0, 0x08]);
    emu.step(); // pslld xmm1, 4
    expect(getX(1).slice(0, 8)).toEqual([0xf0, 0, 0, 0, 0, 0, 0, 0x80]);
    setX(0, Array.from({ length: 16 }, (_, k) => 0x10 + k));
    setX(1, Array.from({ length: 16 }, (_, k) => k));
    emu.step(); // palignr xmm0, xmm1, 4: bytes 4..19 of xmm0:xmm1
    expect(getX(0)).toEqual([4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0x10, 0x11, 0x12, 0x13]);
  });
});

describe("modes", () => {
  it("real mode: mov [bx+si], al with DS base 0x100 writes linear 0x100 + bx + si", () => {
    const cpu0 = machine("88 00", { mode: "real" });
    const cpu: SimpleCpu = cpu0.cpu;
    cpu.segments.ds = { ...cpu.segments.ds, base: 0x100n };
    cpu.gpr[RBX] = 0x10n;
    cpu.gpr[RSI] = 0x1n;
    cpu.gpr[RAX] = 0x77n;
    expect(cpu0.emu.mode()).toBe("real");
    cpu0.emu.step();
    expect(cpu.memory.readU8(0x111)).toBe(0x77);
    expect(cpu.rip).toBe(CODE + 2n);
  });

  it("32-bit protected mode: a write beyond the segment limit is #GP(0), via SS it is #SS(0)", () => {
    const { cpu, emu } = machine("89 07 89 45 00", { mode: "protected32" });
    cpu.segments.ds = { ...cpu.segments.ds, limit: 0x7fff };
    cpu.segments.ss = { ...cpu.segments.ss, limit: 0x7fff };
    cpu.gpr[RDI] = 0x7ffen;
    expect(emu.step()).toMatchObject({ kind: "exception", vector: 13, errorCode: 0 });
    cpu.rip += 2n;
    cpu.gpr[5] = 0x7ffdn;
    expect(emu.step()).toMatchObject({ kind: "exception", vector: 12, errorCode: 0 });
  });

  it("counts executed instructions by mnemonic", () => {
    const { emu } = machine("90 90 0f 01 cb");
    emu.step();
    emu.step();
    emu.step();
    expect(emu.stats()).toEqual({ nop: 2, stac: 1 });
  });
});
