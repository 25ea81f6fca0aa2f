import { type AnyLayout, bytes, defineStruct, nested, pad, type StructLayout, u8, u16, u32, u64 } from "@tsvmm/abi";

/**
 * The VMCB (AMD64 APM vol. 2, appendix B "Layout of VMCB"): a 4-KiB page whose control area
 * occupies 000h–3FFh and whose state-save area starts at 400h. Declared once here with the
 * project's layout layer; every offset the rest of the package uses comes from these
 * declarations (VMCB_FIELDS is derived from them, never written by hand). The field order
 * follows tables B-1 and B-2; reserved ranges are unnamed padding.
 */

/** One segment register in the save area: selector, 12-bit attributes, limit, base. */
export interface VmcbSegment {
  selector: number;
  attrib: number;
  limit: number;
  base: bigint;
}

export const VmcbSegmentLayout: StructLayout<VmcbSegment> = defineStruct("struct vmcb_seg", [
  u16("selector"),
  u16("attrib"),
  u32("limit"),
  u64("base"),
]);

export interface VmcbControlArea {
  interceptCrRead: number;
  interceptCrWrite: number;
  interceptDrRead: number;
  interceptDrWrite: number;
  interceptExceptions: number;
  interceptMisc1: number;
  interceptMisc2: number;
  interceptMisc3: number;
  pauseFilterThreshold: number;
  pauseFilterCount: number;
  iopmBasePa: bigint;
  msrpmBasePa: bigint;
  tscOffset: bigint;
  guestAsid: number;
  tlbControl: number;
  intCtl: number;
  vIntrVector: number;
  intState: bigint;
  exitCode: bigint;
  exitInfo1: bigint;
  exitInfo2: bigint;
  exitIntInfo: bigint;
  nestedCtl: bigint;
  avicApicBar: bigint;
  ghcbGpa: bigint;
  eventInj: bigint;
  nCr3: bigint;
  virtExt: bigint;
  vmcbClean: number;
  nextRip: bigint;
  insnLen: number;
  insnBytes: Buffer;
  avicBackingPage: bigint;
  avicLogicalTable: bigint;
  avicPhysicalTable: bigint;
  vmsaPa: bigint;
  vmgexitRax: bigint;
  vmgexitCpl: number;
  busLockCounter: number;
  hostReserved: Buffer;
}

// Byte offsets in the comments are the appendix B ones; the layout computes them itself and
// test/layout.test.ts compares them with an independent transcription of the tables.
const CONTROL_MEMBERS: AnyLayout[] = [
  u16("interceptCrRead"), // 000h bits 15:0
  u16("interceptCrWrite"), // 000h bits 31:16
  u16("interceptDrRead"), // 004h
  u16("interceptDrWrite"), // 006h
  u32("interceptExceptions"), // 008h
  u32("interceptMisc1"), // 00Ch: INTR ... SHUTDOWN
  u32("interceptMisc2"), // 010h: VMRUN ... CR writes (trap)
  u32("interceptMisc3"), // 014h: INVLPGB ... (newer processors)
  pad(0x3c - 0x18),
  u16("pauseFilterThreshold"), // 03Ch
  u16("pauseFilterCount"), // 03Eh
  u64("iopmBasePa"), // 040h
  u64("msrpmBasePa"), // 048h
  u64("tscOffset"), // 050h
  u32("guestAsid"), // 058h bits 31:0
  u8("tlbControl"), // 058h bits 39:32
  pad(3),
  u32("intCtl"), // 060h bits 31:0: V_TPR, V_IRQ, VGIF, V_NMI, V_INTR_PRIO, V_IGN_TPR, V_INTR_MASKING, ...
  u8("vIntrVector"), // 060h bits 39:32
  pad(3),
  u64("intState"), // 068h: INTERRUPT_SHADOW, GUEST_INTERRUPT_MASK
  u64("exitCode"), // 070h
  u64("exitInfo1"), // 078h
  u64("exitInfo2"), // 080h
  u64("exitIntInfo"), // 088h
  u64("nestedCtl"), // 090h: NP_ENABLE, SEV, SEV-ES, GMET, SSSCheck, ...
  u64("avicApicBar"), // 098h
  u64("ghcbGpa"), // 0A0h
  u64("eventInj"), // 0A8h
  u64("nCr3"), // 0B0h
  u64("virtExt"), // 0B8h: LBR virtualization, virtual VMLOAD/VMSAVE, ...
  u32("vmcbClean"), // 0C0h bits 31:0
  pad(4),
  u64("nextRip"), // 0C8h
  u8("insnLen"), // 0D0h
  bytes(15, "insnBytes"), // 0D1h–0DFh
  u64("avicBackingPage"), // 0E0h
  pad(8),
  u64("avicLogicalTable"), // 0F0h
  u64("avicPhysicalTable"), // 0F8h: bits 7:0 max index, 51:12 table pointer
  pad(8),
  u64("vmsaPa"), // 108h
  u64("vmgexitRax"), // 110h
  u8("vmgexitCpl"), // 118h
  pad(7),
  u16("busLockCounter"), // 120h
  pad(0x3e0 - 0x122),
  bytes(32, "hostReserved"), // 3E0h–3FFh: reserved for host (software) use
];

export const VmcbControlAreaLayout: StructLayout<VmcbControlArea> = defineStruct("struct vmcb_control_area", CONTROL_MEMBERS);

export interface VmcbSaveArea {
  es: VmcbSegment;
  cs: VmcbSegment;
  ss: VmcbSegment;
  ds: VmcbSegment;
  fs: VmcbSegment;
  gs: VmcbSegment;
  gdtr: VmcbSegment;
  ldtr: VmcbSegment;
  idtr: VmcbSegment;
  tr: VmcbSegment;
  vmpl: number;
  cpl: number;
  efer: bigint;
  cr4: bigint;
  cr3: bigint;
  cr0: bigint;
  dr7: bigint;
  dr6: bigint;
  rflags: bigint;
  rip: bigint;
  rsp: bigint;
  sCet: bigint;
  ssp: bigint;
  isstAddr: bigint;
  rax: bigint;
  star: bigint;
  lstar: bigint;
  cstar: bigint;
  sfmask: bigint;
  kernelGsBase: bigint;
  sysenterCs: bigint;
  sysenterEsp: bigint;
  sysenterEip: bigint;
  cr2: bigint;
  gPat: bigint;
  dbgctl: bigint;
  brFrom: bigint;
  brTo: bigint;
  lastExcpFrom: bigint;
  lastExcpTo: bigint;
  specCtrl: bigint;
}

// Offsets relative to the save area (VMCB offset − 400h).
const SAVE_MEMBERS: AnyLayout[] = [
  nested(VmcbSegmentLayout, "es"), // 400h
  nested(VmcbSegmentLayout, "cs"), // 410h
  nested(VmcbSegmentLayout, "ss"), // 420h
  nested(VmcbSegmentLayout, "ds"), // 430h
  nested(VmcbSegmentLayout, "fs"), // 440h
  nested(VmcbSegmentLayout, "gs"), // 450h
  nested(VmcbSegmentLayout, "gdtr"), // 460h (selector and attributes reserved)
  nested(VmcbSegmentLayout, "ldtr"), // 470h
  nested(VmcbSegmentLayout, "idtr"), // 480h (selector and attributes reserved)
  nested(VmcbSegmentLayout, "tr"), // 490h
  pad(0xca - 0xa0),
  u8("vmpl"), // 4CAh (SEV-SNP)
  u8("cpl"), // 4CBh
  pad(4),
  u64("efer"), // 4D0h
  pad(0x148 - 0xd8),
  u64("cr4"), // 548h
  u64("cr3"), // 550h
  u64("cr0"), // 558h
  u64("dr7"), // 560h
  u64("dr6"), // 568h
  u64("rflags"), // 570h
  u64("rip"), // 578h
  pad(0x1d8 - 0x180),
  u64("rsp"), // 5D8h
  u64("sCet"), // 5E0h
  u64("ssp"), // 5E8h
  u64("isstAddr"), // 5F0h
  u64("rax"), // 5F8h
  u64("star"), // 600h
  u64("lstar"), // 608h
  u64("cstar"), // 610h
  u64("sfmask"), // 618h
  u64("kernelGsBase"), // 620h
  u64("sysenterCs"), // 628h
  u64("sysenterEsp"), // 630h
  u64("sysenterEip"), // 638h
  u64("cr2"), // 640h
  pad(0x268 - 0x248),
  u64("gPat"), // 668h
  u64("dbgctl"), // 670h
  u64("brFrom"), // 678h
  u64("brTo"), // 680h
  u64("lastExcpFrom"), // 688h
  u64("lastExcpTo"), // 690h
  pad(0x2e0 - 0x298),
  u64("specCtrl"), // 6E0h
];

export const VmcbSaveAreaLayout: StructLayout<VmcbSaveArea> = defineStruct("struct vmcb_save_area", SAVE_MEMBERS);

/** Size of the control area; the state-save area starts here. */
export const VMCB_SAVE_AREA_OFFSET = 0x400;
/** A VMCB is one 4-KiB page. */
export const VMCB_SIZE = 0x1000;

export interface Vmcb {
  control: VmcbControlArea;
  save: VmcbSaveArea;
}

export const VmcbLayout: StructLayout<Vmcb> = defineStruct("struct vmcb", [
  nested(VmcbControlAreaLayout, "control"),
  nested(VmcbSaveAreaLayout, "save"),
  pad(VMCB_SIZE - VMCB_SAVE_AREA_OFFSET - VmcbSaveAreaLayout.size),
]);
