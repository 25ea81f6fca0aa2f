export type {
  AccessContext,
  BusEntry,
  BusObserver,
  BusOptions,
  DefaultHandler,
  Device,
  IoInterceptPolicy,
  PioBusOptions,
  RegisterTarget,
  UnclaimedAccess,
  UnclaimedReason,
} from "./bus.js";
export { accessContext, fillDefaultHandler, MmioBus, PioBus } from "./bus.js";
export type { CmosRtcOptions, CmosRtcState } from "./cmos-rtc.js";
export { CMOS_PORT, CMOS_SIZE, CmosRtc } from "./cmos-rtc.js";
export type { DebugExitConvention, DebugExitOptions, DebugExitState } from "./debug-exit.js";
export { DEBUG_EXIT_PORT, DEBUG_EXIT_SIZE, DebugExit } from "./debug-exit.js";
export type { BusErrorCode, DeviceErrorCode, TraceErrorCode } from "./errors.js";
export {
  BusError,
  BusOverlapError,
  DeviceError,
  DeviceFaultError,
  TraceError,
} from "./errors.js";
export type { FwCfgOptions, FwCfgState } from "./fw-cfg.js";
export {
  FW_CFG_ID,
  FW_CFG_MAX_CPUS,
  FW_CFG_NB_CPUS,
  FW_CFG_PORT,
  FW_CFG_RAM_SIZE,
  FW_CFG_SIGNATURE,
  FW_CFG_SIZE,
  FwCfg,
} from "./fw-cfg.js";
export type { HypercallHost, HypercallOutcome, HypercallState } from "./hypercall.js";
export { HYPERCALL_PORT, HYPERCALL_SIZE, HypercallDevice } from "./hypercall.js";
export type { I8042Options, I8042State } from "./i8042.js";
export { I8042, I8042_COMMAND_PORT, I8042_DATA_PORT } from "./i8042.js";
export type { PcTestDevOptions, PcTestDevState } from "./pc-testdev.js";
export {
  PC_TESTDEV_FLUSH_PORT,
  PC_TESTDEV_FLUSH_SIZE,
  PC_TESTDEV_IO_PORT,
  PC_TESTDEV_IO_SIZE,
  PC_TESTDEV_IRQ_LINES,
  PC_TESTDEV_IRQ_PORT,
  PcTestDev,
} from "./pc-testdev.js";
export type { PcTestDevIomemState } from "./pc-testdev-iomem.js";
export { PC_TESTDEV_IOMEM_BASE, PC_TESTDEV_IOMEM_SIZE, PcTestDevIomem } from "./pc-testdev-iomem.js";
export type { PmDeviceOptions, PmDeviceState } from "./pm.js";
export {
  PM_CONTROL_SIZE,
  PM_DEFAULT_PORTS,
  PM_EVENT_SIZE,
  PM_TIMER_FREQUENCY_HZ,
  PM_TIMER_SIZE,
  PM1_CNT_SCI_EN,
  PM1_CNT_SLP_EN,
  PM1_CNT_SLP_TYP_MASK,
  PM1_CNT_SLP_TYP_SHIFT,
  PM1_STS_TMR,
  PM1_STS_WAK,
  PmDevice,
} from "./pm.js";
export type { Port92Options, Port92State } from "./port92.js";
export { PORT92, PORT92_A20, PORT92_RESET, PORT92_SIZE, Port92 } from "./port92.js";
export { POST_PORT, PostCodePort, type PostCodeState } from "./post.js";
export { isStateful, type JsonValue, type Stateful, stateCheck } from "./stateful.js";
export type {
  ReplayBuses,
  ReplayDivergence,
  ReplayRead,
  ReplayResult,
  TraceAccessEvent,
  TraceDirection,
  TraceEvent,
  TraceHeaderEvent,
  TraceInputEvent,
  TraceOtherEvent,
  TraceRecorderOptions,
  TraceSink,
} from "./trace.js";
export { parseTraceLine, replay, TRACE_VERSION, TraceRecorder } from "./trace.js";
export type { ModemInputs, Uart16550Options, Uart16550State, UartOutput } from "./uart16550.js";
export { UART_PARTIAL_LINE_MS, Uart16550 } from "./uart16550.js";
