import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { requireKvm } from "@tsvmm/kvm-backend";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { busyboxInitramfs } from "../src/initramfs.js";

// The one full Linux boot of the suite: Debian's cloud vmlinux through PVH on the built `tsvmm`
// CLI with --emulate, to the /init of a busybox initramfs written here (newc cpio, Debian's
// busybox-static from .ci/setup). On this project's PVM host KVM stops the kernel on instructions
// it cannot emulate (lock cmpxchg16b, int3, ...) and user-mode SYSCALL stays at CPL3: the VMM's
// emulator and its SYSCALL fix-up carry it to init. /init prints a marker with the kernel release
// and powers off.
const hasKvm = requireKvm();
const root = join(__dirname, "..", "..", "..");
const cli = join(root, "packages", "vmm", "bin", "tsvmm.cjs");
const CMDLINE = "console=ttyS0 earlyprintk=ttyS0";
const MARKER = "TSVMM-INIT-REACHED";
const BUSYBOX = "/bin/busybox";

let dir = "";
let initramfs = "";
let vmlinux = "";
afterAll(() => rmSync(dir, { recursive: true, force: true }));
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "tsvmm-linux-init-"));
  initramfs = join(dir, "initramfs.cpio");
  const script = `#!/bin/busybox sh\n/bin/busybox echo ${MARKER} $(/bin/busybox uname -r)\n/bin/busybox poweroff -f\n`;
  writeFileSync(initramfs, busyboxInitramfs({ busyboxPath: BUSYBOX, script }));
  const out = execFileSync(process.execPath, [join(root, "packages", "elf-loader", "scripts", "fetch-debian-kernel.mjs")], { encoding: "utf8", timeout: 600_000 });
  vmlinux = (JSON.parse(out.trim().split("\n").pop() ?? "{}") as { vmlinux: string }).vmlinux;
  if (!existsSync(join(root, "packages", "vmm", "dist", "cli.cjs"))) execFileSync("npx", ["tsup"], { cwd: join(root, "packages", "vmm"), stdio: "ignore" });
}, 600_000);

describe.runIf(hasKvm)("Linux to its init (Debian cloud kernel, --emulate)", () => {
  it("vmlinux through PVH runs the busybox /init of our initramfs", async () => {
    expect(existsSync(BUSYBOX), "busybox-static must be installed (.ci/setup)").toBe(true);
    const t0 = performance.now();
    const args = [cli, "run", vmlinux, "--mem", "256", "--cmdline", CMDLINE, "--initrd", initramfs, "--emulate", "--timeout", "1500"];
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    let markerAt = Number.NaN;
    child.stdout.setEncoding("utf8");
    child.stderr.setEncoding("utf8");
    child.stdout.on("data", (s: string) => {
      out += s;
      if (Number.isNaN(markerAt) && out.includes(MARKER)) {
        markerAt = (performance.now() - t0) / 1000;
        // poweroff -f ends the VM through the ACPI PM device (S5); should the kernel only halt, it ends here.
        setTimeout(() => child.kill("SIGKILL"), 60_000).unref();
      }
    });
    child.stderr.on("data", (s: string) => {
      err += s;
    });
    const status = await new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
    const before = out.slice(0, Math.max(0, out.indexOf(MARKER)));
    const lastKernelLine = before.split("\n").filter((l) => /^\[\s*\d+\.\d+\]/.test(l)).at(-1) ?? "";
    process.stderr.write(`linux-init.test: /init marker after ${markerAt.toFixed(1)} s; last kernel line before it: ${lastKernelLine}\nlinux-init.test: ${err.trim().split("\n").at(-1)}\n`);
    expect(out, `no marker; stderr:\n${err}\nconsole tail:\n${out.slice(-3000)}`).toContain(MARKER);
    // The marker line carries the release uname(2) returned: the kernel really ran our /init.
    expect(out).toMatch(new RegExp(`${MARKER} 6\\.\\d+\\.\\d+[^\\n]*cloud-amd64`));
    expect(out).toMatch(/Linux version 6\.\d+\.\d+[^\n]*cloud-amd64/);
    expect(out).toContain(`Command line: ${CMDLINE}`);
    // The builder said what it added for this host, and the kernel got it.
    expect(err).toMatch(/tsvmm: this host's KVM emulates guest kernel code[^\n]*added to the kernel command line: /);
    expect(out).toMatch(/Command line: [^\n]*noxsave/);
    // A VM that ended by itself (poweroff, or a halt) prints its stop line with what was emulated.
    if (status !== null) expect(err).toMatch(/emulated: [^\]]*syscall-fixup \d+/);
  }, 1_600_000);
});
