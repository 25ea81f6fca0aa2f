// The README is part of the package: its example runs here as written, and its catalog table is
// the catalog (every id with its SDM section and rule, nothing else).
import { readFileSync } from "node:fs";
import * as vmcs from "@tsvmm/vmcs";
import { describe, expect, it } from "vitest";

const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");

describe("README", () => {
  it("the ts example runs and prints what its comments say", () => {
    const block = /```ts\n([\s\S]*?)```/.exec(readme)![1]!;
    const imp = /^import \{([^}]+)\} from "@tsvmm\/vmcs";\n/m.exec(block)!;
    const body = block.replace(imp[0], `const {${imp[1]}} = mod;\n`).replaceAll("console.log(", "out.push(");
    const out: unknown[] = [];
    new Function("mod", "out", body)(vmcs, out);
    expect(out).toHaveLength(2);
    const [violations, result] = out as [vmcs.Violation[], vmcs.VmEntryResult];
    expect(violations).toEqual([{ id: "GUEST.RFLAGS.RESERVED", sdm: "26.3.1.4", message: "GUEST_RFLAGS=0x0: bits 63:22, 15, 5, 3 must be 0 and bit 1 must be 1" }]);
    const v = violations[0]!;
    expect(block).toContain(`// [{ id: "${v.id}", sdm: "${v.sdm}", message: "${v.message}" }]`);
    expect(result).toMatchObject({ kind: "entry-failure", exitReason: 0x8000_0021, basicExitReason: 33, exitQualification: 0 });
  });

  it("the check table lists exactly the catalog, row for row", () => {
    const rows = readme.split("\n").filter((l) => /^\| `[A-Z0-9_.]+` \| [0-9.+]+ \| .* \| checks\.test\.ts › /.test(l));
    expect(rows).toEqual(vmcs.CHECKS.map((c) => `| \`${c.id}\` | ${c.sdm} | ${c.title} | checks.test.ts › ${c.id} |`));
  });

  it("every check id it names in the decisions table exists", () => {
    const section = readme.slice(readme.indexOf("### Newest-SDM decisions"), readme.indexOf("## Checks → SDM → test"));
    const named = [...section.matchAll(/`([A-Z0-9]+(?:\.[A-Z0-9_]+)+)`/g)].map((m) => m[1]!).filter((x) => /^(CTRL|HOST|GUEST)\./.test(x));
    expect(named.length).toBeGreaterThan(20);
    for (const id of named) expect(vmcs.checkInfo(id), id).toBeDefined();
  });
});
