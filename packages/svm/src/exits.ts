import { SvmError } from "./errors.js";

/**
 * #VMEXIT codes (AMD64 APM vol. 2 appendix C, "SVM Intercept Exit Codes"), as the 64-bit EXITCODE
 * value. Names follow the APM's VMEXIT_* names without the prefix. The negative codes are stored
 * two's-complement in EXITCODE.
 */
const BASE: Record<string, number> = {
  CR0_READ: 0x000,
  CR0_WRITE: 0x010,
  DR0_READ: 0x020,
  DR0_WRITE: 0x030,
  EXCP_BASE: 0x040,
  INTR: 0x060,
  NMI: 0x061,
  SMI: 0x062,
  INIT: 0x063,
  VINTR: 0x064,
  CR0_SEL_WRITE: 0x065,
  IDTR_READ: 0x066,
  GDTR_READ: 0x067,
  LDTR_READ: 0x068,
  TR_READ: 0x069,
  IDTR_WRITE: 0x06a,
  GDTR_WRITE: 0x06b,
  LDTR_WRITE: 0x06c,
  TR_WRITE: 0x06d,
  RDTSC: 0x06e,
  RDPMC: 0x06f,
  PUSHF: 0x070,
  POPF: 0x071,
  CPUID: 0x072,
  RSM: 0x073,
  IRET: 0x074,
  SWINT: 0x075,
  INVD: 0x076,
  PAUSE: 0x077,
  HLT: 0x078,
  INVLPG: 0x079,
  INVLPGA: 0x07a,
  IOIO: 0x07b,
  MSR: 0x07c,
  TASK_SWITCH: 0x07d,
  FERR_FREEZE: 0x07e,
  SHUTDOWN: 0x07f,
  VMRUN: 0x080,
  VMMCALL: 0x081,
  VMLOAD: 0x082,
  VMSAVE: 0x083,
  STGI: 0x084,
  CLGI: 0x085,
  SKINIT: 0x086,
  RDTSCP: 0x087,
  ICEBP: 0x088,
  WBINVD: 0x089,
  MONITOR: 0x08a,
  MWAIT: 0x08b,
  MWAIT_CONDITIONAL: 0x08c,
  XSETBV: 0x08d,
  RDPRU: 0x08e,
  EFER_WRITE_TRAP: 0x08f,
  CR0_WRITE_TRAP: 0x090,
  INVLPGB: 0x0a0,
  INVLPGB_ILLEGAL: 0x0a1,
  INVPCID: 0x0a2,
  MCOMMIT: 0x0a3,
  TLBSYNC: 0x0a4,
  BUSLOCK: 0x0a5,
  IDLE_HLT: 0x0a6,
  NPF: 0x400,
  AVIC_INCOMPLETE_IPI: 0x401,
  AVIC_NOACCEL: 0x402,
  VMGEXIT: 0x403,
};

function buildCodes(): Readonly<Record<string, bigint>> {
  const out: Record<string, bigint> = {};
  for (let n = 0; n < 16; n++) {
    out[`CR${n}_READ`] = BigInt(0x000 + n);
    out[`CR${n}_WRITE`] = BigInt(0x010 + n);
    out[`DR${n}_READ`] = BigInt(0x020 + n);
    out[`DR${n}_WRITE`] = BigInt(0x030 + n);
    out[`CR${n}_WRITE_TRAP`] = BigInt(0x090 + n);
  }
  for (let v = 0; v < 32; v++) out[`EXCP${v}`] = BigInt(0x040 + v);
  for (const [k, v] of Object.entries(BASE)) if (!(k in out)) out[k] = BigInt(v);
  delete out.EXCP_BASE;
  out.INVALID = 0xffff_ffff_ffff_ffffn; // −1: VMRUN consistency checks failed
  out.BUSY = 0xffff_ffff_ffff_fffen; // −2: SEV-SNP VMSA busy
  out.IDLE_REQUIRED = 0xffff_ffff_ffff_fffdn; // −3: SEV-SNP
  return Object.freeze(out);
}

/** Every VMEXIT code by name (CRn/DRn/EXCPn expanded): `VMEXIT.IOIO === 0x7bn`. */
export const VMEXIT: Readonly<Record<string, bigint>> = buildCodes();

const NAME_BY_CODE = new Map<bigint, string>(Object.entries(VMEXIT).map(([k, v]) => [v, k]));

/** The APM name of an exit code (without VMEXIT_), or undefined for a reserved code. */
export function exitCodeName(code: bigint): string | undefined {
  return NAME_BY_CODE.get(BigInt.asUintN(64, code));
}

/** IOIO EXITINFO1 (APM §15.10.2, figure 15-2). */
export const IOIO = {
  TYPE_IN: 1n << 0n,
  STR: 1n << 2n,
  REP: 1n << 3n,
  SZ8: 1n << 4n,
  SZ16: 1n << 5n,
  SZ32: 1n << 6n,
  A16: 1n << 7n,
  A32: 1n << 8n,
  A64: 1n << 9n,
  /** Effective segment (decode assists), bits 12:10: 0 ES, 1 CS, 2 SS, 3 DS, 4 FS, 5 GS. */
  SEG_SHIFT: 10n,
  PORT_SHIFT: 16n,
} as const;

export interface IoioInfo {
  port: number;
  size: 1 | 2 | 4;
  direction: "in" | "out";
  string: boolean;
  rep: boolean;
  addressSize: 16 | 32 | 64;
  segment: number;
}

export function encodeIoioInfo(i: IoioInfo): bigint {
  if (!Number.isInteger(i.port) || i.port < 0 || i.port > 0xffff) throw new SvmError("SVM_VALUE_OUT_OF_RANGE", `I/O port ${i.port} is not 16-bit`);
  if (![1, 2, 4].includes(i.size)) throw new SvmError("SVM_VALUE_OUT_OF_RANGE", `I/O size ${i.size} is not 1, 2 or 4`);
  if (![16, 32, 64].includes(i.addressSize)) throw new SvmError("SVM_VALUE_OUT_OF_RANGE", `address size ${i.addressSize} is not 16, 32 or 64`);
  let v = BigInt(i.port) << IOIO.PORT_SHIFT;
  if (i.direction === "in") v |= IOIO.TYPE_IN;
  if (i.string) v |= IOIO.STR;
  if (i.rep) v |= IOIO.REP;
  v |= i.size === 1 ? IOIO.SZ8 : i.size === 2 ? IOIO.SZ16 : IOIO.SZ32;
  v |= i.addressSize === 16 ? IOIO.A16 : i.addressSize === 32 ? IOIO.A32 : IOIO.A64;
  v |= BigInt(i.segment & 7) << IOIO.SEG_SHIFT;
  return v;
}

export function decodeIoioInfo(v: bigint): IoioInfo {
  return {
    port: Number((v >> IOIO.PORT_SHIFT) & 0xffffn),
    size: v & IOIO.SZ32 ? 4 : v & IOIO.SZ16 ? 2 : 1,
    direction: v & IOIO.TYPE_IN ? "in" : "out",
    string: (v & IOIO.STR) !== 0n,
    rep: (v & IOIO.REP) !== 0n,
    addressSize: v & IOIO.A64 ? 64 : v & IOIO.A32 ? 32 : 16,
    segment: Number((v >> IOIO.SEG_SHIFT) & 7n),
  };
}

/** Nested-page-fault error code in EXITINFO1 (APM §15.25.6). */
export const NPF = {
  P: 1n << 0n,
  RW: 1n << 1n,
  US: 1n << 2n,
  RSV: 1n << 3n,
  ID: 1n << 4n,
  PK: 1n << 5n,
  SS: 1n << 6n,
  RMP: 1n << 31n,
  /** The fault happened on the guest's final physical address. */
  GUEST_FINAL: 1n << 32n,
  /** The fault happened while walking the guest's page tables. */
  GUEST_PAGE_TABLE: 1n << 33n,
  ENC: 1n << 34n,
  SIZEM: 1n << 35n,
  VMPL: 1n << 36n,
} as const;

export interface NpfInfo {
  present: boolean;
  write: boolean;
  user: boolean;
  reservedBit: boolean;
  fetch: boolean;
  finalTranslation: boolean;
  pageTableWalk: boolean;
  gpa: bigint;
}

/** Decoded EXITINFO1/EXITINFO2 by exit code. */
export type ExitInfo =
  | { kind: "ioio"; io: IoioInfo; nextRip: bigint }
  | { kind: "npf"; npf: NpfInfo; errorCode: bigint }
  | { kind: "cr-access"; cr: number; write: boolean; mov: boolean; gpr: number }
  | { kind: "dr-access"; dr: number; write: boolean; gpr: number }
  | { kind: "exception"; vector: number; errorCode: number; faultAddress?: bigint }
  | { kind: "msr"; write: boolean }
  | { kind: "task-switch"; selector: number; errorCode?: number; reason: "iret" | "jmp" | "call-or-int"; rf: boolean }
  | { kind: "invlpg"; address: bigint }
  | { kind: "swint"; vector: number }
  | { kind: "avic-incomplete-ipi"; icr: bigint; id: number; cause: number }
  | { kind: "avic-noaccel"; offset: number; write: boolean; vector: number }
  | { kind: "invalid" }
  | { kind: "none" };

/**
 * Decode EXITINFO1/EXITINFO2 for an exit code (APM §15.7–§15.12, §15.25.6, §15.29). Codes whose
 * EXITINFO fields the APM leaves undefined decode as `none`; a reserved code throws
 * SVM_UNKNOWN_EXIT_CODE.
 */
export function decodeExitInfo(exitCode: bigint, info1: bigint, info2: bigint): ExitInfo {
  const code = BigInt.asUintN(64, exitCode);
  if (exitCodeName(code) === undefined) throw new SvmError("SVM_UNKNOWN_EXIT_CODE", `EXITCODE 0x${code.toString(16)} is reserved`);
  if (code === VMEXIT.INVALID) return { kind: "invalid" };
  if (code === VMEXIT.IOIO) return { kind: "ioio", io: decodeIoioInfo(info1), nextRip: info2 };
  if (code === VMEXIT.NPF) {
    return {
      kind: "npf",
      errorCode: info1,
      npf: {
        present: (info1 & NPF.P) !== 0n,
        write: (info1 & NPF.RW) !== 0n,
        user: (info1 & NPF.US) !== 0n,
        reservedBit: (info1 & NPF.RSV) !== 0n,
        fetch: (info1 & NPF.ID) !== 0n,
        finalTranslation: (info1 & NPF.GUEST_FINAL) !== 0n,
        pageTableWalk: (info1 & NPF.GUEST_PAGE_TABLE) !== 0n,
        gpa: info2,
      },
    };
  }
  if (code <= 0x1fn) {
    // Decode assists: bit 63 says MOV CRn (vs LMSW/CLTS/SMSW), bits 3:0 the GPR.
    return { kind: "cr-access", cr: Number(code & 0xfn), write: code >= 0x10n, mov: (info1 >> 63n) === 1n, gpr: Number(info1 & 0xfn) };
  }
  if (code <= 0x3fn) return { kind: "dr-access", dr: Number(code & 0xfn), write: code >= 0x30n, gpr: Number(info1 & 0xfn) };
  if (code <= 0x5fn) {
    const vector = Number(code - 0x40n);
    const e: ExitInfo = { kind: "exception", vector, errorCode: Number(info1 & 0xffff_ffffn) };
    return vector === 14 ? { ...e, faultAddress: info2 } : e;
  }
  if (code === VMEXIT.MSR) return { kind: "msr", write: (info1 & 1n) === 1n };
  if (code === VMEXIT.TASK_SWITCH) {
    const hasEc = ((info2 >> 44n) & 1n) === 1n;
    const reason = (info2 >> 36n) & 1n ? "iret" : (info2 >> 38n) & 1n ? "jmp" : "call-or-int";
    return { kind: "task-switch", selector: Number(info1 & 0xffffn), reason, rf: ((info2 >> 48n) & 1n) === 1n, ...(hasEc ? { errorCode: Number(info2 & 0xffff_ffffn) } : {}) };
  }
  if (code === VMEXIT.INVLPG || code === VMEXIT.INVLPGA) return { kind: "invlpg", address: info1 };
  if (code === VMEXIT.SWINT) return { kind: "swint", vector: Number(info1 & 0xffn) };
  if (code === VMEXIT.AVIC_INCOMPLETE_IPI) return { kind: "avic-incomplete-ipi", icr: info1, id: Number(info2 >> 32n), cause: Number(info2 & 0xffff_ffffn) };
  if (code === VMEXIT.AVIC_NOACCEL) return { kind: "avic-noaccel", offset: Number(info1 & 0xff0n), write: ((info1 >> 32n) & 1n) === 1n, vector: Number(info2 & 0xffff_ffffn) };
  return { kind: "none" };
}
