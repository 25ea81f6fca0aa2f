import { TsvmmError } from "./errors.js";
import type { GuestMemory } from "./guest-memory.js";
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

/** What the VMM does on behalf of the guest. Every method may be left out; the call then still succeeds. */
export interface HypercallHost {
  console?(bytes: Buffer): void;
  report?(name: string, pass: boolean): void;
  value?(name: string, value: bigint): void;
  exit?(code: number): void;
}

/** What one doorbell write did. `exitCode` is set when the guest asked to stop. */
export interface HypercallOutcome {
  readonly status: number;
  readonly call: number | undefined;
  readonly exitCode: number | undefined;
}

export class HypercallError extends TsvmmError<"HYPERCALL_PROTOCOL"> {}

/**
 * Executes hypercalls against a GuestMemory. Pure: it never throws on guest input; every bad
 * argument becomes a status code written back to the guest. One dispatcher per vCPU keeps that
 * vCPU's "last status".
 */
export class HypercallDispatcher {
  private lastStatus: number = HcStatus.OK;
  private readonly decoder = new TextDecoder("utf-8", { fatal: false });

  constructor(
    private readonly memory: GuestMemory,
    private readonly host: HypercallHost,
  ) {}

  /** Status of the last call, as the guest reads it with a 32-bit IN from HC_PORT. */
  get status(): number {
    return this.lastStatus;
  }

  /** Handle an OUT to HC_PORT with `size` bytes of `value`. */
  doorbell(value: number, size: number): HypercallOutcome {
    if (size !== 4) return this.finish(HcStatus.E_ACCESS, undefined, undefined);
    const gpa = value >>> 0;
    if (gpa % HC_BLOCK_ALIGN !== 0 || !this.memory.contains(gpa, HC_BLOCK_SIZE)) {
      return this.finish(HcStatus.E_BADBLOCK, undefined, undefined);
    }
    const { magic, version, call, arg } = this.memory.readObj(HcRequestLayout, gpa);
    if (magic !== HC_MAGIC) return this.finish(HcStatus.E_BADBLOCK, undefined, undefined);
    const [a0 = 0n, a1 = 0n, a2 = 0n] = arg;
    let status: number;
    let exitCode: number | undefined;
    if (call === HcCall.VERSION) {
      // Negotiation is accepted whatever version the block carries: that is its purpose.
      status = a0 >= BigInt(HC_VERSION_MIN) ? Number(a0 < BigInt(HC_VERSION_MAX) ? a0 : BigInt(HC_VERSION_MAX)) : HcStatus.E_VERSION;
    } else if (version < HC_VERSION_MIN || version > HC_VERSION_MAX) {
      status = HcStatus.E_VERSION;
    } else {
      switch (call) {
        case HcCall.CONSOLE_WRITE: {
          if (a1 > BigInt(HC_CONSOLE_MAX)) {
            status = HcStatus.E_INVAL;
            break;
          }
          const bytes = this.guestBytes(a0, Number(a1));
          if (bytes === undefined) {
            status = HcStatus.E_FAULT;
            break;
          }
          this.host.console?.(bytes);
          status = bytes.length;
          break;
        }
        case HcCall.REPORT:
        case HcCall.REPORT_VALUE: {
          if (a1 > BigInt(HC_NAME_MAX) || (call === HcCall.REPORT && a2 > 1n)) {
            status = HcStatus.E_INVAL;
            break;
          }
          const bytes = this.guestBytes(a0, Number(a1));
          if (bytes === undefined) {
            status = HcStatus.E_FAULT;
            break;
          }
          const name = this.decoder.decode(bytes);
          if (call === HcCall.REPORT) this.host.report?.(name, a2 === 1n);
          else this.host.value?.(name, a2);
          status = HcStatus.OK;
          break;
        }
        case HcCall.EXIT: {
          if (a0 > 255n) {
            status = HcStatus.E_INVAL;
            break;
          }
          exitCode = Number(a0);
          this.host.exit?.(exitCode);
          status = HcStatus.OK;
          break;
        }
        default:
          status = HcStatus.E_NOSYS;
      }
    }
    // Only `result` is stored: the guest's own fields are never rewritten.
    this.memory.writeU64(gpa + HcBlock.result, BigInt.asUintN(64, BigInt(status)));
    return this.finish(status, call, exitCode);
  }

  /** Handle an IN from HC_PORT or HC_SIGNATURE_PORT; returns the value the guest receives. */
  read(port: number, size: number): number {
    if (size !== 4) return 0xffffffff;
    if (port === HC_SIGNATURE_PORT) return HC_SIGNATURE;
    return this.lastStatus >>> 0;
  }

  private guestBytes(gpa: bigint, length: number): Buffer | undefined {
    if (gpa > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
    const a = Number(gpa);
    if (!this.memory.contains(a, length)) return undefined;
    return Buffer.from(this.memory.slice(a, length));
  }

  private finish(status: number, call: number | undefined, exitCode: number | undefined): HypercallOutcome {
    this.lastStatus = status;
    return { status, call, exitCode };
  }
}
