import { type FeatureBit, registerBits } from "./define.js";

// KVM paravirtual features, CPUID.40000001H (relative to the KVM signature leaf):
// include/uapi/asm/kvm_para.h KVM_FEATURE_* (EAX) and KVM_HINTS_* (EDX).
export const KVM_FEATURES: readonly FeatureBit[] = [
  ...registerBits(0x40000001, 0, "eax", {
    0: "kvm_clocksource",
    1: "kvm_nop_io_delay",
    2: "kvm_mmu_op",
    3: "kvm_clocksource2",
    4: "kvm_async_pf",
    5: "kvm_steal_time",
    6: "kvm_pv_eoi",
    7: "kvm_pv_unhalt",
    9: "kvm_pv_tlb_flush",
    10: "kvm_async_pf_vmexit",
    11: "kvm_pv_send_ipi",
    12: "kvm_poll_control",
    13: "kvm_pv_sched_yield",
    14: "kvm_async_pf_int",
    15: "kvm_msi_ext_dest_id",
    16: "kvm_hc_map_gpa_range",
    17: "kvm_migration_control",
    24: "kvm_clocksource_stable_bit",
  }),
  ...registerBits(0x40000001, 0, "edx", {
    0: "kvm_hints_realtime",
  }),
];
