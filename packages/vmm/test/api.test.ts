import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { requireKvm } from "@tsvmm/kvm-backend";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const exec = promisify(execFile);
const hasKvm = requireKvm();
const root = join(__dirname, "..", "..", "..");
const bin = join(root, "packages", "vmm", "bin", "tsvmm.cjs");
const guest = join(root, "test-kernels", "out", "pause-count.elf");
const work = mkdtempSync(join(tmpdir(), "tsvmm-api-"));

beforeAll(() => {
  execFileSync("flock", ["/tmp/tsvmm-test-kernels.lock", "make", "-s", "-C", join(root, "test-kernels")]);
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function ctl(...args: string[]): Promise<{ status: number; out: string; err: string }> {
  try {
    const r = await exec(process.execPath, [bin, "ctl", ...args], { encoding: "utf8" });
    return { status: 0, out: r.stdout, err: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { status: x.code, out: x.stdout, err: x.stderr };
  }
}

function started(args: string[], sock: string): Promise<{ child: ChildProcess; exited: Promise<{ code: number | null; err: string }> }> {
  const child = spawn(process.execPath, [bin, ...args, "--api-sock", sock], { stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  child.stderr!.setEncoding("utf8").on("data", (s: string) => {
    err += s;
  });
  const exited = new Promise<{ code: number | null; err: string }>((r) => child.on("close", (code) => r({ code, err })));
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const poll = () => {
      if (existsSync(sock)) resolve({ child, exited });
      else if (Date.now() - t0 > 10_000 || child.exitCode !== null) reject(new Error(`no socket: ${err}`));
      else setTimeout(poll, 10);
    };
    poll();
  });
}

describe.runIf(hasKvm)("control socket", () => {
  it("tsvmm run --api-sock serves status, pause, snapshot, resume and stop; tsvmm restore serves it too; the socket file goes away", { timeout: 60_000 }, async () => {
    const sock = join(work, "vm.sock");
    const { exited } = await started(["run", guest], sock);
    const status = async (path: string) => JSON.parse((await ctl(path, "status")).out) as { ok: boolean; status: { state: string; vcpus: number; memoryBytes: number } };
    expect((await status(sock)).status).toMatchObject({ state: "running", vcpus: 1, memoryBytes: 128 * 2 ** 20 });
    expect(JSON.parse((await ctl(sock, "pause")).out)).toMatchObject({ ok: true, op: "pause", status: { state: "paused" } });
    const dir = join(work, "snap");
    const snap = await ctl(sock, "snapshot", dir);
    expect(snap.status).toBe(0);
    expect(JSON.parse(snap.out)).toMatchObject({ ok: true, op: "snapshot", snapshot: { dir, memoryBytes: 128 * 2 ** 20 }, status: { state: "paused" } });
    expect(existsSync(join(dir, "header.json"))).toBe(true);
    // Saving again into the same directory is refused, and the VM stays as it was.
    const again = await ctl(sock, "snapshot", dir);
    expect(again.status).toBe(1);
    expect(again.err).toMatch(/SNAPSHOT_EXISTS/);
    expect(JSON.parse((await ctl(sock, "resume")).out)).toMatchObject({ ok: true, status: { state: "running" } });
    expect(JSON.parse((await ctl(sock, "stop")).out)).toMatchObject({ ok: true, op: "stop" });
    const end = await exited;
    expect(end.code).toBe(0);
    expect(end.err).toMatch(/stopped through the control socket \[stopped, exit 0/);
    expect(existsSync(sock)).toBe(false);

    const sock2 = join(work, "restored.sock");
    const restored = await started(["restore", dir], sock2);
    expect((await status(sock2)).status).toMatchObject({ state: "running", memoryBytes: 128 * 2 ** 20 });
    await ctl(sock2, "stop");
    expect((await restored.exited).code).toBe(0);
    expect(existsSync(sock2)).toBe(false);
  });

  it("speaks JSON lines: a bad line gets an error line and the connection stays usable; requests are answered in order with their ids", async () => {
    const sock = join(work, "raw.sock");
    const { exited } = await started(["run", guest], sock);
    const lines = await new Promise<string[]>((resolve, reject) => {
      const s = connect(sock);
      let buf = "";
      s.setEncoding("utf8");
      s.on("data", (d: string) => {
        buf += d;
        const got = buf.split("\n").filter((l) => l.length > 0);
        if (got.length === 4) {
          s.end();
          resolve(got);
        }
      });
      s.on("error", reject);
      s.write('not json\n{"op":"frobnicate"}\n{"id":"a","op":"status"}\n{"id":7,"op":"stop"}\n');
    });
    const [bad, unknown, st, stop] = lines.map((l) => JSON.parse(l));
    expect(bad).toMatchObject({ ok: false, error: { code: "API_BAD_REQUEST", message: "the request is not JSON" } });
    expect(unknown).toMatchObject({ ok: false, error: { code: "API_BAD_REQUEST" } });
    expect(st).toMatchObject({ id: "a", ok: true, op: "status" });
    expect(stop).toMatchObject({ id: 7, ok: true, op: "stop" });
    expect((await exited).code).toBe(0);
  }, 30_000);

  it("tsvmm ctl: no VMM at the path is exit 1, a usage error exit 2", async () => {
    const none = await ctl(join(work, "nobody.sock"), "status");
    expect(none.status).toBe(1);
    expect(none.err).toMatch(/^tsvmm ctl: no VMM answers at .*nobody\.sock/);
    const bad = await ctl(join(work, "nobody.sock"), "frobnicate");
    expect(bad.status).toBe(2);
    expect(bad.err).toMatch(/unknown operation "frobnicate"/);
    const noDir = await ctl(join(work, "nobody.sock"), "snapshot");
    expect(noDir.status).toBe(2);
  });
});
