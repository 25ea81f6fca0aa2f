export { bundledHelloPath, VmmBuilder } from "./builder.js";
export { type CliIo, main } from "./cli.js";
export { loadVmConfig, parseVmConfig, type VmConfig, type VmConfigInput, VmConfigSchema } from "./config.js";
export { VmmError, type VmmErrorCode } from "./errors.js";
export { type BootOptions, type BootPlan, bootKernel, detectFormat, eptPageTables, type KernelFormat, realModeState, TSVMM_NOTE, TsvmmBootMode } from "./kernel.js";
export { EXIT_STATUS, type StopReason, Vmm, type VmmOptions, type VmmResult, type WatchdogOptions } from "./vmm.js";
