import { EFER, INTERCEPT_MISC1, INTERCEPT_MISC2 } from "./bits.js";
import type { SvmCaps } from "./caps.js";
import { SvmError } from "./errors.js";
import { VmcbState } from "./state.js";

/**
 * Guest modes a VMCB can start in. Unlike VMX, SVM enters real mode directly (CR0.PE=0, no
 * unrestricted-guest control), and also "paged real mode" (PE=0, PG=1), which only VMRUN can load.
 */
export const GUEST_MODES = ["real", "protected", "long"] as const;
export type GuestMode = (typeof GUEST_MODES)[number];

export function supportsMode(caps: SvmCaps, mode: GuestMode): boolean {
  return mode !== "long" || caps.cpu.longMode;
}

/** Where the template puts the permission maps and page tables (page-aligned, below 1 MiB). */
export const TEMPLATE_ADDR = {
  IOPM: 0x10000n,
  MSRPM: 0x14000n,
  CR3: 0x2000n,
  RIP: 0x100000n,
} as const;

/** The PAT value at reset (WB, WT, UC-, UC twice): also a valid G_PAT. */
export const PAT_DEFAULT = 0x0007_0406_0007_0406n;

/**
 * A VMCB that passes every VMRUN check for `caps`, with a guest in `mode`:
 * - real: CS:IP f000:fff0 (the reset vector), 64-KiB segments, CR0 = ET;
 * - protected: flat 32-bit segments, CR0 = PE|ET|NE, paging off, RIP 1 MiB;
 * - long: flat 64-bit code, CR0 = PG|WP|NE|ET|PE, CR4 = PAE, EFER = LME|LMA|SCE (|NXE), CR3 2000h.
 * Intercepts: VMRUN (required), HLT, SHUTDOWN, I/O and MSR through the maps; ASID 1.
 */
export function validVmcbTemplate(caps: SvmCaps, mode: GuestMode): VmcbState {
  if (!supportsMode(caps, mode)) throw new SvmError("SVM_INVALID_CAPS", `${caps.name} cannot run a ${mode}-mode guest`);
  const s = new VmcbState();
  s.set("control.interceptMisc1", (INTERCEPT_MISC1.HLT | INTERCEPT_MISC1.SHUTDOWN | INTERCEPT_MISC1.IOIO_PROT | INTERCEPT_MISC1.MSR_PROT) >>> 0);
  s.set("control.interceptMisc2", INTERCEPT_MISC2.VMRUN);
  s.set("control.iopmBasePa", TEMPLATE_ADDR.IOPM);
  s.set("control.msrpmBasePa", TEMPLATE_ADDR.MSRPM);
  s.set("control.guestAsid", 1);
  s.set("save.dr6", 0xffff_0ff0n);
  s.set("save.dr7", 0x400n);
  s.set("save.rflags", 2n);
  s.set("save.gPat", PAT_DEFAULT);
  s.set("save.gdtr.limit", 0xffff);
  s.set("save.idtr.limit", 0xffff);
  s.set("save.ldtr.attrib", 0x82);
  s.set("save.ldtr.limit", 0xffff);
  s.set("save.tr.attrib", 0x8b);
  s.set("save.tr.limit", 0xffff);
  const data = (attrib: number, limit: number, sel: number): void => {
    for (const r of ["ds", "es", "fs", "gs", "ss"]) {
      s.set(`save.${r}.selector`, sel);
      s.set(`save.${r}.attrib`, attrib);
      s.set(`save.${r}.limit`, limit);
    }
  };
  if (mode === "real") {
    s.set("save.efer", EFER.SVME);
    s.set("save.cr0", 0x10n);
    s.set("save.cs.selector", 0xf000);
    s.set("save.cs.base", 0xf0000n);
    s.set("save.cs.limit", 0xffff);
    s.set("save.cs.attrib", 0x9b);
    data(0x93, 0xffff, 0);
    s.set("save.rip", 0xfff0n);
    s.set("save.rsp", 0x7000n);
  } else {
    s.set("save.cs.selector", 0x8);
    s.set("save.cs.limit", 0xffff_ffff);
    s.set("save.rip", TEMPLATE_ADDR.RIP);
    s.set("save.rsp", 0x8000n);
    data(0xc93, 0xffff_ffff, 0x10);
    if (mode === "protected") {
      s.set("save.efer", EFER.SVME);
      s.set("save.cr0", 0x31n);
      s.set("save.cs.attrib", 0xc9b);
    } else {
      s.set("save.efer", EFER.SVME | EFER.LME | EFER.LMA | EFER.SCE | (caps.cpu.nx ? EFER.NXE : 0n));
      s.set("save.cr0", 0x8001_0031n);
      s.set("save.cr4", 0x20n);
      s.set("save.cr3", TEMPLATE_ADDR.CR3);
      s.set("save.cs.attrib", 0xa9b);
    }
  }
  return s;
}
