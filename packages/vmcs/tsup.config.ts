import { defineConfig } from "tsup";

export default defineConfig({
  entry: { index: "src/index.ts", arbitraries: "src/arbitraries/index.ts", cli: "src/cli.ts" },
  format: ["esm", "cjs"],
  // Shared chunks in both formats: `@tsvmm/vmcs` and `@tsvmm/vmcs/arbitraries` loaded the same way
  // see one VmcsState class (CJS used to bundle a private copy into each entry).
  splitting: true,
  // import.meta.url in the CJS build (the CLI finds its package.json for --version).
  shims: true,
  dts: { compilerOptions: { composite: false } },
  tsconfig: "tsconfig.build.json",
  clean: true,
  sourcemap: true,
  target: "node20",
});
