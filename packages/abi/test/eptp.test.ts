import { EptVpidCap, validateEptp } from "@tsvmm/abi";
import { describe, expect, it } from "vitest";

const ALL = EptVpidCap.PAGE_WALK_4 | EptVpidCap.PAGE_WALK_5 | EptVpidCap.MEMTYPE_UC | EptVpidCap.MEMTYPE_WB | EptVpidCap.ACCESSED_DIRTY | EptVpidCap.SUPERVISOR_SHADOW_STACK;
const codes = (eptp: bigint, cap = ALL, maxPhy = 46) => validateEptp(eptp, cap, maxPhy).map((p) => p.code);

describe("the EPTP rule (shared by vmcs and ept)", () => {
  it("accepts WB, 4-level, root below MAXPHYADDR", () => {
    expect(codes(0x1000n | 6n | (3n << 3n))).toEqual([]);
  });
  it("names each broken part", () => {
    expect(codes(0x1000n | 1n | (3n << 3n))).toEqual(["EPTP_MEMORY_TYPE_INVALID"]);
    expect(codes(0x1000n | 6n | (3n << 3n), ALL & ~EptVpidCap.MEMTYPE_WB)).toEqual(["EPTP_MEMORY_TYPE_UNSUPPORTED"]);
    expect(codes(0x1000n | 6n | (2n << 3n))).toEqual(["EPTP_WALK_LENGTH_INVALID"]);
    expect(codes(0x1000n | 6n | (4n << 3n), ALL & ~EptVpidCap.PAGE_WALK_5)).toEqual(["EPTP_WALK_LENGTH_UNSUPPORTED"]);
    expect(codes(0x1000n | 6n | (3n << 3n) | 0x40n, ALL & ~EptVpidCap.ACCESSED_DIRTY)).toEqual(["EPTP_ACCESSED_DIRTY_UNSUPPORTED"]);
    expect(codes(0x1000n | 6n | (3n << 3n) | 0x80n, ALL & ~EptVpidCap.SUPERVISOR_SHADOW_STACK)).toEqual(["EPTP_SUPERVISOR_SHADOW_STACK_UNSUPPORTED"]);
    expect(codes(0x1000n | 6n | (3n << 3n) | 0x100n)).toEqual(["EPTP_RESERVED_BITS"]);
    expect(codes((1n << 46n) | 6n | (3n << 3n))).toEqual(["EPTP_BEYOND_MAXPHYADDR"]);
  });
  it("refuses arguments that are not u64 values with a typed error", () => {
    expect(() => validateEptp(-1n, 0n, 46)).toThrowError(expect.objectContaining({ code: "EPTP_INVALID_ARGUMENT" }));
    expect(() => validateEptp(0n, 0n, 64)).toThrowError(expect.objectContaining({ code: "EPTP_INVALID_ARGUMENT" }));
  });
});
