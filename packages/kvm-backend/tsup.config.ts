import { defineConfig } from "tsup";

export default defineConfig({
  // The vCPU worker's thread is its own entry; ESM splitting gives it and index one copy of the
  // shared classes, so a handlers module importing the package sees the same Vcpu.
  entry: { index: "src/index.ts", "vcpu-worker-thread": "src/vcpu-worker-thread.ts" },
  format: ["esm", "cjs"],
  dts: { compilerOptions: { composite: false } },
  tsconfig: "tsconfig.build.json",
  clean: true,
  sourcemap: true,
  target: "node20",
  shims: true,
});
