export { VmmBuilder, bundledHelloPath } from "./builder.js";
export { Vmm, EXIT_STATUS, type StopReason, type VmmResult, type VmmOptions, type WatchdogOptions } from "./vmm.js";
export { VmConfigSchema, type VmConfig, type VmConfigInput, loadVmConfig, parseVmConfig } from "./config.js";
export { bootKernel, detectFormat, eptPageTables, realModeState, TSVMM_NOTE, TsvmmBootMode, type BootPlan, type BootOptions, type KernelFormat } from "./kernel.js";
export { VmmError, type VmmErrorCode } from "./errors.js";
export { main, type CliIo } from "./cli.js";
