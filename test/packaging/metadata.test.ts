import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

// What a registry user sees of each package: its manifest and the file list `npm pack` would
// publish. No build is needed: `npm pack --dry-run` lists what `files` selects.

const root = join(__dirname, "..", "..");
const names = readdirSync(join(root, "packages")).filter((n) => existsSync(join(root, "packages", n, "package.json")));

interface Manifest {
  name: string;
  version: string;
  license?: string;
  author?: string;
  keywords?: string[];
  homepage?: string;
  bugs?: { url?: string };
  repository?: { type?: string; url?: string; directory?: string };
  publishConfig?: { access?: string };
  files?: string[];
  engines?: { node?: string };
  scripts?: Record<string, string>;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
}

// One npm process lists every workspace's tarball (one per package costs ~1.5 s each).
let packed: Map<string, string[]> | undefined;
function packedFiles(name: string): string[] {
  if (!packed) {
    const out = execFileSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts", "--workspaces"], { cwd: root, encoding: "utf8" });
    packed = new Map((JSON.parse(out) as { name: string; files: { path: string }[] }[]).map((p) => [p.name, p.files.map((f) => f.path)]));
  }
  return packed.get(`@tsvmm/${name}`) ?? [];
}

const manifest = (dir: string): Manifest => JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as Manifest;
const rootManifest = manifest(root);
const licenseText = readFileSync(join(root, "LICENSE"), "utf8");

describe("the root", () => {
  it("carries the Apache License 2.0 the manifests declare", () => {
    expect(rootManifest.license).toBe("Apache-2.0");
    expect(licenseText).toMatch(/^\s*Apache License\s+Version 2\.0, January 2004/);
    expect(licenseText).toContain("END OF TERMS AND CONDITIONS");
    // The full text has nine numbered sections.
    for (let s = 1; s <= 9; s++) expect(licenseText).toMatch(new RegExp(`\\n\\s+${s}\\. [A-Z]`));
  });
  it("lists every package folder as a workspace", () => {
    expect(rootManifest as unknown as { workspaces: string[] }).toHaveProperty("workspaces");
    const ws = (rootManifest as unknown as { workspaces: string[] }).workspaces;
    expect([...ws].sort()).toEqual(names.map((n) => `packages/${n}`).sort());
  });
});

describe("package-lock.json", () => {
  // `npm install` in a fresh clone rewrites a lock that disagrees with a manifest (and leaves the
  // clone dirty); the lock records each workspace's manifest fields, so compare those.
  const lock = JSON.parse(readFileSync(join(root, "package-lock.json"), "utf8")) as {
    lockfileVersion: number;
    packages: Record<string, Record<string, unknown>>;
  };
  const FIELDS = ["version", "dependencies", "devDependencies", "peerDependencies", "optionalDependencies", "peerDependenciesMeta", "engines", "license"];
  const pick = (o: Record<string, unknown>) => Object.fromEntries(FIELDS.filter((f) => o[f] !== undefined).map((f) => [f, o[f]]));
  it.each(["", ...names.map((n) => `packages/${n}`)])("agrees with the manifest of '%s'", (dir) => {
    expect(lock.lockfileVersion).toBe(3);
    const pkg = JSON.parse(readFileSync(join(root, dir, "package.json"), "utf8")) as Record<string, unknown>;
    const fields = pick(pkg);
    // The root entry has no version field for a private root without one.
    expect(pick(lock.packages[dir] ?? {})).toEqual(fields);
  });
});

describe("release tooling", () => {
  const lerna = JSON.parse(readFileSync(join(root, "lerna.json"), "utf8")) as {
    version: string;
    command?: { version?: { conventionalCommits?: boolean; changelogPreset?: string; exact?: boolean } };
  };
  it("versions every package together with lerna's version, exact internal pins", () => {
    expect(lerna.command?.version?.exact).toBe(true);
    for (const name of names) {
      const pkg = manifest(join(root, "packages", name));
      expect(pkg.version).toBe(lerna.version);
      for (const [dep, range] of Object.entries(pkg.dependencies ?? {})) if (dep.startsWith("@tsvmm/")) expect(range).toBe(lerna.version);
    }
  });
  it("writes change logs from conventional commits with a preset lerna can load", () => {
    expect(lerna.command?.version?.conventionalCommits).toBe(true);
    const preset = lerna.command?.version?.changelogPreset ?? "";
    // lerna resolves a bare preset name as conventional-changelog-<name>, from its own location.
    const from = createRequire(join(root, "node_modules", "lerna", "package.json"));
    expect(() => from.resolve(`conventional-changelog-${preset}`)).not.toThrow();
    for (const dir of [root, ...names.map((n) => join(root, "packages", n))]) {
      // lerna keeps this header and inserts each release below it.
      expect(readFileSync(join(dir, "CHANGELOG.md"), "utf8")).toMatch(/^# Change Log\n\nAll notable changes to this project will be documented in this file\.\n/);
    }
  });
});

describe.each(names)("@tsvmm/%s", (name) => {
  const dir = join(root, "packages", name);
  const pkg = manifest(dir);

  it("has the publishing metadata a registry page shows", () => {
    expect(pkg.name).toBe(`@tsvmm/${name}`);
    expect(pkg.license).toBe(rootManifest.license);
    expect(pkg.author).toBe((rootManifest as { author?: string }).author);
    expect(pkg.repository?.type).toBe("git");
    expect(pkg.repository?.url).toBe((rootManifest as Manifest).repository?.url);
    expect(pkg.repository?.directory).toBe(`packages/${name}`);
    expect(pkg.homepage).toMatch(new RegExp(`/packages/${name}#readme$`));
    expect(pkg.bugs?.url).toBe((rootManifest as Manifest).bugs?.url);
    expect(pkg.keywords?.length ?? 0).toBeGreaterThanOrEqual(3);
    expect(pkg.publishConfig?.access).toBe("public");
    expect(pkg.engines?.node).toBe(rootManifest.engines?.node);
  });

  it("has the root's LICENSE text", () => {
    expect(readFileSync(join(dir, "LICENSE"), "utf8")).toBe(licenseText);
  });

  it("publishes LICENSE, README.md, CHANGELOG.md and no sources or tests", () => {
    const files = packedFiles(name);
    for (const f of ["LICENSE", "README.md", "CHANGELOG.md", "package.json"]) expect(files).toContain(f);
    expect(files.filter((f) => f.startsWith("src/") || f.startsWith("test/"))).toEqual([]);
  }, 30_000);
});
