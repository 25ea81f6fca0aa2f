import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { KVM_IOCTLS } from "@tsvmm/abi";
import { KvmError } from "./errors.js";

/** What a Runner callback returns to re-enter KVM_RUN without waiting for run(). */
export const RUNNER_CONTINUE = 0;
/** What a Runner callback returns to end the run. */
export const RUNNER_STOP = 1;

/** The addon's surface: system calls returning a value >= 0 or -errno. No policy lives there. */
export interface NativeRunner {
  /** Start KVM_RUN on the runner thread; false if one is in flight. */
  run(): boolean;
  /** Send the kick signal to the runner thread (0 or -errno). */
  kick(): number;
  close(): void;
}
export interface NativeAddon {
  open(path: string, flags: number): number;
  close(fd: number): number;
  ioctl(fd: number, request: number, arg?: number | bigint): number;
  ioctlBuf(fd: number, request: number, buf: Uint8Array): number;
  /** KVM_RUN (the request given to setRunRequest) on `fd` from this thread: 0 or -errno. */
  runHere(fd: number): number;
  address(buf: Uint8Array | ArrayBuffer): bigint;
  eventfd(initval: number, flags: number): number;
  read(fd: number, buf: Uint8Array): number;
  write(fd: number, buf: Uint8Array): number;
  /** preadv2 into the whole of `buf` at `position` with `flags` (RWF_*): bytes read or -errno. */
  preadv2(fd: number, buf: Uint8Array, position: number, flags: number): number;
  mmap(fd: number, length: number, prot: number, flags: number, offset: number): ArrayBuffer | number;
  munmap(buffer: ArrayBuffer): number;
  /** An fd an ioctl made (a VM, a vCPU): closed with this thread's environment if close() never came. */
  trackFd(fd: number): void;
  /**
   * A SharedArrayBuffer over the live mapping made by mmap() that starts at `address` and is
   * `length` bytes long, for another thread; -EINVAL if there is none. While one lives, munmap()
   * of the mapping swaps its pages for zeros instead of unmapping (see addon.cc).
   */
  shareMapping(address: bigint, length: number): SharedArrayBuffer | number;
  /** gettid() of the calling thread. */
  threadId(): number;
  /** Name the calling thread (pthread_setname_np, 15 bytes at most): 0 or -errno. */
  nameThread(name: string): number;
  /** The kick signal to thread `tid` of this process (tgkill): 0 or -errno. */
  signalThread(tid: number): number;
  /** The ioctl number the runner threads issue (KVM_RUN, from abi). */
  setRunRequest(request: number): void;
  /** Open /dev/net/tun (non-blocking) and TUNSETIFF with `flags`; the fd is closed on failure. */
  openTap(name: string, flags: number): { fd: number; name: string } | number;
  /** TUNGETIFF. */
  tapGetIff(fd: number): { name: string; flags: number } | number;
  tapSetVnetHdrSize(fd: number, size: number): number;
  tapGetVnetHdrSize(fd: number): number;
  tapSetOffload(fd: number, flags: number): number;
  /** uv_poll on the JS thread's loop: `callback(status)` runs when `fd` is readable. A handle, or -errno. */
  watchFd(fd: number, callback: (status: number) => void): object | number;
  unwatchFd(handle: object): void;
  /**
   * A runner thread for one vCPU fd. `callback` gets each KVM_RUN result (>= 0 or -errno) on this
   * thread and returns RUNNER_CONTINUE to re-enter KVM_RUN at once, anything else to stop until
   * the next run(). With the vCPU's kvm_run mapping and the offset of `immediate_exit` in it, the
   * JavaScript thread may issue this vCPU's KVM_RUN itself while it exits back to back.
   */
  Runner: new (fd: number, callback: (result: number) => number, run?: Uint8Array, immediateExitOffset?: number) => NativeRunner;
  /**
   * Where a vCPU worker's thread posts its forwarded exits: `callback` runs on this thread from
   * the same dispatcher as the runners' exits. `id()` names it to the worker (postForward).
   */
  ForwardPort: new (callback: () => void) => { id(): number; close(): void };
  /** From any thread: post to ForwardPort `id`; 0 or -ESRCH once it is closed. */
  postForward(id: number): number;
  /** Poll `words[index]` while it holds `value`, up to `micros`: what it holds then (or -EINVAL for a bad view). */
  spinWhile(words: Int32Array, index: number, value: number, micros: number): number;
  /** The kick signal to the calling thread every `micros` (0 stops it): 0 or -errno. */
  tick(micros: number): number;
  constants: {
    O_RDWR: number; O_NONBLOCK: number; PROT_READ: number; PROT_WRITE: number; MAP_SHARED: number;
    MAP_PRIVATE: number; MAP_ANONYMOUS: number; MAP_NORESERVE: number; EFD_NONBLOCK: number;
    EFD_SEMAPHORE: number; RWF_NOWAIT: number; SIGRTMIN: number;
  };
}

let cached: NativeAddon | undefined;

function packageRoot(): string {
  // src/native.ts under vitest, dist/index.{js,cjs} when built: the package root is one up either way.
  const here = typeof __dirname === "string" ? __dirname : dirname(fileURLToPath(import.meta.url));
  return join(here, "..");
}

/** Load the addon once. Throws KvmError KVM_NATIVE_MISSING with the build command if it is absent. */
export function native(): NativeAddon {
  if (cached !== undefined) return cached;
  const path = join(packageRoot(), "build", "Release", "tsvmm_kvm.node");
  try {
    const req = createRequire(join(packageRoot(), "package.json"));
    const addon = req(path) as NativeAddon;
    addon.setRunRequest(KVM_IOCTLS.KVM_RUN);
    cached = addon;
  } catch (e) {
    throw new KvmError("KVM_NATIVE_MISSING", `cannot load the kvm-backend addon at ${path}; build it with \`npm rebuild @tsvmm/kvm-backend\``, { cause: e });
  }
  return cached;
}
