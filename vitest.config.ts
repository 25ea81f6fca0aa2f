import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

const root = fileURLToPath(new URL(".", import.meta.url));

// Tests run against each package's source, so `npm test` needs no build of the TypeScript.
// `@tsvmm/pkg` -> packages/pkg/src/index.ts, `@tsvmm/pkg/sub` -> packages/pkg/src/sub/index.ts or sub.ts.
export default defineConfig({
  resolve: {
    alias: [
      { find: /^@tsvmm\/([\w-]+)$/, replacement: `${root}packages/$1/src/index.ts` },
      { find: /^@tsvmm\/([\w-]+)\/([\w-]+)$/, replacement: `${root}packages/$1/src/$2` },
    ],
  },
  test: {
    include: ["packages/*/test/**/*.test.ts", "test-kernels/test/**/*.test.ts", "test/**/*.test.ts"],
    // Native addon + KVM file descriptors: separate processes are the honest isolation.
    pool: "forks",
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // One line per test case, so a CI log shows every guest and check by name.
    reporters: ["verbose"],
  },
});
