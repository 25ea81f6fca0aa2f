import { execFileSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { requireKvm } from "@tsvmm/kvm-backend";
import { bundledHelloPath, VmmBuilder } from "@tsvmm/vmm";
import { beforeAll, describe, expect, it } from "vitest";

const hasKvm = requireKvm();
const root = join(__dirname, "..", "..", "..");
const guest = (name: string) => join(root, "test-kernels", "out", `${name}.elf`);
const openFds = () => readdirSync("/proc/self/fd").length;

beforeAll(() => {
  execFileSync("flock", ["/tmp/tsvmm-test-kernels.lock", "make", "-s", "-C", join(root, "test-kernels")]);
});

describe.runIf(hasKvm)("VmmBuilder", () => {
  it("boots the bundled hello guest and returns its exit", async () => {
    let out = "";
    const r = await new VmmBuilder().kernelFile(bundledHelloPath()).memoryMiB(32).console((b) => { out += b.toString(); }).watchdog({ timeoutMs: 20_000 }).run();
    expect(out).toContain("Hello from a tsvmm guest (uart)");
    expect(r).toMatchObject({ reason: "guest-exit", exitCode: 0 });
    expect(r.exits).toBeGreaterThan(10);
  });

  it("reports guest REPORT/REPORT_VALUE hypercalls", async () => {
    const reports: string[] = [];
    await new VmmBuilder().kernelFile(guest("exit-code")).memoryMiB(16).onReport((n, p) => reports.push(`${n}=${p}`)).run();
    expect(reports).toEqual(["before-exit=true"]);
  });

  it("the watchdog stops a guest that stops answering (no exit for stallMs), and everything is released", async () => {
    const fds0 = openFds();
    const vmm = new VmmBuilder().kernelFile(guest("runaway-loop")).memoryMiB(16).watchdog({ stallMs: 300, timeoutMs: 20_000 }).build();
    expect(openFds()).toBeGreaterThan(fds0);
    const t0 = Date.now();
    const r = await vmm.run();
    expect(r.reason).toBe("timeout");
    expect(r.exitCode).toBe(124);
    expect(r.message).toMatch(/no vCPU exited for 300 ms/);
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(openFds()).toBe(fds0);
    expect(vmm.vm.closed).toBe(true);
  });

  it("kill() stops a running VM from outside", async () => {
    const vmm = new VmmBuilder().kernelFile(guest("runaway-loop")).memoryMiB(16).build();
    const p = vmm.run();
    setTimeout(() => vmm.kill("operator stop"), 100);
    const r = await p;
    expect(r).toMatchObject({ reason: "timeout", message: "operator stop" });
  });

  it("an exit handler that throws stops the VM with a report, never the process", async () => {
    const vmm = new VmmBuilder().kernelFile(bundledHelloPath()).memoryMiB(16).build();
    vmm.pio.observer = () => {
      throw new Error("observer bug");
    };
    const r = await vmm.run();
    expect(r).toMatchObject({ reason: "guest-error", exitCode: 126 });
    expect(r.message).toMatch(/io exit could not be handled: observer bug/);
    expect(vmm.vm.closed).toBe(true);
  });

  it("a Vmm runs once", async () => {
    const vmm = new VmmBuilder().kernelFile(guest("exit-code")).memoryMiB(16).build();
    await vmm.run();
    await expect(vmm.run()).rejects.toMatchObject({ code: "VMM_STATE" });
  });

  it("builder arguments are checked", () => {
    expect(() => new VmmBuilder().memoryMiB(0)).toThrowError(expect.objectContaining({ code: "VMM_BUILD_INVALID" }));
    expect(() => new VmmBuilder().vcpus(0)).toThrowError(expect.objectContaining({ code: "VMM_BUILD_INVALID" }));
    expect(() => new VmmBuilder().build()).toThrowError(expect.objectContaining({ code: "VMM_BUILD_INVALID" }));
    expect(() => new VmmBuilder().kernelFile("/nonexistent")).toThrowError(expect.objectContaining({ code: "VMM_FILE_UNREADABLE" }));
  });
});
