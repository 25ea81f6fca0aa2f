import { bytes, defineStruct, type StructLayout, u16, u32, u64 } from "@tsvmm/abi";

/** The 512-byte legacy region of an XSAVE/FXSAVE area (SDM vol. 1 table 13-1; Linux `struct _fpstate_64`). */
export interface FxsaveLegacy {
  cwd: number;
  swd: number;
  /** Abridged tag word (one bit per register, 1 = valid). */
  twd: number;
  fop: number;
  rip: bigint;
  rdp: bigint;
  mxcsr: number;
  mxcsrMask: number;
  stSpace: Buffer;
  xmmSpace: Buffer;
  reserved2: Buffer;
  reserved3: Buffer;
}

export const FxsaveLegacyLayout: StructLayout<FxsaveLegacy> = defineStruct<FxsaveLegacy>("struct _fpstate_64", [
  u16("cwd"),
  u16("swd"),
  u16("twd"),
  u16("fop"),
  u64("rip"),
  u64("rdp"),
  u32("mxcsr"),
  u32("mxcsrMask"),
  bytes(128, "stSpace"),
  bytes(256, "xmmSpace"),
  bytes(48, "reserved2"),
  bytes(48, "reserved3"),
]);

/** The 64-byte XSAVE header after the legacy region (SDM vol. 1 13.4.2; Linux `struct _header`). */
export interface XsaveHeader {
  xstateBv: bigint;
  xcompBv: bigint;
  reserved: Buffer;
}

export const XsaveHeaderLayout: StructLayout<XsaveHeader> = defineStruct<XsaveHeader>(
  "struct _header",
  [u64("xstateBv"), u64("xcompBv"), bytes(48, "reserved")],
  // Linux names XSTATE_BV `xfeatures` and keeps XCOMP_BV inside reserved1[].
  { xstateBv: "xfeatures", xcompBv: "reserved1[0]", reserved: "reserved1[1]" },
);

/** Offset of the header in every XSAVE area. */
export const XSAVE_HEADER_OFFSET = FxsaveLegacyLayout.size;
/** Where compacted-format components start (legacy region + header). */
export const XSAVE_EXTENDED_OFFSET = FxsaveLegacyLayout.size + XsaveHeaderLayout.size;
