import { build, defineConfig, type Options } from "tsup";

// The pure @tsvmm packages the bin bundle carries inside itself. @tsvmm/abi and
// @tsvmm/kvm-backend stay outside: kvm-backend finds its native addon beside its own files, and
// abi is the one copy both share (TsvmmError and the layouts must not exist twice in a process).
const BIN_INLINE = [/^@tsvmm\/(acpi|cpuid|devices|elf-loader|ept|gdbstub|msr-io-bitmaps|virtio|x86)(\/|$)/];

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
        noExternal: ["zod", ...BIN_INLINE],
        // Less to read, hash and (on a cache miss) compile; names stay, and the source map maps back.
        minifyWhitespace: true,
      });
    },
  };
});
