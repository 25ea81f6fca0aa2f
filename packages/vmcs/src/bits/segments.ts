import { accessFromVmxAr, SEGMENT_TYPE, type SegmentAccess, VMX_AR, vmxArFromAccess } from "@tsvmm/abi";

// The segment model and its VMCS access-rights encoding live in @tsvmm/abi, beside the SVM and
// kvm_segment encodings of the same segment; these are their names in this package.

/** Segment access-rights format of the guest AR-byte fields (SDM Vol. 3C Table 24-2 / 25-2). */
export const AR = VMX_AR;

/** Segment/system descriptor types used by the checks. */
export const SEG_TYPE = SEGMENT_TYPE;

export type AccessRights = SegmentAccess;

/** Pack access-rights fields into the 32-bit VMCS AR format. */
export const packAr: (a: AccessRights) => number = vmxArFromAccess;

/** Unpack the 32-bit VMCS AR format (reserved bits are ignored). */
export const unpackAr: (ar: number) => AccessRights = accessFromVmxAr;
