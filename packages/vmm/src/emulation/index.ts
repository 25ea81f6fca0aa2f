export { deliverByHand } from "./deliver.js";
export { type IdtGate64, IdtGate64Layout, type SegmentDescriptor, SegmentDescriptorLayout, type Tss64, Tss64Layout } from "./descriptors.js";
export { EmulationError, type EmulationErrorCode } from "./errors.js";
export { type HostEmulationFacts, isLinuxImage, LINUX_ON_EMULATING_HOST, linuxEmulationCmdline, probeHostEmulation } from "./host-probe.js";
export { DEFAULT_DELIVERY, type DeliveryPath, type DeliveryPolicy, KvmCpu, segmentState } from "./kvm-cpu.js";
export { type FixupResult, SyscallFixup } from "./syscall-fixup.js";
export { type EmulationOptions, type EmulationResult, EmulationStats, VcpuEmulation, xsaveLayoutFromCpuid } from "./vcpu-emulation.js";
