export { decodeValue, type Encoded, encodeValue } from "./codec.js";
export { findDevices } from "./devices.js";
export { SnapshotError, type SnapshotErrorCode } from "./errors.js";
export {
  HEADER_FILE, MEMORY_FILE, readHeader, SNAPSHOT_FORMAT_VERSION, SNAPSHOT_MAGIC, type SnapshotHeader, STATE_FILE, serializeHeader,
} from "./format.js";
export { compatibilityProblems, hostFingerprint, hostInfo, RESTORE_CAPS } from "./host.js";
export { nonZeroRuns } from "./memory.js";
export {
  checkSnapshot, type PreparedRestore, prepareChecked, prepareRestore, type RestoreOptions, restoreChecked, restoreSnapshot, type SnapshotCheck,
} from "./restore.js";
export { type SnapshotInfo, type SnapshotOptions, saveSnapshot } from "./save.js";
export { type SoftEventView, settleSoftEvents, softEventInFlight } from "./settle.js";
export type { DeviceStateRecord, HostInfo, SlotState, SnapshotState, VcpuState, VmState } from "./state.js";
