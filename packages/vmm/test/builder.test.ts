import { requireKvm } from "@tsvmm/kvm-backend";
import { VmmBuilder, bundledHelloPath } from "@tsvmm/vmm";
import { describe, expect, it } from "vitest";

const hasKvm = requireKvm();

describe.runIf(hasKvm)("VmmBuilder", () => {
  it("boots the bundled hello guest and returns its exit", async () => {
    let out = "";
    const r = await new VmmBuilder().kernelFile(bundledHelloPath()).memoryMiB(32).console((b) => { out += b.toString(); }).watchdog({ timeoutMs: 20_000 }).run();
    expect(out).toContain("Hello");
    expect(r).toMatchObject({ reason: "guest-exit", exitCode: 0 });
  });
});
