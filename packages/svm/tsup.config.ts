import { defineConfig } from "tsup";

export default defineConfig({
  entry: { index: "src/index.ts", arbitraries: "src/arbitraries/index.ts", cli: "src/cli.ts" },
  format: ["esm", "cjs"],
  // Entries share one chunk in both formats, so `@tsvmm/svm` and `@tsvmm/svm/arbitraries` hold
  // the same VmcbState class (tsup's code splitting is on for CJS too only when asked).
  splitting: true,
  // fast-check is an optional peer: the consumer's copy, never a bundled one.
  external: ["fast-check"],
  dts: { compilerOptions: { composite: false } },
  tsconfig: "tsconfig.build.json",
  clean: true,
  sourcemap: true,
  target: "node20",
});
