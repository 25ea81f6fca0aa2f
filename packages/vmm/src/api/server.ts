import { existsSync, lstatSync, unlinkSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { TsvmmError } from "@tsvmm/abi";
import type { Vmm } from "../vmm.js";
import { ApiError } from "./errors.js";
import { API_MAX_LINE, API_OPS, type ApiOp, type ApiRequest, type ApiResponse, type ApiStatus } from "./protocol.js";

/** Is something listening at `path`? A socket file nobody answers on is stale. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/**
 * Serves one VM's control socket: pause, resume, snapshot DIR, stop and status as JSON lines.
 * Requests are carried out one at a time, in arrival order across all connections. The socket
 * file is removed by close(), and at process exit if close() never ran.
 */
export class ApiServer {
  private queue: Promise<void> = Promise.resolve();
  private readonly sockets = new Set<Socket>();
  private closed = false;
  private readonly onExit = () => this.unlink();

  private constructor(
    readonly path: string,
    private readonly server: Server,
    private readonly vmm: Vmm,
  ) {
    process.once("exit", this.onExit);
  }

  /** Listen at `path`. A stale socket file there is replaced; anything else is refused. */
  static async listen(path: string, vmm: Vmm): Promise<ApiServer> {
    if (existsSync(path)) {
      const st = lstatSync(path);
      if (!st.isSocket()) throw new ApiError("API_LISTEN_FAILED", `${path} exists and is not a socket`);
      if (await answers(path)) throw new ApiError("API_LISTEN_FAILED", `${path}: another VMM is serving this socket`);
      unlinkSync(path);
    }
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", (e) => reject(new ApiError("API_LISTEN_FAILED", `cannot listen at ${path}: ${(e as Error).message}`, { cause: e })));
      server.listen(path, () => resolve());
    });
    const api = new ApiServer(path, server, vmm);
    server.on("connection", (s) => api.accept(s));
    return api;
  }

  private accept(s: Socket): void {
    this.sockets.add(s);
    s.on("close", () => this.sockets.delete(s));
    s.on("error", () => {});
    let buf = "";
    s.setEncoding("utf8");
    s.on("data", (chunk: string) => {
      buf += chunk;
      let nl = buf.indexOf("\n");
      while (nl >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line.length > 0) this.enqueue(s, line);
        nl = buf.indexOf("\n");
      }
      if (buf.length > API_MAX_LINE) {
        this.send(s, { ok: false, error: { code: "API_BAD_REQUEST", message: `a request line is longer than ${API_MAX_LINE} bytes` } });
        s.end();
      }
    });
  }

  private enqueue(s: Socket, line: string): void {
    this.queue = this.queue.then(() => this.handle(s, line)).catch(() => {});
  }

  private send(s: Socket, r: ApiResponse): void {
    if (!s.destroyed) s.write(`${JSON.stringify(r)}\n`);
  }

  private status(): ApiStatus {
    const v = this.vmm;
    const state = v.stopping ? "stopped" : v.paused ? "paused" : v.snapshotAccess().started ? "running" : "ready";
    return { state, vcpus: v.vcpus.length, memoryBytes: v.vm.closed ? 0 : (v.vm.memorySlots.find((m) => m.slot === 0)?.size ?? 0), exits: v.exits };
  }

  private async handle(s: Socket, line: string): Promise<void> {
    let req: ApiRequest;
    try {
      const parsed = JSON.parse(line) as unknown;
      if (typeof parsed !== "object" || parsed === null || !API_OPS.includes((parsed as ApiRequest).op)) {
        throw new ApiError("API_BAD_REQUEST", `a request is {"op": ${API_OPS.map((o) => `"${o}"`).join("|")}, ...}`);
      }
      req = parsed as ApiRequest;
    } catch (e) {
      const message = e instanceof ApiError ? e.message : "the request is not JSON";
      this.send(s, { ok: false, error: { code: "API_BAD_REQUEST", message } });
      return;
    }
    const { id, op } = req;
    try {
      const out = await this.run(op, req, s);
      this.send(s, { id, ok: true, op, ...out });
    } catch (e) {
      const code = e instanceof TsvmmError ? String(e.code) : "API_INTERNAL";
      this.send(s, { id, ok: false, op, error: { code, message: (e as Error).message } });
    }
  }

  private async run(op: ApiOp, req: ApiRequest, s: Socket): Promise<Partial<Extract<ApiResponse, { ok: true }>>> {
    const v = this.vmm;
    switch (op) {
      case "status":
        return { status: this.status() };
      case "pause":
        if (v.stopping) throw new ApiError("API_REQUEST_FAILED", "the VM has stopped");
        await v.pause();
        return { status: this.status() };
      case "resume":
        v.resume();
        return { status: this.status() };
      case "stop":
        v.kill("stopped through the control socket", "stopped");
        return { status: this.status() };
      case "snapshot": {
        if (typeof req.dir !== "string" || req.dir.length === 0) throw new ApiError("API_BAD_REQUEST", 'snapshot needs "dir": the directory to create');
        let last = 0;
        const info = await v.snapshot(req.dir, {
          onProgress: (doneBytes, totalBytes) => {
            // At most ~1% steps: progress is for people, not a byte counter.
            if (doneBytes !== totalBytes && doneBytes - last < totalBytes / 100) return;
            last = doneBytes;
            this.send(s, { id: req.id, progress: { doneBytes, totalBytes } });
          },
        });
        return { snapshot: { dir: info.dir, memoryBytes: info.memoryBytes, dataBytes: info.dataBytes, stateBytes: info.stateBytes, durationMs: info.durationMs }, status: this.status() };
      }
    }
  }

  private unlink(): void {
    try {
      if (existsSync(this.path) && lstatSync(this.path).isSocket()) unlinkSync(this.path);
    } catch {
      // Gone already, or not ours to remove.
    }
  }

  /** Stop listening, drop connections, remove the socket file. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    process.off("exit", this.onExit);
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
    this.unlink();
  }
}
