import { TsvmmError } from "@tsvmm/abi";

export type SnapshotErrorCode =
  /** The directory, or one of its files, is missing or unreadable. */
  | "SNAPSHOT_NOT_FOUND"
  /** The header is not a tsvmm snapshot header (bad magic, not JSON, fields missing). */
  | "SNAPSHOT_BAD_HEADER"
  /** A format version this tsvmm does not read. */
  | "SNAPSHOT_VERSION"
  /** A file is shorter (or longer) than the header says. */
  | "SNAPSHOT_TRUNCATED"
  /** A file's (or the header's own) SHA-256 does not match the header. */
  | "SNAPSHOT_CHECKSUM"
  /** The state file passes its checksum but does not describe a VM this tsvmm can build. */
  | "SNAPSHOT_BAD_STATE"
  /** This host's CPU or KVM lacks something the saved guest relies on (the message names it). */
  | "SNAPSHOT_HOST_MISMATCH"
  /** A device of the VM has no saveState/restoreState, or its state was refused. */
  | "SNAPSHOT_DEVICE"
  /** Writing the snapshot failed (disk full, permissions); nothing that looks valid was left. */
  | "SNAPSHOT_WRITE_FAILED"
  /** The destination exists already. */
  | "SNAPSHOT_EXISTS"
  /** KVM refused part of the saved state while restoring (the VM was released). */
  | "SNAPSHOT_RESTORE_FAILED"
  /** The VM is in no state to be saved (stopped, or closed). */
  | "SNAPSHOT_VM_STATE";

export class SnapshotError extends TsvmmError<SnapshotErrorCode> {}
