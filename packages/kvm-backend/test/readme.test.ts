import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as backend from "@tsvmm/kvm-backend";
import { requireKvm } from "@tsvmm/kvm-backend";
import { describe, expect, it } from "vitest";

const readme = readFileSync(join(dirname(fileURLToPath(import.meta.url)), "..", "README.md"), "utf8");
const blocks = [...readme.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]!);

/** Run a README block as written, with its import of this package bound to the source. */
async function runBlock(code: string): Promise<string[]> {
  const logs: string[] = [];
  const body = code.replace(/import \{([^}]*)\} from "@tsvmm\/kvm-backend";/, "const {$1} = mod;");
  expect(body).not.toContain("import ");
  const AsyncFunction = Object.getPrototypeOf(async () => {}).constructor as new (...args: string[]) => (...a: unknown[]) => Promise<void>;
  await new AsyncFunction("mod", "console", body)(backend, { log: (...a: unknown[]) => logs.push(a.join(" ")) });
  return logs;
}

describe.runIf(requireKvm())("README examples", () => {
  it("has the four examples", () => {
    expect(blocks).toHaveLength(4);
  });
  it("10 bytes of real-mode code print what the README says", async () => {
    expect(await runBlock(blocks[0]!)).toEqual(["out 0x10 <- 0x42", "out 0x10 <- 0x43", "hlt"]);
  });
  it("an MSI through irqfd reaches the guest's handler for its vector", async () => {
    expect(await runBlock(blocks[1]!)).toEqual(["io 0x70 <- 0x41"]);
  });
  it("two OUTs to a coalesced port come out of the ring before the HLT, without exits of their own", async () => {
    // This host offers KVM_CAP_COALESCED_PIO (measured by the coalesced tests); elsewhere the OUTs would exit first.
    expect(await runBlock(blocks[3]!)).toEqual(["0x3f8 <- h", "0x3f8 <- i", "hlt"]);
  });
  it("two vCPUs on their own threads add to one shared-memory counter, and each HLT comes back here", async () => {
    expect(await runBlock(blocks[2]!)).toEqual(["hlt after 1001 exits, hlt after 1001 exits", "2000"]);
  });
});
