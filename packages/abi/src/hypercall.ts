import { array, defineStruct, type StructLayout, s64, u16, u32, u64 } from "./layout.js";

/**
 * tsvmm hypercall ABI, version 1. The normative text is the "Hypercall ABI v1" section of this
 * package's README; these constants are its machine-readable form.
 *
 * A guest fills a 48-byte request block in its own memory and writes the block's guest-physical
 * address with a 32-bit OUT to HC_PORT. The VMM handles the call before the OUT retires and
 * stores the result in the block. A 32-bit IN from HC_PORT returns the status of the last call
 * made by that vCPU, which is the only way to learn why a block that could not be read failed.
 */
export const HC_PORT = 0x0ef0;
/** 32-bit IN returns HC_SIGNATURE ("TSVM"): lets a guest detect a tsvmm VMM before calling. */
export const HC_SIGNATURE_PORT = 0x0ef4;
export const HC_SIGNATURE = 0x4d565354;
/** "TSHC" as a little-endian u32: the first field of every request block. */
export const HC_MAGIC = 0x43485354;
export const HC_VERSION_MIN = 1;
export const HC_VERSION_MAX = 1;
/** Largest CONSOLE_WRITE in one call. */
export const HC_CONSOLE_MAX = 65536;
/** Largest REPORT / REPORT_VALUE name. */
export const HC_NAME_MAX = 256;

/** The request block, `struct tsvmm_hc` in test-kernels/lib/tsvmm.h (checked against it by a compiled test). */
export interface HcRequest {
  magic: number;
  version: number;
  call: number;
  /** Four u64 arguments. */
  arg: bigint[];
  /** Written by the VMM: >= 0 success, < 0 an {@link HcStatus} error. */
  result: bigint;
}
export const HC_ARG_COUNT = 4;
export const HcRequestLayout: StructLayout<HcRequest> = defineStruct("struct tsvmm_hc", [
  u32("magic"),
  u16("version"),
  u16("call"),
  array(u64(""), HC_ARG_COUNT, "arg"),
  s64("result"),
]);
export const HC_BLOCK_SIZE = HcRequestLayout.size;
/** The C struct is `__attribute__((aligned(8)))`; the doorbell refuses blocks that are not. */
export const HC_BLOCK_ALIGN = 8;

const argOffset = HcRequestLayout.offsetOf("arg");
/** Byte offsets of the request block's fields, derived from {@link HcRequestLayout}. */
export const HcBlock = {
  magic: HcRequestLayout.offsetOf("magic"),
  version: HcRequestLayout.offsetOf("version"),
  call: HcRequestLayout.offsetOf("call"),
  arg0: argOffset,
  arg1: argOffset + 8,
  arg2: argOffset + 16,
  arg3: argOffset + 24,
  result: HcRequestLayout.offsetOf("result"),
} as const;

export const HcCall = {
  VERSION: 0,
  CONSOLE_WRITE: 1,
  REPORT: 2,
  EXIT: 3,
  REPORT_VALUE: 4,
} as const;
export type HcCall = (typeof HcCall)[keyof typeof HcCall];

/** Results below zero are errors; values are part of the ABI and never change meaning. */
export const HcStatus = {
  OK: 0,
  /** Unknown call number. */
  E_NOSYS: -1,
  /** The block's version is not one the VMM speaks, or VERSION found no common version. */
  E_VERSION: -2,
  /** An argument names guest memory that does not exist. */
  E_FAULT: -3,
  /** An argument is out of its documented range. */
  E_INVAL: -4,
  /** The block address is misaligned, outside guest memory, or the magic is wrong. Only visible through IN. */
  E_BADBLOCK: -5,
  /** HC_PORT was accessed with a size other than 4 bytes. */
  E_ACCESS: -6,
} as const;
export type HcStatus = (typeof HcStatus)[keyof typeof HcStatus];

export const HC_STATUS_NAMES: Readonly<Record<number, string>> = Object.freeze(
  Object.fromEntries(Object.entries(HcStatus).map(([k, v]) => [v, k])),
);
