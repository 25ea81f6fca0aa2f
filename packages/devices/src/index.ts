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
