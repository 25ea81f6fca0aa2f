import { TsvmmError } from "@tsvmm/abi";

export type GdbTargetErrorCode =
  /** No vCPU with that index. */
  | "GDB_TARGET_NO_VCPU"
  /** A guest-virtual range is not mapped (wholly) by the vCPU's page tables or not in guest RAM. */
  | "GDB_TARGET_UNMAPPED"
  /** `--gdb` address is not loopback and remote debugging was not allowed, or is not an address. */
  | "GDB_TARGET_ADDRESS";

/** A request of the debugger the KVM target cannot carry out (gdb gets an error reply). */
export class GdbTargetError extends TsvmmError<GdbTargetErrorCode> {}
