import { randomBytes } from "node:crypto";
import { findField, VMCB_FIELDS, VMCB_SAVE_AREA_OFFSET, VMCB_SIZE, VmcbControlAreaLayout, VmcbLayout, VmcbSaveAreaLayout, VmcbSegmentLayout } from "@tsvmm/svm";
import { describe, expect, it } from "vitest";

// No C header on this machine declares the VMCB (it lives in the kernel's arch/x86/include/asm/svm.h,
// which linux-libc-dev does not ship), so the layout is checked against two tables written here by
// hand, independently of src/layout.ts:
//  1. AMD64 APM vol. 2, appendix B, tables B-1 (control area) and B-2 (state-save area): VMCB offset
//     and width of every field.
//  2. Linux's `struct vmcb_control_area` / `struct vmcb_save_area` (arch/x86/include/asm/svm.h, as
//     of 6.x), offsets worked out from its member list; Xen's build-time assertions (vmcb.c) for the
//     fields Linux does not name (bus-lock counter). Where Linux splits an APM field (EXITCODE into
//     exit_code/exit_code_hi, EVENTINJ into event_inj/event_inj_err) the first half's offset is used.

/** [field, VMCB offset, width in bytes] per APM appendix B. */
const APM: readonly [string, number, number][] = [
  ["control.interceptCrRead", 0x000, 2],
  ["control.interceptCrWrite", 0x002, 2],
  ["control.interceptDrRead", 0x004, 2],
  ["control.interceptDrWrite", 0x006, 2],
  ["control.interceptExceptions", 0x008, 4],
  ["control.interceptMisc1", 0x00c, 4],
  ["control.interceptMisc2", 0x010, 4],
  ["control.interceptMisc3", 0x014, 4],
  ["control.pauseFilterThreshold", 0x03c, 2],
  ["control.pauseFilterCount", 0x03e, 2],
  ["control.iopmBasePa", 0x040, 8],
  ["control.msrpmBasePa", 0x048, 8],
  ["control.tscOffset", 0x050, 8],
  ["control.guestAsid", 0x058, 4],
  ["control.tlbControl", 0x05c, 1],
  ["control.intCtl", 0x060, 4],
  ["control.vIntrVector", 0x064, 1],
  ["control.intState", 0x068, 8],
  ["control.exitCode", 0x070, 8],
  ["control.exitInfo1", 0x078, 8],
  ["control.exitInfo2", 0x080, 8],
  ["control.exitIntInfo", 0x088, 8],
  ["control.nestedCtl", 0x090, 8],
  ["control.avicApicBar", 0x098, 8],
  ["control.ghcbGpa", 0x0a0, 8],
  ["control.eventInj", 0x0a8, 8],
  ["control.nCr3", 0x0b0, 8],
  ["control.virtExt", 0x0b8, 8],
  ["control.vmcbClean", 0x0c0, 4],
  ["control.nextRip", 0x0c8, 8],
  ["control.insnLen", 0x0d0, 1],
  ["control.insnBytes", 0x0d1, 15],
  ["control.avicBackingPage", 0x0e0, 8],
  ["control.avicLogicalTable", 0x0f0, 8],
  ["control.avicPhysicalTable", 0x0f8, 8],
  ["control.vmsaPa", 0x108, 8],
  ["control.vmgexitRax", 0x110, 8],
  ["control.vmgexitCpl", 0x118, 1],
  ["control.busLockCounter", 0x120, 2],
  ["control.hostReserved", 0x3e0, 32],
  ...["es", "cs", "ss", "ds", "fs", "gs", "gdtr", "ldtr", "idtr", "tr"].flatMap((s, i): [string, number, number][] => [
    [`save.${s}.selector`, 0x400 + i * 16, 2],
    [`save.${s}.attrib`, 0x402 + i * 16, 2],
    [`save.${s}.limit`, 0x404 + i * 16, 4],
    [`save.${s}.base`, 0x408 + i * 16, 8],
  ]),
  ["save.vmpl", 0x4ca, 1],
  ["save.cpl", 0x4cb, 1],
  ["save.efer", 0x4d0, 8],
  ["save.cr4", 0x548, 8],
  ["save.cr3", 0x550, 8],
  ["save.cr0", 0x558, 8],
  ["save.dr7", 0x560, 8],
  ["save.dr6", 0x568, 8],
  ["save.rflags", 0x570, 8],
  ["save.rip", 0x578, 8],
  ["save.rsp", 0x5d8, 8],
  ["save.sCet", 0x5e0, 8],
  ["save.ssp", 0x5e8, 8],
  ["save.isstAddr", 0x5f0, 8],
  ["save.rax", 0x5f8, 8],
  ["save.star", 0x600, 8],
  ["save.lstar", 0x608, 8],
  ["save.cstar", 0x610, 8],
  ["save.sfmask", 0x618, 8],
  ["save.kernelGsBase", 0x620, 8],
  ["save.sysenterCs", 0x628, 8],
  ["save.sysenterEsp", 0x630, 8],
  ["save.sysenterEip", 0x638, 8],
  ["save.cr2", 0x640, 8],
  ["save.gPat", 0x668, 8],
  ["save.dbgctl", 0x670, 8],
  ["save.brFrom", 0x678, 8],
  ["save.brTo", 0x680, 8],
  ["save.lastExcpFrom", 0x688, 8],
  ["save.lastExcpTo", 0x690, 8],
  ["save.specCtrl", 0x6e0, 8],
];

/** Linux member → VMCB offset (save-area members + 0x400), worked out from struct vmcb_*_area. */
const LINUX: Readonly<Record<string, [string, number]>> = {
  "control.interceptCrRead": ["intercepts[INTERCEPT_CR]", 0x00],
  "control.interceptDrRead": ["intercepts[INTERCEPT_DR]", 0x04],
  "control.interceptExceptions": ["intercepts[INTERCEPT_EXCEPTION]", 0x08],
  "control.interceptMisc1": ["intercepts[INTERCEPT_WORD3]", 0x0c],
  "control.interceptMisc2": ["intercepts[INTERCEPT_WORD4]", 0x10],
  "control.interceptMisc3": ["intercepts[INTERCEPT_WORD5]", 0x14],
  "control.pauseFilterThreshold": ["pause_filter_thresh", 0x3c],
  "control.pauseFilterCount": ["pause_filter_count", 0x3e],
  "control.iopmBasePa": ["iopm_base_pa", 0x40],
  "control.msrpmBasePa": ["msrpm_base_pa", 0x48],
  "control.tscOffset": ["tsc_offset", 0x50],
  "control.guestAsid": ["asid", 0x58],
  "control.tlbControl": ["tlb_ctl", 0x5c],
  "control.intCtl": ["int_ctl", 0x60],
  "control.vIntrVector": ["int_vector", 0x64],
  "control.intState": ["int_state", 0x68],
  "control.exitCode": ["exit_code", 0x70],
  "control.exitInfo1": ["exit_info_1", 0x78],
  "control.exitInfo2": ["exit_info_2", 0x80],
  "control.exitIntInfo": ["exit_int_info", 0x88],
  "control.nestedCtl": ["nested_ctl", 0x90],
  "control.avicApicBar": ["avic_vapic_bar", 0x98],
  "control.ghcbGpa": ["ghcb_gpa", 0xa0],
  "control.eventInj": ["event_inj", 0xa8],
  "control.nCr3": ["nested_cr3", 0xb0],
  "control.virtExt": ["virt_ext", 0xb8],
  "control.vmcbClean": ["clean", 0xc0],
  "control.nextRip": ["next_rip", 0xc8],
  "control.insnLen": ["insn_len", 0xd0],
  "control.insnBytes": ["insn_bytes", 0xd1],
  "control.avicBackingPage": ["avic_backing_page", 0xe0],
  "control.avicLogicalTable": ["avic_logical_id", 0xf0],
  "control.avicPhysicalTable": ["avic_physical_id", 0xf8],
  "control.vmsaPa": ["vmsa_pa", 0x108],
  "control.busLockCounter": ["(Xen) bus_lock_count", 0x120],
  "control.hostReserved": ["reserved_sw", 0x3e0],
  "save.es.selector": ["es", 0x400],
  "save.tr.base": ["tr.base", 0x498],
  "save.vmpl": ["vmpl", 0x4ca],
  "save.cpl": ["cpl", 0x4cb],
  "save.efer": ["efer", 0x4d0],
  "save.cr4": ["cr4", 0x548],
  "save.cr3": ["cr3", 0x550],
  "save.cr0": ["cr0", 0x558],
  "save.dr7": ["dr7", 0x560],
  "save.dr6": ["dr6", 0x568],
  "save.rflags": ["rflags", 0x570],
  "save.rip": ["rip", 0x578],
  "save.rsp": ["rsp", 0x5d8],
  "save.sCet": ["s_cet", 0x5e0],
  "save.ssp": ["ssp", 0x5e8],
  "save.isstAddr": ["isst_addr", 0x5f0],
  "save.rax": ["rax", 0x5f8],
  "save.star": ["star", 0x600],
  "save.lstar": ["lstar", 0x608],
  "save.cstar": ["cstar", 0x610],
  "save.sfmask": ["sfmask", 0x618],
  "save.kernelGsBase": ["kernel_gs_base", 0x620],
  "save.sysenterCs": ["sysenter_cs", 0x628],
  "save.sysenterEsp": ["sysenter_esp", 0x630],
  "save.sysenterEip": ["sysenter_eip", 0x638],
  "save.cr2": ["cr2", 0x640],
  "save.gPat": ["g_pat", 0x668],
  "save.dbgctl": ["dbgctl", 0x670],
  "save.brFrom": ["br_from", 0x678],
  "save.brTo": ["br_to", 0x680],
  "save.lastExcpFrom": ["last_excp_from", 0x688],
  "save.lastExcpTo": ["last_excp_to", 0x690],
  "save.specCtrl": ["spec_ctrl", 0x6e0],
};

describe("VMCB layout (APM vol. 2 appendix B)", () => {
  it("sizes: control area 1024, save area 744 (Linux EXPECTED_VMCB_SAVE_AREA_SIZE), page 4096", () => {
    expect(VmcbControlAreaLayout.size).toBe(0x400);
    expect(VMCB_SAVE_AREA_OFFSET).toBe(0x400);
    expect(VmcbSaveAreaLayout.size).toBe(744);
    expect(VmcbLayout.size).toBe(VMCB_SIZE);
    expect(VmcbSegmentLayout.size).toBe(16);
  });

  it("every field sits at its appendix B offset with its width, and the table covers every field", () => {
    const got = VMCB_FIELDS.map((f) => [f.name, f.offset, f.size]);
    expect(got).toEqual(APM);
  });

  it.each(Object.entries(LINUX).map(([n, [c, o]]) => [n, c, o] as const))("%s matches Linux's %s", (name, _c, off) => {
    expect(findField(name)?.offset).toBe(off);
  });

  it("areas: control below 400h, save from 400h", () => {
    for (const f of VMCB_FIELDS) expect(f.area).toBe(f.offset < 0x400 ? "control" : "save");
  });

  it("decode/encode round-trips a page of random bytes on every named field", () => {
    const page = randomBytes(VMCB_SIZE);
    const decoded = VmcbLayout.decode(page);
    const again = VmcbLayout.encode(decoded);
    for (const f of VMCB_FIELDS) {
      expect(again.subarray(f.offset, f.offset + f.size), f.name).toEqual(page.subarray(f.offset, f.offset + f.size));
    }
    expect(decoded.save.cr0).toBe(page.readBigUInt64LE(0x558));
  });
});
