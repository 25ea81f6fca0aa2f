// The post-2019 VM-entry rules (FRED, CET, CPUID-dependent MSR bits) and the catalog's VERIFY items,
// each settled by a test: the rule holds where the CPU enumerates the feature and fails where it
// does not. The README's "Newest-SDM decisions" table names these tests.
import {
  CR4,
  capsFromJSON,
  checkVmEntry,
  ENTRY,
  EXIT,
  EXIT2,
  getProfile,
  intrInfo,
  PROC,
  VMCS_FIELDS,
  type VmcsState,
  type VmEntryEnv,
  type VmxCaps,
  validVmcsTemplate,
} from "@tsvmm/vmcs";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

const FULL = getProfile("full-featured");
const ids = (s: VmcsState, caps: VmxCaps = FULL, env: VmEntryEnv = {}): string[] => [...new Set(checkVmEntry(s, caps, env).map((v) => v.id))].sort();
const cpu = (patch: Partial<VmxCaps["cpu"]>, base: VmxCaps = FULL): VmxCaps => ({ ...base, name: `${base.name}*`, cpu: { ...base.cpu, ...patch } });
const msrs = (patch: Partial<VmxCaps["msrs"]>, base: VmxCaps = FULL): VmxCaps => ({ ...base, name: `${base.name}*`, msrs: { ...base.msrs, ...patch } });
const long = (): VmcsState => validVmcsTemplate(FULL, "long");
const prot = (): VmcsState => validVmcsTemplate(FULL, "protected");
const or = (s: VmcsState, f: string, v: number | bigint): VmcsState => s.set(f, typeof v === "bigint" ? s.get(f) | v : (Number(s.get(f)) | v) >>> 0);
const bit = (n: number): bigint => 1n << BigInt(n);

describe("FRED: event injection (28.2.1.3)", () => {
  const fredGuest = (): VmcsState => or(long(), "GUEST_CR4", CR4.FRED);
  it("other event vector 1 (SYSCALL) / 2 (SYSENTER) is valid for an IA-32e guest with CR4.FRED", () => {
    for (const v of [1, 2]) {
      const s = fredGuest().set("VM_ENTRY_INTR_INFO_FIELD", intrInfo(v, 7)).set("VM_ENTRY_INSTRUCTION_LEN", 2);
      expect(ids(s)).toEqual([]);
      expect(ids(s.clone().set("VM_ENTRY_INSTRUCTION_LEN", 0))).toEqual([]);
    }
  });
  it("… and invalid without CR4.FRED, with a length above 15, or for any other vector", () => {
    const s = long().set("VM_ENTRY_INTR_INFO_FIELD", intrInfo(1, 7)).set("VM_ENTRY_INSTRUCTION_LEN", 2);
    expect(ids(s)).toEqual(["CTRL.ENTRY.INJ.VECTOR"]);
    expect(ids(fredGuest().set("VM_ENTRY_INTR_INFO_FIELD", intrInfo(2, 7)).set("VM_ENTRY_INSTRUCTION_LEN", 16))).toEqual(["CTRL.ENTRY.INJ.INSTR_LEN"]);
    for (const v of [3, 4, 0x80, 0xff]) expect(ids(fredGuest().set("VM_ENTRY_INTR_INFO_FIELD", intrInfo(v, 7)))).toEqual(["CTRL.ENTRY.INJ.VECTOR"]);
  });
  it("vector 0 (pending MTF) needs the monitor-trap-flag control; type 7 is reserved only with neither MTF nor FRED", () => {
    const noMtf = (c: VmxCaps): VmxCaps => msrs({ IA32_VMX_TRUE_PROCBASED_CTLS: c.msrs.IA32_VMX_TRUE_PROCBASED_CTLS & ~(BigInt(PROC.MONITOR_TRAP_FLAG) << 32n), IA32_VMX_PROCBASED_CTLS: c.msrs.IA32_VMX_PROCBASED_CTLS & ~(BigInt(PROC.MONITOR_TRAP_FLAG) << 32n) }, c);
    const mtfEvent = long().set("VM_ENTRY_INTR_INFO_FIELD", intrInfo(0, 7));
    expect(ids(mtfEvent)).toEqual([]);
    expect(ids(mtfEvent, noMtf(FULL))).toEqual(["CTRL.ENTRY.INJ.VECTOR"]);
    expect(ids(mtfEvent, noMtf(cpu({ fred: false })))).toEqual(["CTRL.ENTRY.INJ.TYPE"]);
  });
  it("bit 13 (nested exception) needs IA32_VMX_BASIC[58] and a hardware exception", () => {
    const nested = (type: number, vector: number): VmcsState => long().set("VM_ENTRY_INTR_INFO_FIELD", (intrInfo(vector, type) | (1 << 13)) >>> 0);
    expect(ids(nested(3, 6))).toEqual([]);
    expect(ids(nested(3, 6), msrs({ IA32_VMX_BASIC: FULL.msrs.IA32_VMX_BASIC & ~bit(58) }))).toEqual(["CTRL.ENTRY.INJ.RESERVED"]);
    expect(ids(nested(2, 2))).toEqual(["CTRL.ENTRY.INJ.RESERVED"]);
  });
});

describe("FRED: MSR state (28.2.2 / 28.3.1.1)", () => {
  const guestFred = (cfg: bigint): VmcsState => or(long(), "VM_ENTRY_CONTROLS", ENTRY.LOAD_IA32_FRED).set("GUEST_IA32_FRED_CONFIG", cfg);
  const hostFred = (cfg: bigint): VmcsState =>
    or(long(), "VM_EXIT_CONTROLS", EXIT.ACTIVATE_SECONDARY_CONTROLS).set("SECONDARY_VM_EXIT_CONTROLS", EXIT2.LOAD_IA32_FRED).set("HOST_IA32_FRED_CONFIG", cfg);
  it("IA32_FRED_CONFIG: bits 2, 5:4 and 11 reserved; bits 3, 10:6 and the entry page are not", () => {
    for (const b of [2, 4, 5, 11]) {
      expect(ids(guestFred(0x1000n | bit(b)))).toEqual(["GUEST.FRED.STATE"]);
      expect(ids(hostFred(0x1000n | bit(b)))).toEqual(["HOST.FRED.STATE"]);
    }
    for (const b of [0, 1, 3, 6, 7, 8, 9, 10]) {
      expect(ids(guestFred(0xffff_8000_0000_1000n | bit(b)))).toEqual([]);
      expect(ids(hostFred(0xffff_8000_0000_1000n | bit(b)))).toEqual([]);
    }
    expect(ids(guestFred(0x8000_0000_0000_1000n))).toEqual(["GUEST.FRED.STATE"]);
  });
  it("RSPs 64-byte aligned, SSPs 8-byte aligned", () => {
    const g = (f: string, v: bigint) => or(long(), "VM_ENTRY_CONTROLS", ENTRY.LOAD_IA32_FRED).set(f, v);
    expect(ids(g("GUEST_IA32_FRED_RSP3", 0x2040n))).toEqual([]);
    expect(ids(g("GUEST_IA32_FRED_RSP3", 0x2020n))).toEqual(["GUEST.FRED.STATE"]);
    expect(ids(g("GUEST_IA32_FRED_SSP1", 0x2008n))).toEqual([]);
    expect(ids(g("GUEST_IA32_FRED_SSP1", 0x2004n))).toEqual(["GUEST.FRED.STATE"]);
  });
  it("guest FRED state is checked for an IA-32e mode guest only (no load outside IA-32e)", () => {
    const s = or(prot(), "VM_ENTRY_CONTROLS", ENTRY.LOAD_IA32_FRED).set("GUEST_IA32_FRED_RSP1", 0x1001n);
    expect(ids(s)).toEqual([]);
  });
  it("a 32-bit host: CR4.FRED must be 0 and host FRED state is not checked", () => {
    const s = prot()
      .set("VM_EXIT_CONTROLS", (Number(prot().get("VM_EXIT_CONTROLS")) & ~EXIT.HOST_ADDR_SPACE_SIZE) >>> 0)
      .set("HOST_RIP", 0x10_0000n);
    const env = { cpuInIa32e: false };
    expect(ids(s, FULL, env)).toEqual([]);
    or(s, "VM_EXIT_CONTROLS", EXIT.ACTIVATE_SECONDARY_CONTROLS).set("SECONDARY_VM_EXIT_CONTROLS", EXIT2.LOAD_IA32_FRED).set("HOST_IA32_FRED_RSP1", 0x1001n);
    expect(ids(s, FULL, env)).toEqual([]);
    expect(ids(or(s, "HOST_CR4", CR4.FRED), FULL, env)).toEqual(["HOST.ASZ.H32_NO_FRED"]);
  });
});

describe("FRED: guest segments and interruptibility (28.3.1.2, 28.3.1.5)", () => {
  const fredGuest = (): VmcsState => or(long(), "GUEST_CR4", CR4.FRED);
  it("CPL 0 must run 64-bit code (CS.L = 1); CPL 3 may run compatibility-mode code", () => {
    expect(ids(fredGuest())).toEqual([]);
    expect(ids(fredGuest().set("GUEST_CS_AR_BYTES", 0xc09b))).toEqual(["GUEST.SEG.FRED.CPL0_64BIT"]);
    const cpl3compat = fredGuest().set("GUEST_CS_SELECTOR", 0x0b).set("GUEST_CS_AR_BYTES", 0xc0fb).set("GUEST_SS_SELECTOR", 0x13).set("GUEST_SS_AR_BYTES", 0xc0f3);
    expect(ids(cpl3compat)).toEqual([]);
    // Without CR4.FRED the same compatibility-mode ring 0 is fine.
    expect(ids(long().set("GUEST_CS_AR_BYTES", 0xc09b))).toEqual([]);
  });
  it("SS.DPL 1 or 2 is refused; DPL 3 needs IOPL 0 and no STI blocking", () => {
    const ring = (dpl: number): VmcsState =>
      fredGuest()
        .set("GUEST_CS_SELECTOR", 0x08 | dpl)
        .set("GUEST_CS_AR_BYTES", 0xa09b | (dpl << 5))
        .set("GUEST_SS_SELECTOR", 0x10 | dpl)
        .set("GUEST_SS_AR_BYTES", 0xc093 | (dpl << 5));
    expect(ids(ring(1))).toEqual(["GUEST.SEG.FRED.SS_DPL"]);
    expect(ids(ring(2))).toEqual(["GUEST.SEG.FRED.SS_DPL"]);
    expect(ids(ring(3))).toEqual([]);
    expect(ids(ring(3).set("GUEST_RFLAGS", 0x3002n))).toEqual(["GUEST.SEG.FRED.SS_DPL"]);
    expect(ids(ring(3).set("GUEST_RFLAGS", 0x202n).set("GUEST_INTERRUPTIBILITY_INFO", 1))).toEqual(["GUEST.INTR.FRED_NO_STI_AT_CPL3"]);
    expect(ids(ring(0).set("GUEST_RFLAGS", 0x202n).set("GUEST_INTERRUPTIBILITY_INFO", 1))).toEqual([]);
  });
});

describe("CET (28.2.2, 28.3.1.1)", () => {
  const g = (sCet: bigint, caps: VmxCaps = FULL, s: VmcsState = long()): string[] => ids(or(s, "VM_ENTRY_CONTROLS", ENTRY.LOAD_CET_STATE).set("GUEST_S_CET", sCet), caps);
  const h = (sCet: bigint, caps: VmxCaps = FULL): string[] => ids(or(long(), "VM_EXIT_CONTROLS", EXIT.LOAD_CET_STATE).set("HOST_S_CET", sCet), caps);
  it("SUPPRESS (bit 10) and TRACKER (bit 11): each alone is fine, both together are not", () => {
    for (const v of [bit(10), bit(11), bit(10) | bit(2), bit(11) | bit(2)]) {
      expect(g(v)).toEqual([]);
      expect(h(v)).toEqual([]);
    }
    expect(g(bit(10) | bit(11))).toEqual(["GUEST.CET.S_CET_SUPPRESS_TRACKER"]);
    expect(h(bit(10) | bit(11))).toEqual(["HOST.CET.S_CET_SUPPRESS_TRACKER"]);
  });
  it("bits 9:6 are reserved always; shadow-stack bits need CET_SS, IBT bits (5:2, 11:10, 63:12) need CET_IBT", () => {
    for (const b of [6, 7, 8, 9]) expect(g(bit(b))).toEqual(["GUEST.CET.S_CET"]);
    const noSs = cpu({ cetSs: false });
    const noIbt = cpu({ cetIbt: false });
    for (const b of [0, 1]) {
      expect(g(bit(b))).toEqual([]);
      expect(g(bit(b), noSs)).toEqual(["GUEST.CET.S_CET"]);
      expect(h(bit(b), noSs)).toEqual(["HOST.CET.S_CET"]);
      expect(g(bit(b), noIbt)).toEqual([]);
    }
    for (const v of [bit(2), bit(3), bit(4), bit(5), bit(10), bit(11), 0x7fff_f000n]) {
      expect(g(v)).toEqual([]);
      expect(g(v, noIbt)).toEqual(["GUEST.CET.S_CET"]);
      expect(h(v, noIbt)).toEqual(["HOST.CET.S_CET"]);
      expect(g(v, noSs)).toEqual([]);
    }
  });
  it("S_CET and SSP of a guest outside IA-32e mode must be below 2^32; SSP 4-byte aligned", () => {
    expect(g(bit(40), FULL, prot())).toEqual(["GUEST.CET.S_CET"]);
    expect(g(0x1000n | bit(2), FULL, prot())).toEqual([]);
    const ssp = (v: bigint, s: VmcsState) => ids(or(s, "VM_ENTRY_CONTROLS", ENTRY.LOAD_CET_STATE).set("GUEST_SSP", v));
    expect(ssp(0x1_0000_0000n, prot())).toEqual(["GUEST.CET.SSP"]);
    expect(ssp(0x1_0000_0000n, long())).toEqual([]);
    expect(ssp(0x1004n, long())).toEqual([]);
    expect(ssp(0x1002n, long())).toEqual(["GUEST.CET.SSP"]);
  });
  it("PL0_SSP..PL3_SSP are not VMCS fields: VM entry does not check them (they travel in the MSR-load area)", () => {
    expect(VMCS_FIELDS.filter((f) => /PL[0-3]_SSP/.test(f.name))).toEqual([]);
  });
});

describe("MSR bits reserved or not by CPUID (28.3.1.1)", () => {
  const debugctl = (v: bigint, caps: VmxCaps = FULL) => ids(or(long(), "VM_ENTRY_CONTROLS", ENTRY.LOAD_DEBUG_CONTROLS).set("GUEST_IA32_DEBUGCTL", v), caps);
  it("IA32_DEBUGCTL bit 2 (bus-lock detect) only with CPUID.(7,0):ECX[24]; bit 15 (RTM debug) only with RTM", () => {
    expect(debugctl(bit(2))).toEqual([]);
    expect(debugctl(bit(2), cpu({ busLockDetect: false }))).toEqual(["GUEST.DEBUGCTL.RESERVED"]);
    expect(debugctl(bit(15))).toEqual([]);
    expect(debugctl(bit(15), cpu({ rtm: false }))).toEqual(["GUEST.DEBUGCTL.RESERVED"]);
    for (const b of [0, 1, 6, 7, 8, 9, 10, 11, 12, 13, 14]) expect(debugctl(bit(b), cpu({ busLockDetect: false, rtm: false }))).toEqual([]);
    // Real profiles: no bus-lock detection on any of them.
    for (const name of ["intel-core-i7-5600u", "intel-xeon-x5482"]) {
      const c = getProfile(name);
      const s = validVmcsTemplate(c, "long");
      or(s, "VM_ENTRY_CONTROLS", ENTRY.LOAD_DEBUG_CONTROLS).set("GUEST_IA32_DEBUGCTL", bit(2));
      expect(ids(s, c)).toEqual(["GUEST.DEBUGCTL.RESERVED"]);
    }
  });
  it("a caps file can say which CPUID bits the CPU has (cpu.busLockDetect)", () => {
    const c = capsFromJSON({ base: "full-featured", cpu: { busLockDetect: false } });
    expect(debugctl(bit(2), c)).toEqual(["GUEST.DEBUGCTL.RESERVED"]);
  });
  it("IA32_EFER.NXE only with CPUID.80000001H:EDX[20] (host and guest)", () => {
    const noNx = cpu({ nx: false });
    const guest = long().set("GUEST_IA32_EFER", 0xd00n);
    expect(ids(guest)).toEqual([]);
    expect(ids(guest, noNx)).toEqual(["GUEST.EFER.RESERVED"]);
    const host = or(long(), "VM_EXIT_CONTROLS", EXIT.LOAD_IA32_EFER).set("HOST_IA32_EFER", 0xd01n);
    expect(ids(host)).toEqual([]);
    expect(ids(host, noNx)).toEqual(["HOST.EFER.RESERVED"]);
  });

  // (bit or field of IA32_RTIT_CTL, the CPUID.14H enumeration that defines it), from SDM Vol. 3C Table 33-6.
  const RTIT: readonly [number[], { ebx?: number; ecx?: number; ranges?: number }][] = [
    [[7], { ebx: 0 }],
    [[1, 19, 22, 24, 27], { ebx: 1 }],
    [[9, 14, 17], { ebx: 3 }],
    [[5, 12], { ebx: 4 }],
    [[4], { ebx: 5 }],
    [[31], { ebx: 7 }],
    [[55], { ebx: 8 }],
    [[8], { ecx: 0 }],
    [[6], { ecx: 3 }],
    [[32, 35], { ebx: 2, ranges: 1 }],
    [[36, 39], { ebx: 2, ranges: 2 }],
    [[40, 43], { ebx: 2, ranges: 3 }],
    [[44, 47], { ebx: 2, ranges: 4 }],
  ];
  const rtit = (v: bigint, caps: VmxCaps) => ids(or(long(), "VM_ENTRY_CONTROLS", ENTRY.LOAD_IA32_RTIT_CTL).set("GUEST_IA32_RTIT_CTL", v), caps);
  it("IA32_RTIT_CTL: each capability-gated bit is reserved until CPUID leaf 14H enumerates it", () => {
    const none = cpu({ ptEbx: 0, ptEcx: 0, ptAddrRanges: 0 });
    for (const b of [0, 2, 3, 10, 11, 13]) expect(rtit(bit(b), none)).toEqual([]);
    for (const [bits, need] of RTIT) {
      const has = cpu({ ptEbx: need.ebx === undefined ? 0 : 1 << need.ebx, ptEcx: need.ecx === undefined ? 0 : 1 << need.ecx, ptAddrRanges: need.ranges ?? 0 });
      for (const b of bits) {
        expect(rtit(bit(b), none), `bit ${b} without`).toEqual(["GUEST.RTIT_CTL.RESERVED"]);
        expect(rtit(bit(b), has), `bit ${b} with`).toEqual([]);
      }
    }
    // IP filtering with 2 ranges: ADDR2/ADDR3 stay reserved.
    expect(rtit(bit(40), cpu({ ptEbx: 4, ptAddrRanges: 2 }))).toEqual(["GUEST.RTIT_CTL.RESERVED"]);
    for (const b of [18, 23, 28, 30, 48, 54, 56, 63]) expect(rtit(bit(b), FULL), `bit ${b}`).toEqual(["GUEST.RTIT_CTL.RESERVED"]);
  });
  it("IA32_LBR_CTL: OS/USR need CPL filtering, CALL_STACK call-stack mode, 22:16 branch filtering (CPUID.1CH:EBX)", () => {
    const lbr = (v: bigint, ebx: number) => ids(or(long(), "VM_ENTRY_CONTROLS", ENTRY.LOAD_IA32_LBR_CTL).set("GUEST_IA32_LBR_CTL", v), cpu({ lbrEbx: ebx }));
    expect(lbr(bit(0), 0)).toEqual([]);
    for (const [b, need] of [[1, 0], [2, 0], [3, 2], [16, 1], [22, 1]] as const) {
      expect(lbr(bit(b), 0)).toEqual(["GUEST.LBR_CTL.RESERVED"]);
      expect(lbr(bit(b), 1 << need)).toEqual([]);
    }
    for (const b of [4, 15, 23, 63]) expect(lbr(bit(b), 7)).toEqual(["GUEST.LBR_CTL.RESERVED"]);
  });
  it("IA32_PERF_GLOBAL_CTRL: counter-enable bits exist for CPUID.0AH's GP and fixed counters only", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 0, max: 4 }), fc.integer({ min: 0, max: 63 }), (gp, fixed, b) => {
        const caps = cpu({ pmuGpCounters: gp, pmuFixedCounters: fixed });
        const s = or(long(), "VM_ENTRY_CONTROLS", ENTRY.LOAD_IA32_PERF_GLOBAL_CTRL).set("GUEST_IA32_PERF_GLOBAL_CTRL", bit(b));
        const defined = b < gp || (b >= 32 && b < 32 + fixed);
        expect(ids(s, caps)).toEqual(defined ? [] : ["GUEST.PERF_GLOBAL_CTRL.RESERVED"]);
      }),
      { numRuns: 300 },
    );
  });
  it("BNDCFGS / PKRS / RTIT_CTL loads are gated by the CPU's VM-entry controls, not by a mask", () => {
    // The Xeon X5482 (no MPX, PKS, PT) cannot even set those entry controls.
    const c = getProfile("intel-xeon-x5482");
    for (const ctl of [ENTRY.LOAD_IA32_BNDCFGS, ENTRY.LOAD_PKRS, ENTRY.LOAD_IA32_RTIT_CTL, ENTRY.LOAD_CET_STATE, ENTRY.LOAD_IA32_FRED]) {
      expect(ids(or(validVmcsTemplate(c, "long"), "VM_ENTRY_CONTROLS", ctl), c)).toContain("CTRL.ENTRY.ALLOWED_BITS");
    }
  });
});

describe("catalog VERIFY items", () => {
  it("#56/#90 LAM: CR3 bits 62:61 (LAM_U57/U48) are allowed only where LAM is enumerated", () => {
    const s = long().set("GUEST_CR3", 0x2000n | bit(61));
    expect(ids(s)).toEqual([]);
    expect(ids(s, cpu({ lam: false }))).toEqual(["GUEST.CR3.PHYS_WIDTH"]);
    const h = long().set("HOST_CR3", 0x10_0000n | bit(62));
    expect(ids(h)).toEqual([]);
    expect(ids(h, cpu({ lam: false }))).toEqual(["HOST.CR3.PHYS_WIDTH"]);
  });
  it("#37 HLAT: needs EPT; HLATP bits 2:0 and 11:5 reserved, bits 4:3 allowed", () => {
    const hlat = (p: bigint) => ids(or(long(), "CPU_BASED_VM_EXEC_CONTROL", PROC.ACTIVATE_TERTIARY_CONTROLS).set("TERTIARY_VM_EXEC_CONTROL", 2n).set("HLAT_POINTER", p));
    expect(hlat(0x5000n)).toEqual([]);
    expect(hlat(0x5018n)).toEqual([]);
    for (const b of [0, 2, 5, 11]) expect(hlat(0x5000n | bit(b))).toEqual(["CTRL.PROC3.HLAT"]);
  });
  it("#38 IPI virtualization: needs virtual-interrupt delivery; PID-pointer table 8-byte aligned", () => {
    const vid = (s: VmcsState) =>
      or(or(or(s, "CPU_BASED_VM_EXEC_CONTROL", PROC.USE_TPR_SHADOW | PROC.ACTIVATE_TERTIARY_CONTROLS), "SECONDARY_VM_EXEC_CONTROL", 1 << 9), "PIN_BASED_VM_EXEC_CONTROL", 1).set("VIRTUAL_APIC_PAGE_ADDR", 0x4000n);
    const ipiv = (s: VmcsState, t: bigint) => ids(s.set("TERTIARY_VM_EXEC_CONTROL", 1n << 4n).set("PID_POINTER_TABLE", t));
    expect(ipiv(vid(long()), 0xd008n)).toEqual([]);
    expect(ipiv(vid(long()), 0xd004n)).toEqual(["CTRL.PROC3.IPI_VIRT"]);
    expect(ipiv(or(long(), "CPU_BASED_VM_EXEC_CONTROL", PROC.ACTIVATE_TERTIARY_CONTROLS), 0xd000n)).toEqual(["CTRL.PROC3.IPI_VIRT"]);
  });
});

describe("capability facts are read per call for mutable caps", () => {
  it("frozen profiles are cached; a mutable caps object is re-read after it changes", () => {
    const c: VmxCaps = { ...FULL, cpu: { ...FULL.cpu } };
    const s = or(long(), "VM_ENTRY_CONTROLS", ENTRY.LOAD_DEBUG_CONTROLS).set("GUEST_IA32_DEBUGCTL", bit(2));
    expect(ids(s, c)).toEqual([]);
    (c.cpu as { busLockDetect: boolean }).busLockDetect = false;
    expect(ids(s, c)).toEqual(["GUEST.DEBUGCTL.RESERVED"]);
    expect(Object.isFrozen(FULL) && Object.isFrozen(FULL.cpu)).toBe(true);
    expect(ids(s, FULL)).toEqual([]);
  });
});
