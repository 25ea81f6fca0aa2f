import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {type CLayoutCheck, 
  cCheckSources, cLayoutChecks, HC_BLOCK_ALIGN, HC_MAGIC, HC_PORT, HC_SIGNATURE, HC_SIGNATURE_PORT, HC_VERSION_MAX,
  HcCall, HcRequestLayout, HcStatus,
} from "@tsvmm/abi";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// The guest side of the hypercall ABI is test-kernels/lib/tsvmm.h. This compiles a host program
// including it and compares the block layout (generated from HcRequestLayout's own fields) and
// every constant with what abi declares, so the two sides cannot drift apart.

const LIB = fileURLToPath(new URL("../../../test-kernels/lib", import.meta.url));

const checks: CLayoutCheck[] = [
  ...cLayoutChecks(HcRequestLayout),
  { key: "_Alignof struct tsvmm_hc", expr: "_Alignof(struct tsvmm_hc)", value: HC_BLOCK_ALIGN },
  { key: "HC_PORT", expr: "HC_PORT", value: HC_PORT },
  { key: "HC_SIGNATURE_PORT", expr: "HC_SIGNATURE_PORT", value: HC_SIGNATURE_PORT },
  { key: "HC_SIGNATURE", expr: "HC_SIGNATURE", value: HC_SIGNATURE },
  { key: "HC_MAGIC", expr: "HC_MAGIC", value: HC_MAGIC },
  { key: "HC_VERSION", expr: "HC_VERSION", value: HC_VERSION_MAX },
  ...Object.entries(HcCall).map(([k, v]) => ({ key: `HC_CALL_${k}`, expr: `HC_CALL_${k}`, value: v })),
  ...Object.entries(HcStatus).map(([k, v]) => ({ key: `HC_${k}`, expr: `HC_${k}`, value: v })),
];

let dir = "";
let fromC = new Map<string, number>();
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "tsvmm-hc-"));
  const src = cCheckSources(['"tsvmm.h"'], checks);
  writeFileSync(join(dir, "values.c"), src.values);
  writeFileSync(join(dir, "main.c"), src.main);
  try {
    execFileSync("cc", ["-std=gnu11", "-I", LIB, "-o", join(dir, "hc"), join(dir, "values.c"), join(dir, "main.c")], { stdio: "pipe" });
  } catch (e) {
    throw new Error(`cc failed: ${String((e as { stderr?: Buffer }).stderr)}`);
  }
  const out = execFileSync(join(dir, "hc"), { encoding: "utf8" });
  fromC = new Map(out.trim().split("\n").map((l) => l.split("\t") as [string, string]).map(([k, v]) => [k, Number(v)]));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("hypercall ABI against test-kernels/lib/tsvmm.h", () => {
  it("every field of struct tsvmm_hc, its size, alignment and every constant match the C compiler's", () => {
    expect(fromC.size).toBe(checks.length);
    const bad = checks.filter((c) => fromC.get(c.key) !== c.value).map((c) => `${c.key}: ts=${c.value} c=${fromC.get(c.key)}`);
    expect(bad).toEqual([]);
  });
  it("the layout has every field of the C struct (size covered by named fields, no gap)", () => {
    const fields = HcRequestLayout.fields();
    expect(fields.map((f) => f.c)).toEqual(["magic", "version", "call", "arg", "result"]);
    expect(fromC.get("sizeof struct tsvmm_hc")).toBe(HcRequestLayout.size);
  });
});
