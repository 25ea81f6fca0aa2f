import { defineConfig } from "tsup";

export default defineConfig({
  entry: { index: "src/index.ts", "cli": "src/cli.ts" },
  format: ["esm", "cjs"],
  dts: { compilerOptions: { composite: false } },
  tsconfig: "tsconfig.build.json",
  clean: true,
  sourcemap: true,
  target: "node20",
  // Bundled: loading zod from its many files cost ~60 ms of every `tsvmm run` (bench tsvmm-run-hello).
  noExternal: ["zod"],
});
