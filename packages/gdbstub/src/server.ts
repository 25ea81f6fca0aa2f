import { existsSync, lstatSync, unlinkSync } from "node:fs";
import { createServer, isIP, type Server, type Socket } from "node:net";
import { GdbStubError } from "./errors.js";
import { GdbSession, type GdbSessionOptions } from "./session.js";
import type { DebugTarget } from "./target.js";

/** Where GdbServer listens: a TCP host and port (0 = any free port) or a Unix socket path. */
export type GdbListenAddress = { readonly host: string; readonly port: number } | { readonly path: string };

export interface GdbServerOptions extends GdbSessionOptions {
  /** Bind to an address other than loopback. Off by default: gdb's protocol has no authentication. */
  readonly allowRemote?: boolean;
  /** A debugger connected (only one at a time is served). */
  readonly onConnect?: (remote: string) => void;
  /** The debugger's connection ended and the target has been released (detached or killed). */
  readonly onDisconnect?: () => void;
}

/** A peer that stops reading is cut off rather than let replies pile up in memory. */
const MAX_PENDING_WRITE = 1 << 20;

/**
 * "127.0.0.1:1234", "[::1]:1234", "localhost:1234", ":1234" (loopback), "unix:/path" or "/path".
 * Throws GDBSTUB_INVALID_ARGUMENT on anything else.
 */
export function parseListenAddress(text: string): GdbListenAddress {
  if (text.startsWith("unix:")) return { path: text.slice(5) };
  if (text.startsWith("/") || text.startsWith("./")) return { path: text };
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text);
  if (!m || Number(m[3]) > 65535) throw new GdbStubError("GDBSTUB_INVALID_ARGUMENT", `not a listen address: "${text}" (want host:port or unix:/path)`);
  const host = m[1] ?? m[2] ?? "";
  return { host: host === "" ? "127.0.0.1" : host, port: Number(m[3]) };
}

/** True for 127.0.0.0/8, ::1, ::ffff:127.x.y.z and the name "localhost". */
export function isLoopbackHost(host: string): boolean {
  if (host === "localhost") return true;
  const v4 = host.startsWith("::ffff:") ? host.slice(7) : host;
  if (isIP(v4) === 4) return v4.split(".")[0] === "127";
  return isIP(host) === 6 && /^(0{0,4}:){2,7}0{0,3}1$|^::1$/.test(host);
}

/**
 * Serves one gdb connection at a time over TCP or a Unix socket, each with a fresh
 * {@link GdbSession} over the same target. A second debugger is refused while one is
 * connected. `close()` ends the connection (releasing the target), stops listening and
 * removes the socket file it created.
 */
export class GdbServer {
  private server: Server | undefined;
  private socket: Socket | undefined;
  private released: Promise<void> = Promise.resolve();
  private socketPath: string | undefined;
  private state: "new" | "listening" | "closed" = "new";

  constructor(
    private readonly target: DebugTarget,
    private readonly options: GdbServerOptions = {},
  ) {}

  /** Whether a debugger is connected now. */
  get connected(): boolean {
    return this.socket !== undefined;
  }

  /** Start listening; resolves with the bound address (the real port when 0 was asked). */
  async listen(address: GdbListenAddress | string): Promise<GdbListenAddress> {
    if (this.state !== "new") throw new GdbStubError("GDBSTUB_SERVER_STATE", `listen on a ${this.state} server`);
    const addr = typeof address === "string" ? parseListenAddress(address) : address;
    if ("host" in addr && !isLoopbackHost(addr.host) && !this.options.allowRemote) {
      throw new GdbStubError("GDBSTUB_REMOTE_REFUSED", `refusing to listen on ${addr.host}: the gdb protocol has no authentication; pass allowRemote: true to bind beyond loopback`);
    }
    this.state = "listening";
    const server = createServer({ noDelay: true }, (s) => this.accept(s));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      const done = (): void => {
        server.off("error", reject);
        resolve();
      };
      if ("path" in addr) server.listen(addr.path, done);
      else server.listen(addr.port, addr.host === "localhost" ? "127.0.0.1" : addr.host, done);
    }).catch((e: unknown) => {
      this.state = "closed";
      this.server = undefined;
      throw e;
    });
    server.on("error", () => {});
    if ("path" in addr) {
      this.socketPath = addr.path;
      return { path: addr.path };
    }
    const bound = server.address();
    if (bound === null || typeof bound === "string") throw new GdbStubError("GDBSTUB_SERVER_STATE", "server has no TCP address");
    return { host: bound.address, port: bound.port };
  }

  /** Disconnect the debugger (the target is detached as on a lost connection) and stop listening. */
  async close(): Promise<void> {
    if (this.state === "closed") return;
    this.state = "closed";
    const server = this.server;
    this.server = undefined;
    const socket = this.socket;
    if (socket) {
      const gone = new Promise<void>((resolve) => (socket.closed ? resolve() : socket.once("close", () => resolve())));
      socket.destroy();
      await gone;
      // The close handler has now replaced `released` with the session's dispose.
    }
    await this.released;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    if (this.socketPath) {
      // Node leaves the file of a Unix-socket server behind on some platforms; we made it, we remove it.
      try {
        if (existsSync(this.socketPath) && lstatSync(this.socketPath).isSocket()) unlinkSync(this.socketPath);
      } catch {
        // Already gone.
      }
    }
  }

  private accept(socket: Socket): void {
    if (this.socket || this.state !== "listening") {
      socket.destroy();
      return;
    }
    this.socket = socket;
    socket.setNoDelay?.(true);
    socket.on("error", () => {});
    // A debugger that reconnects at once waits for the previous session to release the target.
    socket.pause();
    void this.released.then(() => {
      if (socket.destroyed || this.state !== "listening") {
        if (this.socket === socket) this.socket = undefined;
        socket.destroy();
        return;
      }
      this.serve(socket);
    });
  }

  private serve(socket: Socket): void {
    const session = new GdbSession(
      this.target,
      {
        write: (bytes) => {
          if (socket.destroyed) return;
          if (socket.writableLength > MAX_PENDING_WRITE) {
            socket.destroy();
            return;
          }
          socket.write(bytes);
        },
        close: () => socket.end(),
      },
      this.options,
    );
    this.options.onConnect?.(`${socket.remoteAddress ?? "unix"}:${socket.remotePort ?? ""}`);
    socket.on("data", (chunk: Buffer) => session.receive(chunk));
    socket.once("close", () => {
      if (this.socket === socket) this.socket = undefined;
      this.released = session.dispose().then(() => this.options.onDisconnect?.());
    });
    socket.resume();
  }
}
