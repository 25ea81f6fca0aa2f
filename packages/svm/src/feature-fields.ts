import { INT_CTL, INTERCEPT_MISC3, NESTED_CTL, TLB_CONTROL, VIRT_EXT } from "./bits.js";
import { hasFeature, type SvmCaps, type SvmFeature } from "./caps.js";
import type { VmcbState } from "./state.js";

/**
 * VMCB fields (or bits of them) that exist only with a CPUID Fn8000_000A_EDX feature. VMRUN does
 * not fail on them (the APM makes them reserved/ignored without the feature), so they are not
 * consistency checks; featureGaps() reports where a VMCB relies on a feature the CPU lacks.
 */
export interface FeatureField {
  field: string;
  /** Bits of the field that need the feature (all bits when absent). */
  mask?: bigint;
  feature: SvmFeature;
}

export const FEATURE_FIELDS: readonly FeatureField[] = [
  { field: "control.vmcbClean", feature: "VmcbClean" },
  { field: "control.pauseFilterCount", feature: "PauseFilter" },
  { field: "control.pauseFilterThreshold", feature: "PauseFilterThreshold" },
  { field: "control.intCtl", mask: BigInt(INT_CTL.AVIC_ENABLE), feature: "AVIC" },
  { field: "control.intCtl", mask: BigInt(INT_CTL.X2AVIC_ENABLE), feature: "x2AVIC" },
  { field: "control.intCtl", mask: BigInt(INT_CTL.V_GIF_ENABLE | INT_CTL.VGIF), feature: "VGIF" },
  { field: "control.intCtl", mask: BigInt(INT_CTL.V_NMI_ENABLE | INT_CTL.V_NMI_PENDING | INT_CTL.V_NMI_BLOCKING), feature: "VNMI" },
  { field: "control.avicApicBar", feature: "AVIC" },
  { field: "control.avicBackingPage", feature: "AVIC" },
  { field: "control.avicLogicalTable", feature: "AVIC" },
  { field: "control.avicPhysicalTable", feature: "AVIC" },
  { field: "control.virtExt", mask: VIRT_EXT.LBR_VIRTUALIZATION, feature: "LbrVirt" },
  { field: "control.virtExt", mask: VIRT_EXT.VIRTUAL_VMLOAD_VMSAVE, feature: "VMSAVEvirt" },
  { field: "control.virtExt", mask: VIRT_EXT.VIRTUAL_IBS, feature: "IbsVirt" },
  { field: "control.nestedCtl", mask: NESTED_CTL.GMET, feature: "GMET" },
  { field: "control.nestedCtl", mask: NESTED_CTL.SSS_CHECK, feature: "SSSCheck" },
  { field: "control.interceptMisc3", mask: BigInt(INTERCEPT_MISC3.BUS_LOCK), feature: "BusLockThreshold" },
  { field: "control.interceptMisc3", mask: BigInt(INTERCEPT_MISC3.IDLE_HLT), feature: "IdleHltIntercept" },
  { field: "control.busLockCounter", feature: "BusLockThreshold" },
  { field: "save.specCtrl", feature: "SpecCtrl" },
];

export interface FeatureGap {
  field: string;
  feature: SvmFeature;
  message: string;
}

/** Fields this VMCB sets that the CPU in `caps` does not implement (the CPU ignores them). */
export function featureGaps(vmcb: VmcbState, caps: SvmCaps): FeatureGap[] {
  const out: FeatureGap[] = [];
  for (const f of FEATURE_FIELDS) {
    const v = vmcb.get(f.field) & (f.mask ?? ~0n);
    if (v !== 0n && !hasFeature(caps, f.feature)) out.push({ field: f.field, feature: f.feature, message: `${f.field} bits 0x${v.toString(16)} need CPUID Fn8000_000A_EDX[${f.feature}]` });
  }
  const tlb = Number(vmcb.get("control.tlbControl"));
  if ((tlb === TLB_CONTROL.FLUSH_ASID || tlb === TLB_CONTROL.FLUSH_ASID_NON_GLOBAL) && !hasFeature(caps, "FlushByAsid")) {
    out.push({ field: "control.tlbControl", feature: "FlushByAsid", message: `control.tlbControl=${tlb} needs CPUID Fn8000_000A_EDX[FlushByAsid]` });
  }
  return out;
}
