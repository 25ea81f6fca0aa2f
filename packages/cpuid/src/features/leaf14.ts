import { type FeatureBit, registerBits } from "./define.js";

// CPUID.(EAX=14H, ECX=0): Intel Processor Trace enumeration, SDM Vol. 2A Table 3-8 and Vol. 3C 33.3.1.
export const LEAF14_FEATURES: readonly FeatureBit[] = [
  ...registerBits(0x14, 0, "ebx", {
    0: "pt_cr3_filtering",
    1: "pt_psb_cyc",
    2: "pt_ip_filtering",
    3: "pt_mtc",
    4: "pt_ptwrite",
    5: "pt_power_event_trace",
    6: "pt_psb_pmi_preserve",
    7: "pt_event_trace",
    8: "pt_tnt_disable",
  }),
  ...registerBits(0x14, 0, "ecx", {
    0: "pt_topa",
    1: "pt_topa_multiple_entries",
    2: "pt_single_range_output",
    3: "pt_trace_transport_output",
    31: "pt_lip",
  }),
];
