import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { build, defineConfig, type Options } from "tsup";

type EsbuildPlugin = NonNullable<Options["esbuildPlugins"]>[number];

// The pure @tsvmm packages the bin bundle carries inside itself. @tsvmm/abi and
// @tsvmm/kvm-backend stay outside: kvm-backend finds its native addon beside its own files, and
// abi is the one copy both share (TsvmmError and the layouts must not exist twice in a process).
const BIN_INLINE = [/^@tsvmm\/(acpi|cpuid|devices|elf-loader|ept|msr-io-bitmaps)(\/|$)/];
// The pure packages only some runs use stay outside too, required on first use (lazyModules):
// the gdb stub (--gdb), virtio (a disk, net, vsock, rng or virtio console) and the x86 decoder
// and emulator (--emulate). Inlined, their ~180 KB were compiled or deserialised, and their
// module top-levels run, on every `tsvmm run` (~5 ms of the hello run, bench tsvmm-run-hello).
// The one-copy rule holds: each depends on @tsvmm/abi alone (checkOneCopy).
const LAZY_PACKAGES = ["@tsvmm/gdbstub", "@tsvmm/virtio", "@tsvmm/x86"];

// Node built-ins the bin loads only when a feature uses them: node:crypto (snapshots, virtio-rng,
// the emulator), node:net (gdb stub, API socket, vsock), node:perf_hooks (Performance is global),
// node:tty (itself loads node:net; asked only before loading a large kernel), node:zlib (a
// gzip-compressed bzImage payload; it loads node:stream, ~2 ms). Required at start-up they cost
// ~7 ms of every `tsvmm run`.
const LAZY_BUILTINS = ["crypto", "net", "perf_hooks", "tty", "zlib"];

/**
 * Each lazy module (a built-in, or a package kept out of the bundle) becomes a module of getters,
 * one per export it has (listed at build time), that require it on first use. Importers read
 * `ns.name` at each use (esbuild's CommonJS interop copies getters, never values), so nothing
 * loads it before a feature does.
 */
function lazyModules(builtins: readonly string[], packages: readonly string[]): EsbuildPlugin {
  const req = createRequire(import.meta.url);
  const esc = (s: string) => s.replace(/[/\\^$.*+?()[\]{}|-]/g, "\\$&");
  const filter = new RegExp(`^((node:)?(${builtins.join("|")})|${packages.map(esc).join("|")})$`);
  return {
    name: "tsvmm-lazy-modules",
    setup(b) {
      b.onResolve({ filter }, (a) =>
        // The getters' own require is the real module.
        a.namespace === "tsvmm-lazy" ? { path: a.path, external: true } : { path: a.path.startsWith("@") ? a.path : `node:${a.path.replace(/^node:/, "")}`, namespace: "tsvmm-lazy" },
      );
      b.onLoad({ filter: /.*/, namespace: "tsvmm-lazy" }, (a) => {
        const keys = Object.keys(req(a.path) as object).filter((k) => k !== "default" && k !== "__esModule");
        return {
          loader: "js",
          contents: `"use strict";
let m;
const load = () => (m ??= require(${JSON.stringify(a.path)}));
for (const k of ${JSON.stringify(keys)}) Object.defineProperty(exports, k, { enumerable: true, get: () => load()[k] });
Object.defineProperty(exports, "default", { enumerable: false, get: load });
`,
        };
      });
    },
  };
}

/**
 * Fails the build if a package the bin bundle requires at run time depends on one it carries
 * inside: that package would then exist twice in the bin's process (two TsvmmError classes, two
 * of every layout), which `instanceof` and the CLI's error handling do not survive.
 */
function checkOneCopy(bundlePath: string): void {
  const req = createRequire(import.meta.url);
  const text = readFileSync(bundlePath, "utf8");
  const external = new Set([...text.matchAll(/require\("(@tsvmm\/[\w-]+)"\)/g)].map((m) => m[1]!));
  for (const id of external) {
    let dir = dirname(req.resolve(id));
    while (!safeExists(join(dir, "package.json"))) dir = dirname(dir);
    const deps = Object.keys((JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { dependencies?: Record<string, string> }).dependencies ?? {});
    const twice = deps.filter((d) => BIN_INLINE.some((r) => r.test(d)));
    if (twice.length > 0) throw new Error(`tsvmm-bin.cjs requires ${id}, which depends on ${twice.join(", ")}, bundled into tsvmm-bin.cjs too: inline ${id} or keep them external`);
  }
}

function safeExists(p: string): boolean {
  try {
    readFileSync(p);
    return true;
  } catch {
    return false;
  }
}

export default defineConfig((cli) => {
  const outDir = cli.outDir ?? "dist";
  const common: Options = {
    tsconfig: "tsconfig.build.json",
    sourcemap: true,
    target: "node20",
  };
  return {
    ...common,
    entry: { index: "src/index.ts", cli: "src/cli.ts" },
    format: ["esm", "cjs"],
    dts: { compilerOptions: { composite: false } },
    outDir,
    clean: true,
    // Bundled: loading zod from its many files cost ~60 ms of every `tsvmm run` (bench tsvmm-run-hello).
    noExternal: ["zod"],
    // The bin's own bundle (bin/tsvmm.cjs loads it): one file instead of eleven packages to
    // resolve, read and compile on every `tsvmm run`, tree-shaken from their ESM builds, so that
    // one V8 code cache covers nearly all of it. Built after the main build, whose `clean` would
    // otherwise race with it. Library users keep dist/index.* and dist/cli.* with every package
    // as an ordinary dependency.
    onSuccess: async () => {
      await build({
        ...common,
        config: false,
        silent: true,
        entry: { "tsvmm-bin": "src/cli.ts" },
        format: ["cjs"],
        outDir,
        clean: false,
        dts: false,
        noExternal: ["zod", ...BIN_INLINE, ...LAZY_PACKAGES],
        esbuildPlugins: [lazyModules(LAZY_BUILTINS, LAZY_PACKAGES)],
        // tsup's own handling of `node:` imports would claim them before the plugin sees them.
        removeNodeProtocol: false,
        // Less to read, hash and (on a cache miss) compile; names stay, and the source map maps back.
        minifyWhitespace: true,
      });
      checkOneCopy(join(outDir, "tsvmm-bin.cjs"));
    },
  };
});
