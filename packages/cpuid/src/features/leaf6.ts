import { type FeatureBit, registerBits } from "./define.js";

// CPUID.06H (thermal and power management): SDM Vol. 2A Table 3-8. ECX[15:8] is a count, not a flag.
export const LEAF6_FEATURES: readonly FeatureBit[] = [
  ...registerBits(0x6, 0, "eax", {
    0: "dtherm",
    1: "ida",
    2: "arat",
    4: "pln",
    5: "ecmd",
    6: "pts",
    7: "hwp",
    8: "hwp_notify",
    9: "hwp_act_window",
    10: "hwp_epp",
    11: "hwp_pkg_req",
    13: "hdc",
    14: "turbo_max_3",
    15: "hwp_highest_perf_change",
    16: "hwp_peci_override",
    17: "hwp_flexible",
    18: "hwp_fast_request",
    19: "hfi",
    20: "hwp_ignore_idle",
    23: "itd",
  }),
  ...registerBits(0x6, 0, "ecx", {
    0: "aperfmperf",
    3: "epb",
  }),
];
