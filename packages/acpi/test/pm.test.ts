import {
  buildAcpiTables,
  DEFAULT_PM_PORTS,
  isPowerOffRequest,
  PM_TIMER_HZ,
  PM1_CNT_SCI_EN,
  PM1_CNT_SLP_EN,
  parseFadt,
  pm1ControlSleepRequest,
  pmTimerValue,
} from "@tsvmm/acpi";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

describe("PM1a control: the S5 write", () => {
  it("is (SLP_TYP << 10) | SLP_EN, with SCI_EN kept as read; SLP_TYP without SLP_EN is not a request", () => {
    // ACPI 6.4 table 4.16: SLP_TYP bits 10-12, SLP_EN bit 13. The write sequence ACPICA uses:
    // first SLP_TYP alone, then SLP_TYP | SLP_EN.
    const first = PM1_CNT_SCI_EN | (5 << 10);
    const second = first | PM1_CNT_SLP_EN;
    expect(second).toBe(0x3401);
    expect(pm1ControlSleepRequest(first)).toBeUndefined();
    expect(isPowerOffRequest(first)).toBe(false);
    expect(pm1ControlSleepRequest(second)).toBe(5);
    expect(isPowerOffRequest(second)).toBe(true);
    expect(isPowerOffRequest(PM1_CNT_SLP_EN | (3 << 10))).toBe(false);
    expect(isPowerOffRequest(PM1_CNT_SLP_EN | (3 << 10), 3)).toBe(true);
  });
  it("property: only SLP_EN with SLP_TYP = the S5 type powers off", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff }), (v) => {
        expect(isPowerOffRequest(v)).toBe((v & 0x2000) !== 0 && ((v >> 10) & 7) === 5);
      }),
      { numRuns: 500 },
    );
  });
  it("the default ports are the ones the FADT gives, and _S5 holds the S5 type", () => {
    const t = buildAcpiTables({ vcpus: [{ apicId: 0 }], ioapic: { id: 1 } }, { base: 0 });
    const f = t.tables.find((x) => x.signature === "FACP")!;
    const fadt = parseFadt(t.bytes.subarray(f.address, f.address + f.length));
    expect([fadt.pm1aEvtBlk, fadt.pm1aCntBlk, fadt.pmTmrBlk]).toEqual([DEFAULT_PM_PORTS.pm1aEvent, DEFAULT_PM_PORTS.pm1aControl, DEFAULT_PM_PORTS.pmTimer]);
    const d = t.tables.find((x) => x.signature === "DSDT")!;
    // Name (_S5, Package (4) { 5, 5, 0, 0 }): 08 "_S5_" 12 <len> 04 0A 05 0A 05 00 00
    const dsdt = t.bytes.subarray(d.address, d.address + d.length);
    expect(dsdt.includes(Buffer.from([0x08, 0x5f, 0x53, 0x35, 0x5f, 0x12, 0x08, 0x04, 0x0a, 0x05, 0x0a, 0x05, 0x00, 0x00]))).toBe(true);
  });
});

describe("PM timer", () => {
  it("counts 3579545 ticks per second and wraps at 24 bits (or 32)", () => {
    expect(pmTimerValue(1_000_000_000n, 32)).toBe(PM_TIMER_HZ);
    expect(pmTimerValue(1_000_000_000n)).toBe(PM_TIMER_HZ & 0xff_ffff);
    expect(pmTimerValue(0n)).toBe(0);
    const wrap = (2n ** 24n * 1_000_000_000n) / BigInt(PM_TIMER_HZ) + 1n;
    expect(pmTimerValue(wrap)).toBeLessThan(4);
  });
});
