import { type FeatureBit, registerBits } from "./define.js";

// CPUID.(EAX=0DH): SDM Vol. 1 ch. 13 "Managing State Using the XSAVE Feature Set".
// Subleaf 0 EDX:EAX are the XCR0 bits the processor supports (prefixed xcr0_), subleaf 1 EAX the
// XSAVE instruction variants, subleaf 1 EDX:ECX the IA32_XSS bits (prefixed xss_).
export const LEAFD_FEATURES: readonly FeatureBit[] = [
  ...registerBits(0xd, 0, "eax", {
    0: "xcr0_x87",
    1: "xcr0_sse",
    2: "xcr0_avx",
    3: "xcr0_bndregs",
    4: "xcr0_bndcsr",
    5: "xcr0_opmask",
    6: "xcr0_zmm_hi256",
    7: "xcr0_hi16_zmm",
    9: "xcr0_pkru",
    17: "xcr0_xtilecfg",
    18: "xcr0_xtiledata",
  }),
  ...registerBits(0xd, 1, "eax", {
    0: "xsaveopt",
    1: "xsavec",
    2: "xgetbv1",
    3: "xsaves",
    4: "xfd",
  }),
  ...registerBits(0xd, 1, "ecx", {
    8: "xss_pt",
    10: "xss_pasid",
    11: "xss_cet_u",
    12: "xss_cet_s",
    13: "xss_hdc",
    14: "xss_uintr",
    15: "xss_lbr",
    16: "xss_hwp",
  }),
];
