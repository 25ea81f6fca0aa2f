import {
  KvmClearDirtyLogLayout, KvmClockDataLayout, KvmCoalescedMmioZoneLayout, KvmCpuid2Layout, KvmDebugregsLayout, KvmDirtyLogLayout,
  KvmEnableCapLayout, KvmFpuLayout, KvmGuestDebugLayout, KvmInterruptLayout, KvmIoeventfdLayout, KvmIrqchipLayout,
  KvmIrqfdLayout, KvmIrqLevelLayout, KvmIrqRoutingLayout, KvmLapicStateLayout, KvmMpStateLayout, KvmMsiLayout, KvmMsrFilterLayout, KvmMsrListLayout,
  KvmMsrsLayout, KvmPitConfigLayout, KvmPitState2Layout, KvmRegsLayout, KvmSregsLayout, KvmUserspaceMemoryRegionLayout,
  KvmVcpuEventsLayout, KvmXcrsLayout, KvmXsaveLayout,
} from "./structs.js";

// asm-generic/ioctl.h: nr in bits 0-7, type 8-15, size 16-29, direction 30-31.
export const IOC_NONE = 0;
export const IOC_WRITE = 1;
export const IOC_READ = 2;
export function ioc(dir: number, type: number, nr: number, size: number): number {
  return ((dir << 30) | (size << 16) | (type << 8) | nr) >>> 0;
}
export const io = (type: number, nr: number): number => ioc(IOC_NONE, type, nr, 0);
export const ior = (type: number, nr: number, size: number): number => ioc(IOC_READ, type, nr, size);
export const iow = (type: number, nr: number, size: number): number => ioc(IOC_WRITE, type, nr, size);
export const iowr = (type: number, nr: number, size: number): number => ioc(IOC_READ | IOC_WRITE, type, nr, size);

export const KVMIO = 0xae;

/** Every ioctl kvm-backend issues, by kernel name. Sizes come from the layouts, never by hand. */
export const KVM_IOCTLS = {
  // system (/dev/kvm)
  KVM_GET_API_VERSION: io(KVMIO, 0x00),
  KVM_CREATE_VM: io(KVMIO, 0x01),
  KVM_GET_MSR_INDEX_LIST: iowr(KVMIO, 0x02, KvmMsrListLayout.size),
  KVM_CHECK_EXTENSION: io(KVMIO, 0x03),
  KVM_GET_VCPU_MMAP_SIZE: io(KVMIO, 0x04),
  KVM_GET_SUPPORTED_CPUID: iowr(KVMIO, 0x05, KvmCpuid2Layout.size),
  KVM_GET_EMULATED_CPUID: iowr(KVMIO, 0x09, KvmCpuid2Layout.size),
  KVM_GET_MSR_FEATURE_INDEX_LIST: iowr(KVMIO, 0x0a, KvmMsrListLayout.size),
  // VM
  KVM_CREATE_VCPU: io(KVMIO, 0x41),
  KVM_GET_DIRTY_LOG: iow(KVMIO, 0x42, KvmDirtyLogLayout.size),
  KVM_SET_NR_MMU_PAGES: io(KVMIO, 0x44),
  KVM_SET_USER_MEMORY_REGION: iow(KVMIO, 0x46, KvmUserspaceMemoryRegionLayout.size),
  KVM_SET_TSS_ADDR: io(KVMIO, 0x47),
  KVM_SET_IDENTITY_MAP_ADDR: iow(KVMIO, 0x48, 8),
  KVM_CREATE_IRQCHIP: io(KVMIO, 0x60),
  KVM_IRQ_LINE: iow(KVMIO, 0x61, KvmIrqLevelLayout.size),
  KVM_GET_IRQCHIP: iowr(KVMIO, 0x62, KvmIrqchipLayout.size),
  KVM_SET_IRQCHIP: ior(KVMIO, 0x63, KvmIrqchipLayout.size),
  KVM_IRQ_LINE_STATUS: iowr(KVMIO, 0x67, KvmIrqLevelLayout.size),
  KVM_SET_GSI_ROUTING: iow(KVMIO, 0x6a, KvmIrqRoutingLayout.size),
  KVM_IRQFD: iow(KVMIO, 0x76, KvmIrqfdLayout.size),
  KVM_CREATE_PIT2: iow(KVMIO, 0x77, KvmPitConfigLayout.size),
  KVM_IOEVENTFD: iow(KVMIO, 0x79, KvmIoeventfdLayout.size),
  KVM_REGISTER_COALESCED_MMIO: iow(KVMIO, 0x67, KvmCoalescedMmioZoneLayout.size),
  KVM_UNREGISTER_COALESCED_MMIO: iow(KVMIO, 0x68, KvmCoalescedMmioZoneLayout.size),
  KVM_SET_CLOCK: iow(KVMIO, 0x7b, KvmClockDataLayout.size),
  KVM_GET_CLOCK: ior(KVMIO, 0x7c, KvmClockDataLayout.size),
  KVM_GET_PIT2: ior(KVMIO, 0x9f, KvmPitState2Layout.size),
  KVM_SET_PIT2: iow(KVMIO, 0xa0, KvmPitState2Layout.size),
  KVM_SIGNAL_MSI: iow(KVMIO, 0xa5, KvmMsiLayout.size),
  KVM_ENABLE_CAP: iow(KVMIO, 0xa3, KvmEnableCapLayout.size),
  KVM_CLEAR_DIRTY_LOG: iowr(KVMIO, 0xc0, KvmClearDirtyLogLayout.size),
  KVM_X86_SET_MSR_FILTER: iow(KVMIO, 0xc6, KvmMsrFilterLayout.size),
  KVM_RESET_DIRTY_RINGS: io(KVMIO, 0xc7),
  // vCPU
  KVM_RUN: io(KVMIO, 0x80),
  KVM_GET_REGS: ior(KVMIO, 0x81, KvmRegsLayout.size),
  KVM_SET_REGS: iow(KVMIO, 0x82, KvmRegsLayout.size),
  KVM_GET_SREGS: ior(KVMIO, 0x83, KvmSregsLayout.size),
  KVM_SET_SREGS: iow(KVMIO, 0x84, KvmSregsLayout.size),
  KVM_INTERRUPT: iow(KVMIO, 0x86, KvmInterruptLayout.size),
  KVM_GET_MSRS: iowr(KVMIO, 0x88, KvmMsrsLayout.size),
  KVM_SET_MSRS: iow(KVMIO, 0x89, KvmMsrsLayout.size),
  KVM_GET_FPU: ior(KVMIO, 0x8c, KvmFpuLayout.size),
  KVM_SET_FPU: iow(KVMIO, 0x8d, KvmFpuLayout.size),
  KVM_GET_LAPIC: ior(KVMIO, 0x8e, KvmLapicStateLayout.size),
  KVM_SET_LAPIC: iow(KVMIO, 0x8f, KvmLapicStateLayout.size),
  KVM_SET_CPUID2: iow(KVMIO, 0x90, KvmCpuid2Layout.size),
  KVM_GET_CPUID2: iowr(KVMIO, 0x91, KvmCpuid2Layout.size),
  KVM_GET_MP_STATE: ior(KVMIO, 0x98, KvmMpStateLayout.size),
  KVM_SET_MP_STATE: iow(KVMIO, 0x99, KvmMpStateLayout.size),
  KVM_NMI: io(KVMIO, 0x9a),
  KVM_SET_GUEST_DEBUG: iow(KVMIO, 0x9b, KvmGuestDebugLayout.size),
  KVM_GET_VCPU_EVENTS: ior(KVMIO, 0x9f, KvmVcpuEventsLayout.size),
  KVM_SET_VCPU_EVENTS: iow(KVMIO, 0xa0, KvmVcpuEventsLayout.size),
  KVM_GET_DEBUGREGS: ior(KVMIO, 0xa1, KvmDebugregsLayout.size),
  KVM_SET_DEBUGREGS: iow(KVMIO, 0xa2, KvmDebugregsLayout.size),
  KVM_SET_TSC_KHZ: io(KVMIO, 0xa2),
  KVM_GET_TSC_KHZ: io(KVMIO, 0xa3),
  KVM_GET_XSAVE: ior(KVMIO, 0xa4, KvmXsaveLayout.size),
  KVM_SET_XSAVE: iow(KVMIO, 0xa5, KvmXsaveLayout.size),
  KVM_GET_XCRS: ior(KVMIO, 0xa6, KvmXcrsLayout.size),
  KVM_SET_XCRS: iow(KVMIO, 0xa7, KvmXcrsLayout.size),
  KVM_GET_XSAVE2: ior(KVMIO, 0xcf, KvmXsaveLayout.size),
} as const;
export type KvmIoctlName = keyof typeof KVM_IOCTLS;

/** ioctl number -> name, for error messages. (Numbers are unique across the table.) */
export const KVM_IOCTL_NAMES: ReadonlyMap<number, KvmIoctlName> = new Map(
  (Object.entries(KVM_IOCTLS) as [KvmIoctlName, number][]).map(([k, v]) => [v, k]),
);
