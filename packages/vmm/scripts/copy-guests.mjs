// Ship the hello guest inside the package so `tsvmm run` works from an npm install, not only
// from the repository. Built by `make -C test-kernels` before the packages are built.
import { copyFileSync, existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const pkg = join(dirname(fileURLToPath(import.meta.url)), "..");
const src = join(pkg, "..", "..", "test-kernels", "out", "hello.elf");
if (!existsSync(src)) {
  console.error(`copy-guests: ${src} is missing; run \`make -C test-kernels\` first`);
  process.exit(1);
}
mkdirSync(join(pkg, "guests"), { recursive: true });
copyFileSync(src, join(pkg, "guests", "hello.elf"));
