import type { GuestMemory } from "@tsvmm/abi";
import { type GdbListenAddress, GdbServer, GdbStubError, isLoopbackHost, parseListenAddress } from "@tsvmm/gdbstub";
import type { Vcpu } from "@tsvmm/kvm-backend";
import { GdbTargetError } from "./errors.js";
import type { GuestDebugSupport } from "./probe.js";
import { KvmDebugTarget } from "./target.js";

/** A gdb stub for a VM (builder `.gdb()`, CLI `--gdb`). */
export interface GdbOptions {
  /** "127.0.0.1:1234", ":1234", "[::1]:1234", "unix:/path" or "/path". Port 0 picks a free port (see `onListening`). */
  readonly address: string;
  /** Hold every vCPU before its first instruction until gdb resumes it (`--gdb-wait`). Default false: gdb attaches to the running VM. */
  readonly wait?: boolean;
  /** Listen beyond loopback (`--gdb-allow-remote`): the protocol has no authentication. */
  readonly allowRemote?: boolean;
  /** Told the bound address once listening (the real port when 0 was asked). */
  readonly onListening?: (address: GdbListenAddress) => void;
  /** A debugger connected / left. */
  readonly onConnect?: (remote: string) => void;
  readonly onDisconnect?: () => void;
  /** What the host's KVM delivers, when already known (default: probed once per process). */
  readonly support?: GuestDebugSupport;
}

/** Throws GDB_TARGET_ADDRESS unless `address` parses and is loopback or a Unix socket (or remote is allowed). */
export function checkGdbAddress(address: string, allowRemote = false): GdbListenAddress {
  let parsed: GdbListenAddress;
  try {
    parsed = parseListenAddress(address);
  } catch (e) {
    throw new GdbTargetError("GDB_TARGET_ADDRESS", e instanceof GdbStubError ? e.message : String(e), { cause: e });
  }
  if ("host" in parsed && !allowRemote && !isLoopbackHost(parsed.host)) {
    throw new GdbTargetError("GDB_TARGET_ADDRESS", `refusing to serve gdb on ${parsed.host}: the gdb protocol has no authentication; allow it explicitly (--gdb-allow-remote)`);
  }
  return parsed;
}

export interface GdbAttachment {
  readonly target: KvmDebugTarget;
  readonly server: GdbServer;
  /** Resolves once the server listens (the VM waits for it before its first instruction). */
  readonly ready: Promise<void>;
  /** Close the connection and the server, remove a Unix socket file. */
  close(): Promise<void>;
}

/** The target over these vCPUs and a server for it, listening at `o.address`. */
export function attachGdb(o: GdbOptions, vm: { vcpus: readonly Vcpu[]; memory: GuestMemory; kill: () => void }): GdbAttachment {
  const address = checkGdbAddress(o.address, o.allowRemote);
  const target = new KvmDebugTarget({ vcpus: vm.vcpus, memory: vm.memory, kill: vm.kill, wait: o.wait, support: o.support });
  const server = new GdbServer(target, { allowRemote: o.allowRemote, onConnect: o.onConnect, onDisconnect: o.onDisconnect });
  const ready = server.listen(address).then((bound) => o.onListening?.(bound));
  // A failed listen is reported through run(); keep it from being an unhandled rejection meanwhile.
  ready.catch(() => {});
  return {
    target,
    server,
    ready,
    close: async () => {
      // Let a stop reply for the VM's end (W/X) leave before the socket goes.
      await new Promise<void>((r) => setImmediate(r));
      await server.close();
    },
  };
}
