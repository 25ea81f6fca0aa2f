import { existsSync, readdirSync, readFileSync } from "node:fs";
import { builtinModules } from "node:module";
import { dirname, join, resolve } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";

// Each manifest declares exactly what its published code needs: every package the sources import
// from an entry point is a dependency (or a peer), nothing else is, and what only some entry points
// need (fast-check, for `./arbitraries`) is an optional peer that the main entry never loads.

const root = join(__dirname, "..", "..");
const names = readdirSync(join(root, "packages")).filter((n) => existsSync(join(root, "packages", n, "package.json")));

interface Manifest {
  exports?: Record<string, unknown>;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
}
const manifest = (name: string): Manifest =>
  JSON.parse(readFileSync(join(root, "packages", name, "package.json"), "utf8")) as Manifest;

const builtins = new Set(builtinModules);
/** Packages tsup bundles into the package's dist (`noExternal`): build-time only, never a consumer's dependency. */
function bundled(name: string): Set<string> {
  const config = join(root, "packages", name, "tsup.config.ts");
  if (!existsSync(config)) return new Set();
  const m = /noExternal:\s*\[([^\]]*)\]/.exec(readFileSync(config, "utf8"));
  return new Set([...(m?.[1] ?? "").matchAll(/"([^"]+)"/g)].map((x) => x[1]!));
}

const isBuiltin = (spec: string) => spec.startsWith("node:") || builtins.has(spec.split("/")[0]!);
const packageOf = (spec: string) => spec.split("/").slice(0, spec.startsWith("@") ? 2 : 1).join("/");

/** The source file an export subpath is built from (the same rule the vitest aliases follow). */
function entrySource(name: string, subpath: string): string {
  const src = join(root, "packages", name, "src");
  if (subpath === ".") return join(src, "index.ts");
  const sub = subpath.slice(2);
  const file = join(src, `${sub}.ts`);
  return existsSync(file) ? file : join(src, sub, "index.ts");
}

function resolveRelative(from: string, spec: string): string {
  const base = resolve(dirname(from), spec).replace(/\.(js|mjs|cjs)$/, "");
  for (const candidate of [`${base}.ts`, join(base, "index.ts"), base]) if (existsSync(candidate)) return candidate;
  throw new Error(`${from}: cannot resolve ${spec}`);
}

/** Bare specifiers reachable from one entry point, following the package's own relative imports. */
function externalImports(entry: string): Set<string> {
  const seen = new Set<string>();
  const found = new Set<string>();
  const queue = [entry];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    if (!file.endsWith(".ts")) continue;
    const info = ts.preProcessFile(readFileSync(file, "utf8"), true, true);
    for (const { fileName } of info.importedFiles) {
      if (fileName.startsWith(".")) queue.push(resolveRelative(file, fileName));
      else if (!isBuiltin(fileName)) found.add(packageOf(fileName));
    }
  }
  return found;
}

describe.each(names)("@tsvmm/%s", (name) => {
  const pkg = manifest(name);
  const subpaths = Object.keys(pkg.exports ?? { ".": {} });
  const byEntry = new Map(subpaths.map((s) => [s, externalImports(entrySource(name, s))]));
  const used = new Set([...byEntry.values()].flatMap((s) => [...s]));
  const declared = { ...pkg.dependencies, ...pkg.peerDependencies };
  const inDist = bundled(name);

  it("declares every package its entry points import (bundled ones as devDependencies)", () => {
    expect([...used].filter((d) => !(d in declared) && !inDist.has(d)).sort()).toEqual([]);
    for (const d of inDist) {
      expect(declared, `${d} is bundled into dist`).not.toHaveProperty(d);
      expect(pkg.devDependencies ?? {}).toHaveProperty(d);
    }
  });

  it("publishes type declarations that do not name a bundled package", () => {
    const dist = join(root, "packages", name, "dist");
    if (inDist.size === 0) return;
    const dts = readdirSync(dist).filter((f) => /\.d\.c?ts$/.test(f));
    expect(dts.length).toBeGreaterThan(0);
    for (const f of dts) {
      const text = readFileSync(join(dist, f), "utf8");
      for (const d of inDist) expect(text, `${f} names ${d}`).not.toMatch(new RegExp(`from ["']${d}(/[^"']*)?["']`));
    }
  });

  it("declares nothing its published code does not use", () => {
    // node-addon-api is used by binding.gyp when the addon compiles on install.
    const buildTime = (dep: string) =>
      dep === "node-addon-api" && readFileSync(join(root, "packages", name, "binding.gyp"), "utf8").includes("node-addon-api");
    expect(Object.keys(declared).filter((d) => !used.has(d) && !buildTime(d)).sort()).toEqual([]);
  });

  it("leaves node-gyp to npm (it runs binding.gyp with its own copy)", () => {
    expect(pkg.dependencies ?? {}).not.toHaveProperty("node-gyp");
  });

  it("makes fast-check an optional peer, loaded only by the entries that use it", () => {
    expect(pkg.dependencies ?? {}).not.toHaveProperty("fast-check");
    if (!used.has("fast-check")) {
      expect(pkg.peerDependencies ?? {}).not.toHaveProperty("fast-check");
      return;
    }
    expect(pkg.peerDependencies?.["fast-check"]).toBeDefined();
    expect(pkg.peerDependenciesMeta?.["fast-check"]?.optional).toBe(true);
    expect(byEntry.get(".")?.has("fast-check")).toBe(false);
  });
});

describe("the workspace root", () => {
  it("has fast-check as a devDependency for the tests", () => {
    const rootPkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as Manifest;
    expect(rootPkg.devDependencies?.["fast-check"]).toBeDefined();
  });
});
