import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, normalize } from "node:path";
import { describe, expect, it } from "vitest";

// `npm run docs` (typedoc, packages mode) documents exactly what users can import: one entry point
// per `exports` subpath. A package's own typedoc.json overrides the root's packageOptions.

const root = join(__dirname, "..", "..");
const names = readdirSync(join(root, "packages")).filter((n) => existsSync(join(root, "packages", n, "package.json")));
const readJson = <T>(file: string): T => JSON.parse(readFileSync(file, "utf8")) as T;

interface TypedocConfig {
  entryPoints?: string[];
  entryPointStrategy?: string;
  packageOptions?: { entryPoints?: string[] };
}
const rootConfig = readJson<TypedocConfig>(join(root, "typedoc.json"));

/** Source of an export subpath, by the rule the vitest aliases and tsup configs follow. */
function sourceOf(dir: string, subpath: string): string {
  if (subpath === ".") return "src/index.ts";
  const sub = subpath.slice(2);
  return existsSync(join(dir, "src", `${sub}.ts`)) ? `src/${sub}.ts` : `src/${sub}/index.ts`;
}

describe("typedoc", () => {
  it("documents every workspace package", () => {
    expect(rootConfig.entryPointStrategy).toBe("packages");
    expect(rootConfig.entryPoints).toEqual(["packages/*"]);
  });
  it.each(names)("@tsvmm/%s: one entry point per exports subpath", (name) => {
    const dir = join(root, "packages", name);
    const own = join(dir, "typedoc.json");
    const entryPoints = (existsSync(own) ? readJson<TypedocConfig>(own) : rootConfig.packageOptions)?.entryPoints ?? [];
    const exportsMap = readJson<{ exports?: Record<string, unknown> }>(join(dir, "package.json")).exports ?? { ".": {} };
    const subpaths = Object.keys(exportsMap).filter((s) => s !== "./package.json");
    expect(entryPoints.map((e) => normalize(e)).sort()).toEqual(subpaths.map((s) => sourceOf(dir, s)).sort());
    for (const e of entryPoints) expect(existsSync(join(dir, e))).toBe(true);
  });
});
