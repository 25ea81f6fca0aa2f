export { API_MAX_LINE, API_OPS, ApiClient, ApiError, type ApiErrorCode, type ApiOp, type ApiRequest, type ApiResponse, ApiServer, type ApiStatus } from "./api/index.js";
export { assemble, type BootOverride, BUILD_STEPS, type ConsoleSink, type ConsoleSource, type ExtraSlot, type PrepareContext, type VmmSpec, type VmmVcpuWorkerOptions } from "./assemble.js";
export { bundledHelloPath, VmmBuilder } from "./builder.js";
export { type CliIo, main } from "./cli.js";
export { loadVmConfig, parseVmConfig, VM_LIMITS, type VmConfig, type VmConfigInput } from "./config.js";
export {
  attachGdb, checkGdbAddress, type DebugExitView, type GdbAttachment, type GdbOptions, GdbTargetError, type GdbTargetErrorCode, type GuestDebugSupport,
  KvmDebugTarget, type KvmDebugTargetOptions, LinearTranslator, type PagingMode, type PagingState, pagingMode, planLinear, probeGuestDebug, readLinear, type VcpuDebugHook,
} from "./debug/index.js";
export {
  DEFAULT_DELIVERY, type DeliveryPath, type DeliveryPolicy, EmulationError, type EmulationErrorCode, type EmulationOptions, EmulationStats, KvmCpu,
  LINUX_ON_EMULATING_HOST, linuxEmulationCmdline, probeHostEmulation, SyscallFixup, VcpuEmulation,
} from "./emulation/index.js";
export { VmmBuildError, type VmmBuildErrorCode, type VmmBuildStep, VmmError, type VmmErrorCode } from "./errors.js";
export { busyboxInitramfs, type CpioEntry, type InitramfsFile, newcArchive } from "./initramfs.js";
export { type BootOptions, type BootPlan, bootKernel, detectFormat, eptPageTables, type KernelFormat, TSVMM_NOTE, TsvmmBootMode } from "./kernel.js";
export { PauseGate } from "./pause.js";
export {
  ACPI_TABLES_ADDRESS, acpiPlatformFor, FIRMWARE_PM_DEFAULTS, type FirmwareOptions, type FirmwarePlan, type FirmwarePlatformDevice, IOAPIC_ADDRESS, IOAPIC_ID,
  MP_TABLE_ADDRESS, planFirmware, type VirtioMmioPlatformDevice, writeFirmware,
} from "./platform.js";
export {
  checkSnapshot, compatibilityProblems, type DeviceStateRecord, decodeValue, type Encoded, encodeValue, findDevices, HEADER_FILE, type HostInfo, hostFingerprint,
  hostInfo, MEMORY_FILE, nonZeroRuns, type PreparedRestore, prepareChecked, prepareRestore, RESTORE_CAPS, type RestoreOptions, readHeader, restoreChecked, restoreSnapshot, type SlotState, SNAPSHOT_FORMAT_VERSION,
  SNAPSHOT_MAGIC, type SnapshotCheck, SnapshotError, type SnapshotErrorCode, type SnapshotHeader, type SnapshotInfo, type SnapshotOptions, type SnapshotState,
  STATE_FILE, saveSnapshot, serializeHeader, type VcpuState, type VmState,
} from "./snapshot/index.js";
export { type AttachedVirtio, attachVirtio, VIRTIO_GSI_BASE, VIRTIO_MAX_DEVICES, VIRTIO_MMIO_BASE, type VirtioDeviceSpec, virtioCmdline, virtioSlot } from "./virtio.js";
export { type CpuidRecord, EXIT_STATUS, type MsrHandler, type StopDetail, type StopReason, Vmm, type VmmParts, type VmmResult } from "./vmm.js";
export { longTimeout, MAX_TIMER_MS, Watchdog, type WatchdogHooks, type WatchdogOptions } from "./watchdog.js";
