import { eptVpidCap, type VmxCaps } from "./caps.js";

/** One broken EPTP rule. */
export interface EptpViolation {
  id:
    | "CTRL.PROC2.EPTP.MEMTYPE"
    | "CTRL.PROC2.EPTP.WALK_LENGTH"
    | "CTRL.PROC2.EPTP.AD_FLAG"
    | "CTRL.PROC2.EPTP.SSS_FLAG"
    | "CTRL.PROC2.EPTP.RESERVED";
  message: string;
}

const hex = (v: bigint): string => `0x${v.toString(16)}`;

/**
 * The EPTP validity rule of SDM §26.2.1.1 (and §28.2.6 for the format), in one place so that the
 * `ept` package can apply the very same rule:
 *   bits 2:0  memory type: 0 (UC) or 6 (WB), and reported in IA32_VMX_EPT_VPID_CAP[8]/[14];
 *   bits 5:3  page-walk length − 1: 3 (needs CAP[6]) or 4 (needs CAP[7], 5-level EPT);
 *   bit 6     accessed/dirty enable: needs CAP[21];
 *   bit 7     supervisor-shadow-stack enable: needs CAP[23] (CET-era SDMs; reserved before);
 *   bits 11:8 reserved; bits 63:MAXPHYADDR reserved.
 * Returns every broken rule (empty when the EPTP is valid).
 */
export function checkEptp(eptp: bigint, caps: VmxCaps): EptpViolation[] {
  const out: EptpViolation[] = [];
  const mt = Number(eptp & 7n);
  const mtOk = (mt === 0 && eptVpidCap.memTypeUc(caps)) || (mt === 6 && eptVpidCap.memTypeWb(caps));
  if (!mtOk) {
    out.push({
      id: "CTRL.PROC2.EPTP.MEMTYPE",
      message: `EPT_POINTER=${hex(eptp)}: memory type ${mt} is not ${mt === 0 || mt === 6 ? "supported by IA32_VMX_EPT_VPID_CAP" : "UC (0) or WB (6)"}`,
    });
  }
  const walk = Number((eptp >> 3n) & 7n) + 1;
  if (!((walk === 4 && eptVpidCap.walk4(caps)) || (walk === 5 && eptVpidCap.walk5(caps)))) {
    out.push({ id: "CTRL.PROC2.EPTP.WALK_LENGTH", message: `EPT_POINTER=${hex(eptp)}: page-walk length ${walk} is not supported` });
  }
  if (eptp & (1n << 6n) && !eptVpidCap.accessedDirty(caps)) {
    out.push({ id: "CTRL.PROC2.EPTP.AD_FLAG", message: `EPT_POINTER=${hex(eptp)}: bit 6 (A/D enable) set but A/D flags are not supported` });
  }
  if (eptp & (1n << 7n) && !eptVpidCap.supervisorShadowStack(caps)) {
    out.push({ id: "CTRL.PROC2.EPTP.SSS_FLAG", message: `EPT_POINTER=${hex(eptp)}: bit 7 (supervisor shadow stack) set but not supported` });
  }
  const maxPhys = BigInt(caps.cpu.maxPhysAddr);
  if (eptp & 0xf00n || eptp >> maxPhys !== 0n) {
    out.push({
      id: "CTRL.PROC2.EPTP.RESERVED",
      message: `EPT_POINTER=${hex(eptp)}: reserved bits 11:8 or bits above MAXPHYADDR (${caps.cpu.maxPhysAddr}) set`,
    });
  }
  return out;
}
