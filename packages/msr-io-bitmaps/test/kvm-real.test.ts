// Checks the conversion against the real KVM on this machine: a C probe (compiled here with gcc)
// installs each filter with KVM_X86_SET_MSR_FILTER and runs one RDMSR/WRMSR per probe in a
// real-mode guest, reporting whether it exited with KVM_MSR_EXIT_REASON_FILTER.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { KvmMsrFilter } from "@tsvmm/abi";
import { MsrPolicy, type MsrPolicySource, SvmMsrpm, toKvmMsrFilter, VmxMsrBitmap, validateKvmMsrFilter } from "@tsvmm/msr-io-bitmaps";
import { beforeAll, describe, expect, it } from "vitest";

let probe = "";
beforeAll(() => {
  probe = join(mkdtempSync(join(tmpdir(), "msr-probe-")), "msr-filter-probe");
  execFileSync("gcc", ["-O2", "-Wall", "-Werror", "-o", probe, fileURLToPath(new URL("./native/msr-filter-probe.c", import.meta.url))]);
});

type Dir = "read" | "write";
interface Outcome {
  set: { ret: number; errno: number };
  filtered: Map<string, boolean>;
}

function runProbe(filter: KvmMsrFilter, probes: Array<[number, Dir]> = []): Outcome {
  const lines = [`F ${filter.flags} ${filter.ranges.length}`];
  for (const r of filter.ranges) lines.push(`R ${r.flags} ${r.base} ${r.nmsrs} ${r.bitmap.length ? Buffer.from(r.bitmap).toString("hex") : "-"}`);
  for (const [m, d] of probes) lines.push(`P ${m} ${d[0]}`);
  const res = spawnSync(probe, { input: `${lines.join("\n")}\n`, encoding: "utf8" });
  const out = res.stdout.trim().split("\n");
  const set = /^SET (-?\d+) (\d+)$/.exec(out[0] ?? "");
  if (!set) throw new Error(`probe failed: ${res.stdout} ${res.stderr}`);
  const filtered = new Map<string, boolean>();
  for (const l of out.slice(1)) {
    const [m, d, v] = l.split(" ");
    filtered.set(`${m}:${d}`, v === "filter");
  }
  return { set: { ret: Number(set[1]), errno: Number(set[2]) }, filtered };
}

const EINVAL = 22;

describe("real KVM agrees with validateKvmMsrFilter", () => {
  it("accepts what the validator accepts and rejects with EINVAL what it rejects", () => {
    const b8 = () => Buffer.alloc(8);
    const valid: KvmMsrFilter[] = [
      { flags: 0, ranges: [] },
      { flags: 1, ranges: [{ flags: 1, base: 0, nmsrs: 1, bitmap: b8() }] },
      { flags: 0, ranges: [{ flags: 3, base: 0x4000_0000, nmsrs: 0x3000, bitmap: Buffer.alloc(0x600) }] },
      toKvmMsrFilter(VmxMsrBitmap.interceptAll()),
      toKvmMsrFilter(new SvmMsrpm()),
    ];
    const invalid: KvmMsrFilter[] = [
      { flags: 2, ranges: [] },
      { flags: 1, ranges: [] },
      { flags: 1, ranges: [{ flags: 1, base: 0, nmsrs: 0, bitmap: b8() }] },
      { flags: 0, ranges: [{ flags: 0, base: 0, nmsrs: 1, bitmap: b8() }] },
      { flags: 0, ranges: [{ flags: 4, base: 0, nmsrs: 1, bitmap: b8() }] },
      { flags: 0, ranges: [{ flags: 1, base: 0, nmsrs: 0x3001, bitmap: Buffer.alloc(0x608) }] },
    ];
    for (const f of valid) {
      expect(() => validateKvmMsrFilter(f)).not.toThrow();
      expect(runProbe(f).set).toEqual({ ret: 0, errno: 0 });
    }
    for (const f of invalid) {
      expect(() => validateKvmMsrFilter(f)).toThrow(expect.objectContaining({ code: "KVM_MSR_FILTER_INVALID" }));
      expect(runProbe(f).set).toEqual({ ret: -1, errno: EINVAL });
    }
  });

  it("a range reaching MSR 0xFFFFFFFF is accepted but never matches (u32 end wraps), as the validator warns", () => {
    const deny16 = (base: number): KvmMsrFilter => ({ flags: 0, ranges: [{ flags: 3, base, nmsrs: 16, bitmap: Buffer.alloc(8) }] });
    const wraps = runProbe(deny16(0xffff_fff0), [[0xffff_fff5, "read"]]);
    expect(wraps.set.ret).toBe(0);
    expect(wraps.filtered.get(`${0xffff_fff5}:r`)).toBe(false);
    expect(() => validateKvmMsrFilter(deny16(0xffff_fff0))).toThrow(expect.objectContaining({ code: "KVM_MSR_FILTER_INVALID" }));
    const fits = runProbe(deny16(0xffff_ffe0), [[0xffff_ffe5, "read"]]);
    expect(fits.filtered.get(`${0xffff_ffe5}:r`)).toBe(true);
  });
});

describe("guest RDMSR/WRMSR exit exactly where the source denies", () => {
  const cases: Array<[string, MsrPolicySource]> = [
    ["VMX allow-list bitmap", VmxMsrBitmap.fromAllowList([0x10, { msrs: 0x1b, access: "read" }, { first: 0x800, last: 0x8ff }, { first: 0xc000_0080, last: 0xc000_0084 }])],
    ["VMX bitmap with write-only intercepts", new VmxMsrBitmap().intercept({ first: 0x100, last: 0x1ff }, "write").intercept(0xc000_0080, "read")],
    ["SVM MSRPM", SvmMsrpm.fromAllowList([{ first: 0xc001_0000, last: 0xc001_0010 }, 0x3a])],
    ["deny-list policy", MsrPolicy.fromDenyList([{ msrs: 0x4000_0000, access: "write" }, { first: 0x1234_5600, last: 0x1234_8fff }])],
    ["allow-list longer than one range", MsrPolicy.fromAllowList([{ first: 0x5000_0000, last: 0x5000_4000 }])],
  ];
  for (const [name, source] of cases) {
    it(name, () => {
      const policy = source.toPolicy();
      const filter = toKvmMsrFilter(source);
      const msrs = new Set<number>([0x0, 0x10, 0x11, 0x1b, 0x3a, 0x7ff, 0x800, 0x8ff, 0x900, 0x1fff, 0x2000, 0x4000_0000, 0xc000_0000, 0xc000_0080, 0xc000_0085]);
      for (const d of ["read", "write"] as const) for (const [s, e] of policy.allowedSet(d).spans) for (const m of [s - 1, s, e - 1, e]) msrs.add(m);
      for (const r of filter.ranges) for (const m of [r.base - 1, r.base, r.base + r.nmsrs - 1, r.base + r.nmsrs]) msrs.add(m);
      const probes: Array<[number, Dir]> = [...msrs].filter((m) => m >= 0 && m <= 0xffff_ffff).flatMap((m) => [[m, "read"], [m, "write"]] as Array<[number, Dir]>);
      const out = runProbe(filter, probes);
      expect(out.set).toEqual({ ret: 0, errno: 0 });
      for (const [m, d] of probes) {
        const x2apic = m >= 0x800 && m <= 0x8ff;
        // KVM never filters x2APIC MSRs; everywhere else the guest exits exactly where the source denies.
        expect({ m, d, filtered: out.filtered.get(`${m}:${d[0]}`) }).toEqual({ m, d, filtered: x2apic ? false : !policy.allows(m, d) });
      }
    });
  }
});
