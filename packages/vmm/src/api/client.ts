import { connect, type Socket } from "node:net";
import { ApiError } from "./errors.js";
import type { ApiOp, ApiResponse } from "./protocol.js";

type Answer = Extract<ApiResponse, { ok: true }>;

/** A connection to a VM's control socket; requests are answered in order. */
export class ApiClient {
  private buf = "";
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (r: Answer) => void; reject: (e: Error) => void; progress?: (done: number, total: number) => void }>();
  private ended = false;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => this.data(chunk));
    const fail = (e?: Error) => {
      this.ended = true;
      for (const w of this.waiting.values()) w.reject(e ?? new ApiError("API_CLOSED", "the VMM closed the control socket before answering"));
      this.waiting.clear();
    };
    socket.on("close", () => fail());
    socket.on("error", (e) => fail(new ApiError("API_CLOSED", `control socket: ${e.message}`, { cause: e })));
  }

  static connect(path: string): Promise<ApiClient> {
    return new Promise((resolve, reject) => {
      const s = connect(path);
      s.once("connect", () => resolve(new ApiClient(s)));
      s.once("error", (e: NodeJS.ErrnoException) => reject(new ApiError("API_CONNECT_FAILED", `no VMM answers at ${path} (${e.code ?? e.message})`, { cause: e })));
    });
  }

  private data(chunk: string): void {
    this.buf += chunk;
    let nl = this.buf.indexOf("\n");
    while (nl >= 0) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      nl = this.buf.indexOf("\n");
      let r: ApiResponse;
      try {
        r = JSON.parse(line) as ApiResponse;
      } catch {
        continue;
      }
      const w = typeof r.id === "number" ? this.waiting.get(r.id) : undefined;
      if (w === undefined) continue;
      if ("progress" in r) {
        w.progress?.(r.progress.doneBytes, r.progress.totalBytes);
        continue;
      }
      this.waiting.delete(r.id as number);
      if (r.ok) w.resolve(r);
      else w.reject(new ApiError("API_REQUEST_FAILED", `${r.error.code}: ${r.error.message}`));
    }
  }

  /** Send one request; resolves with the answer, rejects with ApiError when the VMM refused it. */
  request(op: ApiOp, args: { dir?: string } = {}, onProgress?: (done: number, total: number) => void): Promise<Answer> {
    if (this.ended) return Promise.reject(new ApiError("API_CLOSED", "the control socket is closed"));
    const id = this.nextId++;
    return new Promise<Answer>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject, progress: onProgress });
      this.socket.write(`${JSON.stringify({ id, op, ...args })}\n`);
    });
  }

  close(): void {
    this.socket.end();
  }
}
