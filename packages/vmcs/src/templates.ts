import { ENTRY, EXIT, PROC, PROC2 } from "./bits/controls.js";
import { allowedControls, allowedProc2, type VmxCaps } from "./caps.js";
import { VmcsError } from "./errors.js";
import { VmcsState } from "./state.js";

/** Guest modes the templates and arbitraries build. "real" uses unrestricted guest (needs EPT+UG). */
export type GuestMode = "real" | "protected" | "long";
export const GUEST_MODES: readonly GuestMode[] = ["real", "protected", "long"];

/** EPTP the templates use: WB, 4-level walk, PML4 at 0x1000. */
export const TEMPLATE_EPTP = 0x1000n | 6n | (3n << 3n);

/** Whether a profile can run a guest of this mode (real mode needs unrestricted guest). */
export function supportsMode(caps: VmxCaps, mode: GuestMode): boolean {
  const p = allowedControls(caps, "proc");
  const p2 = allowedProc2(caps);
  const e = allowedControls(caps, "entry");
  const x = allowedControls(caps, "exit");
  if (!caps.cpu.intel64 || !(x.may1 & EXIT.HOST_ADDR_SPACE_SIZE)) return false;
  // Real mode needs unrestricted guest, which needs EPT; paged modes run on the guest's own tables.
  if (mode === "real") return (p.may1 & PROC.ACTIVATE_SECONDARY_CONTROLS) !== 0 && (p2.may1 & (PROC2.ENABLE_EPT | PROC2.UNRESTRICTED_GUEST)) === (PROC2.ENABLE_EPT | PROC2.UNRESTRICTED_GUEST);
  if (mode === "long") return (e.may1 & ENTRY.IA32E_MODE_GUEST) !== 0;
  return true;
}

/**
 * A VMCS that passes every check for `caps`, for a 64-bit host (the usual VMM on Linux) and a
 * guest in `mode`: flat segments, paging on for protected/long mode, EPT enabled where the CPU has
 * it (identity EPTP at 0x1000; without EPT the guest runs on its own tables at CR3), unrestricted
 * guest for real mode. Throws VMCS_INVALID_CAPS if the profile
 * cannot express the mode.
 */
export function validVmcsTemplate(caps: VmxCaps, mode: GuestMode): VmcsState {
  if (!supportsMode(caps, mode)) throw new VmcsError("VMCS_INVALID_CAPS", `profile ${caps.name} cannot run a ${mode}-mode guest`);
  const p = allowedControls(caps, "proc");
  const entryA = allowedControls(caps, "entry");
  const exitA = allowedControls(caps, "exit");
  const loadEfer = (entryA.may1 & ENTRY.LOAD_IA32_EFER) !== 0;
  const secondary = (p.may1 & PROC.ACTIVATE_SECONDARY_CONTROLS) !== 0;
  const ept = secondary && (allowedProc2(caps).may1 & PROC2.ENABLE_EPT) !== 0;
  const proc2 = (ept ? PROC2.ENABLE_EPT : 0) | (mode === "real" ? PROC2.UNRESTRICTED_GUEST : 0) | allowedProc2(caps).must1;
  const s = new VmcsState();
  s.set("PIN_BASED_VM_EXEC_CONTROL", allowedControls(caps, "pin").must1);
  s.set("CPU_BASED_VM_EXEC_CONTROL", (p.must1 | (secondary ? PROC.ACTIVATE_SECONDARY_CONTROLS : 0)) >>> 0);
  if (secondary) s.set("SECONDARY_VM_EXEC_CONTROL", proc2 >>> 0);
  if (ept) s.set("EPT_POINTER", TEMPLATE_EPTP);
  s.set("VM_EXIT_CONTROLS", (exitA.must1 | EXIT.HOST_ADDR_SPACE_SIZE) >>> 0);
  s.set("VM_ENTRY_CONTROLS", (entryA.must1 | (mode === "long" ? ENTRY.IA32E_MODE_GUEST : 0) | (loadEfer ? ENTRY.LOAD_IA32_EFER : 0)) >>> 0);
  // Host: 64-bit Linux-like.
  s.set("HOST_CR0", (0x8005_0033n | caps.msrs.IA32_VMX_CR0_FIXED0) & caps.msrs.IA32_VMX_CR0_FIXED1);
  s.set("HOST_CR3", 0x10_0000n);
  s.set("HOST_CR4", (0x20a0n | caps.msrs.IA32_VMX_CR4_FIXED0) & caps.msrs.IA32_VMX_CR4_FIXED1);
  s.set("HOST_CS_SELECTOR", 0x10);
  s.set("HOST_SS_SELECTOR", 0x18);
  s.set("HOST_TR_SELECTOR", 0x40);
  s.set("HOST_RIP", 0xffff_ffff_8100_0000n);
  s.set("HOST_RSP", 0xffff_c900_0000_8000n);
  s.set("HOST_GDTR_BASE", 0xffff_fe00_0000_1000n);
  s.set("HOST_IDTR_BASE", 0xffff_fe00_0000_0000n);
  s.set("HOST_TR_BASE", 0xffff_fe00_0000_3000n);
  // Guest.
  const fixed0 = caps.msrs.IA32_VMX_CR0_FIXED0;
  const cr4Fixed0 = caps.msrs.IA32_VMX_CR4_FIXED0;
  if (mode === "real") {
    s.set("GUEST_CR0", (0x30n | fixed0) & ~0x8000_0001n);
    s.set("GUEST_CR4", cr4Fixed0);
    s.set("GUEST_CS_SELECTOR", 0xf000);
    s.set("GUEST_CS_BASE", 0xf0000n);
    s.set("GUEST_CS_LIMIT", 0xffff);
    s.set("GUEST_CS_AR_BYTES", 0x9b);
    for (const r of ["SS", "DS", "ES", "FS", "GS"]) {
      s.set(`GUEST_${r}_LIMIT`, 0xffff);
      s.set(`GUEST_${r}_AR_BYTES`, 0x93);
    }
    s.set("GUEST_TR_LIMIT", 0xffff);
    s.set("GUEST_TR_AR_BYTES", 0x8b);
    s.set("GUEST_RIP", 0xfff0n);
    s.set("GUEST_GDTR_LIMIT", 0xffff);
    s.set("GUEST_IDTR_LIMIT", 0x3ff);
    s.set("GUEST_IA32_EFER", 0n);
  } else {
    const long = mode === "long";
    s.set("GUEST_CR0", 0x8000_0031n | fixed0);
    s.set("GUEST_CR3", 0x2000n);
    s.set("GUEST_CR4", (long ? 0x20n : 0n) | cr4Fixed0);
    s.set("GUEST_CS_SELECTOR", 0x08);
    s.set("GUEST_CS_LIMIT", 0xffff_ffff);
    s.set("GUEST_CS_AR_BYTES", long ? 0xa09b : 0xc09b);
    for (const r of ["SS", "DS", "ES", "FS", "GS"]) {
      s.set(`GUEST_${r}_SELECTOR`, 0x10);
      s.set(`GUEST_${r}_LIMIT`, 0xffff_ffff);
      s.set(`GUEST_${r}_AR_BYTES`, 0xc093);
    }
    s.set("GUEST_TR_SELECTOR", 0x18);
    s.set("GUEST_TR_LIMIT", 0x67);
    s.set("GUEST_TR_AR_BYTES", 0x8b);
    s.set("GUEST_GDTR_BASE", 0x1000n);
    s.set("GUEST_GDTR_LIMIT", 0x27);
    s.set("GUEST_RIP", 0x10_0000n);
    s.set("GUEST_RSP", 0x8000n);
    s.set("GUEST_IA32_EFER", long ? 0x500n : 0n);
  }
  s.set("GUEST_LDTR_AR_BYTES", 0x1_0000);
  s.set("GUEST_RFLAGS", 0x2n);
  s.set("GUEST_DR7", 0x400n);
  s.set("GUEST_IA32_PAT", 0x0007_0406_0007_0406n);
  s.set("HOST_IA32_PAT", 0x0007_0406_0007_0406n);
  s.set("VMCS_LINK_POINTER", 0xffff_ffff_ffff_ffffn);
  s.set("GUEST_ACTIVITY_STATE", 0);
  s.set("GUEST_INTERRUPTIBILITY_INFO", 0);
  s.set("GUEST_PENDING_DBG_EXCEPTIONS", 0n);
  return s;
}
