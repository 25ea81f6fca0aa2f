/**
 * The control socket protocol: JSON lines over a Unix stream socket. A client writes one request
 * object per line; the server answers each with one line, in order; a snapshot request may first
 * get `progress` lines. See README-snapshot.md, "Control socket".
 */
export type ApiOp = "pause" | "resume" | "snapshot" | "stop" | "status";
export const API_OPS: readonly ApiOp[] = ["pause", "resume", "snapshot", "stop", "status"];

export interface ApiRequest {
  /** Echoed in every line that answers this request (any JSON value). */
  id?: unknown;
  op: ApiOp;
  /** snapshot: the directory to create. */
  dir?: string;
}

export interface ApiStatus {
  state: "ready" | "running" | "paused" | "stopped";
  vcpus: number;
  memoryBytes: number;
  exits: number;
}

export type ApiResponse =
  | { id?: unknown; ok: true; op: ApiOp; status?: ApiStatus; snapshot?: { dir: string; memoryBytes: number; dataBytes: number; stateBytes: number; durationMs: number } }
  | { id?: unknown; ok: false; op?: string; error: { code: string; message: string } }
  | { id?: unknown; progress: { doneBytes: number; totalBytes: number } };

/** A request line longer than this is refused and the connection closed. */
export const API_MAX_LINE = 64 * 1024;
