// LAR and LSL rules the host comparison (lar-lsl.native.test.ts) cannot reach from a Linux process:
// CPL0, DPL < 3, system descriptors and gates, legacy protected mode vs IA-32e, the descriptor read
// faulting. Each expectation is worked out from the SDM vol. 2A LAR/LSL pages and their type tables.
import { GuestMemoryMap } from "@tsvmm/abi";
import { Emulator, SimpleCpu, ZF } from "@tsvmm/x86";
import { describe, expect, it } from "vitest";

const CODE = 0x1000n;
const GDT = 0x3000n;
const LDT = 0x5000n;
const RAX = 0, RCX = 1, RDI = 7;
const EFER_LMA = 1n << 10n;

/** A descriptor from its parts (SDM vol. 3A figure 3-8). */
function desc(o: { base?: number; limit?: number; type: number; s: boolean; dpl: number; p?: boolean; g?: boolean; db?: boolean; l?: boolean }): bigint {
  const base = o.base ?? 0;
  const limit = o.limit ?? 0;
  const lo = (limit & 0xffff) | ((base & 0xffff) << 16);
  const hi =
    ((base >>> 16) & 0xff) | (o.type << 8) | (o.s ? 1 << 12 : 0) | (o.dpl << 13) | ((o.p ?? true) ? 1 << 15 : 0) | (limit & 0xf0000) |
    (o.l ? 1 << 21 : 0) | (o.db ? 1 << 22 : 0) | (o.g ? 1 << 23 : 0) | (base & 0xff000000);
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

const ENTRIES: Record<number, bigint> = {
  1: desc({ type: 0xb, s: true, dpl: 0, l: true, limit: 0xfffff, g: true }), // 0x08 kernel code
  2: desc({ type: 0x3, s: true, dpl: 0, limit: 0xfffff, g: true, db: true }), // 0x10 kernel data
  3: desc({ type: 0x3, s: true, dpl: 3, limit: 0x12345, base: 0xabcdef01 }), // 0x18 user data, byte granular
  4: desc({ type: 0xf, s: true, dpl: 0, limit: 0x00fff }), // 0x20 conforming code, DPL 0
  5: desc({ type: 0x9, s: false, dpl: 0, limit: 0x67 }), // 0x28 available 32/64-bit TSS
  6: 0n, //                                                  0x30 zero: type 0, DPL 0, not present
  7: desc({ type: 0x2, s: false, dpl: 0, limit: 0xfff }), // 0x38 LDT
  8: desc({ type: 0xc, s: false, dpl: 3, limit: 0x1234 }), // 0x40 call gate
  9: desc({ type: 0xe, s: false, dpl: 3 }), // 0x48 interrupt gate
  10: desc({ type: 0x1, s: false, dpl: 0, limit: 0x2b }), // 0x50 16-bit TSS
  11: desc({ type: 0x5, s: false, dpl: 0 }), // 0x58 task gate
  15: desc({ type: 0x5, s: true, dpl: 3, limit: 0x3005 }), // 0x7b Linux's CPUNODE: cpu 5, node 3
};
const GDT_LIMIT = 16 * 8 - 1;

function machine(code: string, o: { cpl?: number; ia32e?: boolean } = {}) {
  const memory = GuestMemoryMap.allocate([{ base: 0, size: 0x10000 }]);
  memory.write(Number(CODE), Buffer.from(code.replace(/ /g, ""), "hex"));
  for (const [i, d] of Object.entries(ENTRIES)) memory.writeU64(Number(GDT) + Number(i) * 8, d);
  memory.writeU64(Number(LDT) + 8, desc({ type: 0x3, s: true, dpl: 0, limit: 0x777 }));
  const ia32e = o.ia32e ?? true;
  const cpu = new SimpleCpu({ memory, mode: ia32e ? "long64" : "protected32" });
  if (!ia32e) cpu.efer &= ~EFER_LMA;
  const cpl = o.cpl ?? 0;
  cpu.segments.cs = { ...cpu.segments.cs, dpl: cpl };
  cpu.segments.ss = { ...cpu.segments.ss, dpl: cpl };
  cpu.gdtr = { base: GDT, limit: GDT_LIMIT };
  cpu.rip = CODE;
  return { cpu, memory, emu: new Emulator(cpu) };
}

const SENTINEL = 0x5a5a5a5a5a5a5a5an;
/** Run `code` with CX = selector, RAX = SENTINEL: [RAX, ZF]. */
function run(code: string, selector: number, o: { cpl?: number; ia32e?: boolean; ldt?: boolean } = {}): [bigint, boolean] {
  const { cpu, emu } = machine(code, o);
  if (o.ldt) cpu.ldtr = { base: LDT, limit: 15 };
  cpu.gpr[RAX] = SENTINEL;
  cpu.gpr[RCX] = BigInt(selector);
  cpu.rflags = 0x2n | (selector & 0x8000 ? ZF : 0n);
  expect(emu.step()).toMatchObject({ kind: "executed" });
  return [cpu.gpr[RAX]!, (cpu.rflags & ZF) !== 0n];
}
const LSL64 = "48 0f 03 c1", LSL32 = "0f 03 c1", LSL16 = "66 0f 03 c1";
const LAR64 = "48 0f 02 c1", LAR32 = "0f 02 c1", LAR16 = "66 0f 02 c1";
const kept: [bigint, boolean] = [SENTINEL, false];

describe("LSL", () => {
  it("byte- and page-granular limits; the 16-bit form keeps RAX[63:16], the 32-bit form zero-extends", () => {
    expect(run(LSL64, 0x18)).toEqual([0x12345n, true]);
    expect(run(LSL64, 0x10)).toEqual([0xffffffffn, true]);
    expect(run(LSL16, 0x10)).toEqual([(SENTINEL & ~0xffffn) | 0xffffn, true]);
    expect(run(LSL32, 0x18)).toEqual([0x12345n, true]);
  });

  it("Linux's per-CPU lookup: LSL of __CPUNODE_SEG at CPL0 gives cpu | node << 12", () => {
    expect(run(LSL64, 0x7b)).toEqual([0x3005n, true]);
  });

  it("visibility: DPL < CPL or DPL < RPL clears ZF unless the segment is conforming code", () => {
    expect(run(LSL64, 0x10, { cpl: 3 })).toEqual(kept);
    expect(run(LSL64, 0x13)).toEqual(kept); // RPL 3 > DPL 0 at CPL0
    expect(run(LSL64, 0x1b, { cpl: 3 })).toEqual([0x12345n, true]);
    expect(run(LSL64, 0x23, { cpl: 3 })).toEqual([0xfffn, true]); // conforming, DPL 0
  });

  it("system types in IA-32e mode: LDT, 64-bit TSS and type 0 yes; call gate, interrupt gate, 16-bit TSS no", () => {
    expect(run(LSL64, 0x28)).toEqual([0x67n, true]);
    expect(run(LSL64, 0x38)).toEqual([0xfffn, true]);
    expect(run(LSL64, 0x30)).toEqual([0n, true]);
    for (const s of [0x40, 0x48, 0x50, 0x58]) expect(run(LSL64, s), `selector 0x${s.toString(16)}`).toEqual(kept);
  });

  it("system types in legacy protected mode: 16-bit TSS, LDT, TSS yes; type 0 and gates no", () => {
    const pm = { ia32e: false };
    expect(run(LSL32, 0x50, pm)).toEqual([0x2bn, true]);
    expect(run(LSL32, 0x38, pm)).toEqual([0xfffn, true]);
    expect(run(LSL32, 0x28, pm)).toEqual([0x67n, true]);
    for (const s of [0x30, 0x40, 0x48, 0x58]) expect(run(LSL32, s, pm), `selector 0x${s.toString(16)}`).toEqual([SENTINEL, false]);
  });

  it("null selectors, selectors past the GDT limit, and LDT selectors without an LDT clear ZF", () => {
    for (const s of [0, 1, 2, 3, 0x80, 0x8003, 0xfff8, 0x0c]) expect(run(LSL64, s), `selector 0x${s.toString(16)}`).toEqual(kept);
    // With an LDT (limit 15: entries 0 and 1): 0x0c is its entry 1, 0x14 is past it; 0x04 is entry 0, not null.
    expect(run(LSL64, 0x0c, { ldt: true })).toEqual([0x777n, true]);
    expect(run(LSL64, 0x14, { ldt: true })).toEqual(kept);
    // LDT entry 0 is a selector like any other (only the GDT's is null): here a zero descriptor,
    // type 0 with DPL 0, which IA-32e LSL accepts at CPL0 with RPL 0.
    expect(run(LSL64, 0x04, { ldt: true })).toEqual([0n, true]);
  });
});

describe("LSL in compatibility mode", () => {
  it("reads a GDT above 4 GiB (GDTR holds a 64-bit base in IA-32e mode, whatever CS.L)", () => {
    const memory = GuestMemoryMap.allocate([{ base: 0, size: 0x10000 }]);
    memory.write(Number(CODE), Buffer.from(LSL32.replace(/ /g, ""), "hex"));
    for (const [i, d] of Object.entries(ENTRIES)) memory.writeU64(Number(GDT) + Number(i) * 8, d);
    const HIGH = 0xffff_8000_0000_0000n;
    // Only the code page is mapped low: a GDT address cut to 32 bits would fault.
    const cpu = new SimpleCpu({
      memory,
      mode: "long64",
      translate: (lin) => (lin >= HIGH ? lin - HIGH : lin < 0x2000n ? lin : { kind: "page-fault", errorCode: 0, cr2: lin }),
    });
    cpu.cr0 |= 1n << 31n;
    cpu.segments.cs = { ...cpu.segments.cs, l: false, db: true };
    cpu.gdtr = { base: HIGH + GDT, limit: GDT_LIMIT };
    cpu.rip = CODE;
    cpu.gpr[RCX] = 0x18n;
    const emu = new Emulator(cpu);
    expect(emu.mode()).toBe("protected32");
    expect(emu.step()).toMatchObject({ kind: "executed" });
    expect([cpu.gpr[RAX], (cpu.rflags & ZF) !== 0n]).toEqual([0x12345n, true]);
  });
});

describe("LAR", () => {
  it("access rights: 32/64-bit forms AND 00FFFF00 of the high dword, the 16-bit form AND FF00", () => {
    const hi = Number(ENTRIES[3]! >> 32n) >>> 0;
    expect(run(LAR64, 0x18)).toEqual([BigInt(hi & 0x00ffff00), true]);
    expect(run(LAR32, 0x18)).toEqual([BigInt(hi & 0x00ffff00), true]);
    expect(run(LAR16, 0x18)).toEqual([(SENTINEL & ~0xffffn) | BigInt(hi & 0xff00), true]);
  });

  it("system types in IA-32e mode: 64-bit TSS and call gate yes; LDT, type 0, interrupt gate no", () => {
    expect(run(LAR64, 0x28)[1]).toBe(true);
    expect(run(LAR64, 0x43)[1]).toBe(true); // call gate DPL 3, RPL 3
    for (const s of [0x38, 0x30, 0x48, 0x50, 0x58]) expect(run(LAR64, s), `selector 0x${s.toString(16)}`).toEqual(kept);
  });

  it("system types in legacy protected mode: LDT, 16-bit TSS, task and call gates yes; interrupt gate no", () => {
    const pm = { ia32e: false };
    for (const s of [0x38, 0x50, 0x58, 0x40]) expect(run(LAR32, s, pm)[1], `selector 0x${s.toString(16)}`).toBe(true);
    expect(run(LAR32, 0x48, pm)).toEqual([SENTINEL, false]);
  });

  it("is #UD in real mode; a source in memory is read as 16 bits; the descriptor read faults as #PF", () => {
    const real = machine("0f 02 c1");
    real.cpu.cr0 &= ~1n;
    expect(real.emu.step()).toMatchObject({ kind: "exception", vector: 6 });

    const mem = machine("0f 03 07"); // lsl eax, word [rdi]
    mem.cpu.gpr[RDI] = 0x8000n;
    mem.memory.writeU32(0x8000, 0xffff0018);
    expect(mem.emu.step()).toMatchObject({ kind: "executed" });
    expect(mem.cpu.gpr[RAX]).toBe(0x12345n);

    const memory = GuestMemoryMap.allocate([{ base: 0, size: 0x10000 }]);
    memory.write(Number(CODE), Buffer.from("0f03c1", "hex"));
    const pf = new SimpleCpu({
      memory,
      translate: (lin) => (lin >= GDT && lin < GDT + 0x1000n ? { kind: "page-fault", errorCode: 0, cr2: lin } : lin),
    });
    pf.cr0 |= 1n << 31n;
    pf.gdtr = { base: GDT, limit: GDT_LIMIT };
    pf.rip = CODE;
    pf.gpr[RCX] = 0x18n;
    expect(new Emulator(pf).step()).toMatchObject({ kind: "exception", vector: 14, errorCode: 0, cr2: GDT + 0x18n });
  });
});
