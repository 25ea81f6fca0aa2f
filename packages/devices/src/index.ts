export type {
  BusEntry,
  BusObserver,
  BusOptions,
  DefaultHandler,
  Device,
  IoInterceptPolicy,
  PioBusOptions,
  UnclaimedAccess,
  UnclaimedReason,
} from "./bus.js";
export { fillDefaultHandler, MmioBus, PioBus } from "./bus.js";
export type { BusErrorCode, DeviceErrorCode, TraceErrorCode } from "./errors.js";
export {
  BusError,
  BusOverlapError,
  DeviceError,
  DeviceFaultError,
  TraceError,
} from "./errors.js";
export type { ModemInputs, Uart16550Options, UartOutput } from "./uart16550.js";
export { Uart16550 } from "./uart16550.js";
